//! `precompute`: the seed's cache warming, offline. For the most-visited lat/lon grid cells ×
//! user segments (× place category when asked), every place within the radius of the cell's
//! centre is scored with the runtime (the INT8 kernels for an INT8 model) in batches, and the
//! top K per key are written to Parquet (zstd) with the model's content hash and the feature
//! snapshot time in the file metadata. `reco-serve --recommendations FILE` serves it.
//!
//! Rows are built as the feature files are: the place's own inputs come from the features
//! directory's `places.parquet` (computed by `prepare` with the same feature code, at the
//! snapshot time); the request's are the key's: the segment, the distance from the cell's
//! centre, the hour and day of week asked for (local time), and a user. A segment's score for
//! a place is the mean visit probability over the segment's `--users-per-segment` most active
//! training users (the model's unknown-user row is never trained: every training user is in
//! the vocabulary, so it would rank for a random user).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use serde::Serialize;

use crate::artifact::spec::{CategoricalSpec, FeatureSpec, Ids, Key, Vocabulary};
use crate::data::table::Table;
use crate::error::{Error, Result};
use crate::geo::{GridIndex, haversine_km};
use crate::recipe::PrepareConfig;
use crate::runtime::{Columns, Model, sigmoid};

/// What to precompute.
#[derive(Debug, Clone)]
pub struct PrecomputeJob {
    /// Artifact directory.
    pub model: PathBuf,
    /// Features directory (`places.parquet`, `prepare.json`).
    pub features: PathBuf,
    /// Output Parquet file.
    pub out: PathBuf,
    /// Most-visited cells to cover.
    pub cells: usize,
    /// Places kept per key.
    pub k: usize,
    /// Cell size, degrees of latitude and longitude.
    pub cell_deg: f64,
    /// One key per category too.
    pub by_category: bool,
    /// Local hour (0–23) and day of week (0 = Monday) of the requests.
    pub hour: u32,
    /// Users averaged per segment (its most active in the training split).
    pub users_per_segment: usize,
    /// See `hour`.
    pub dow: u32,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct PrecomputeSummary {
    /// Output file.
    pub out: String,
    /// Keys written (segment × cell × category).
    pub keys: usize,
    /// Cells covered.
    pub cells: usize,
    /// Candidate rows scored.
    pub rows_scored: usize,
    /// Scoring throughput, rows per second.
    pub rows_per_s: f64,
    /// The feature snapshot time the place inputs describe.
    pub snapshot_ts: i64,
}

/// The place snapshot of a features directory.
struct Places {
    ids: Ids,
    lat: Vec<f64>,
    lon: Vec<f64>,
    visits: Vec<f64>,
    category: Option<Ids>,
    /// Every place input by name: categorical ids and numeric values.
    categorical: BTreeMap<String, Ids>,
    numeric: BTreeMap<String, Vec<f32>>,
}

/// One key's candidates, scored.
struct TopK {
    segment: String,
    cell: (i64, i64),
    category: Option<String>,
    /// (place row, score: mean probability over the segment's users, distance)
    top: Vec<(usize, f32, f32)>,
}

/// Runs the job.
pub fn precompute(job: &PrecomputeJob) -> Result<PrecomputeSummary> {
    if job.k == 0
        || job.cells == 0
        || !(1..=1024).contains(&job.users_per_segment)
        || !(job.cell_deg > 0.0 && job.cell_deg <= 10.0)
        || job.hour > 23
        || job.dow > 6
    {
        return Err(Error::input(
            "precompute: --k and --cells must be at least 1, --users-per-segment 1-1024, --cell-deg in (0, 10], --hour 0-23, --dow 0-6",
        ));
    }
    let (manifest, model) = Model::open(&job.model)?;
    super::paths::check_output(&job.out, &[], &[job.model.as_path(), job.features.as_path()], None)?;
    let (cfg, snapshot_ts) = read_prepare(&job.features)?;
    let places = read_places(&job.features.join("places.parquet"), model.spec())?;
    let spec = model.spec();
    let request = RequestInputs::new(spec, job, &job.features.join("train.parquet"))?;
    let index = GridIndex::new(&places.lat, &places.lon, cfg.radius_km);
    let cells = busiest_cells(&places, job.cell_deg, job.cells);
    let started = Instant::now();
    let mut keys = Vec::new();
    let mut scored = 0;
    for &cell in &cells {
        let (clat, clon) = center(cell, job.cell_deg);
        let cands = index.within(clat, clon, cfg.radius_km);
        if cands.is_empty() {
            continue;
        }
        let dist: Vec<f32> = cands
            .iter()
            .map(|&p| haversine_km(clat, clon, places.lat[p as usize], places.lon[p as usize]) as f32)
            .collect();
        for (segment, users) in &request.segments {
            let cols = request.rows(spec, &places, &cands, &dist, segment, users)?;
            let logits = model.logits(&cols)?;
            if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
                return Err(Error::input(format!("{}: scores a candidate {}", job.model.display(), logits[i])));
            }
            scored += logits.len();
            let scores = mean_probability(&logits, cands.len());
            keys.extend(top_keys(&places, &cands, &dist, &scores, segment, cell, job));
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    if keys.is_empty() {
        return Err(Error::input(format!(
            "{}: no place lies within prepare.radius_km = {} of the busiest cells' centres (--cell-deg {})",
            job.features.display(),
            cfg.radius_km,
            job.cell_deg
        )));
    }
    let meta = metadata(&manifest.content_hash(), &manifest.kind.to_string(), snapshot_ts, &cfg, job, &request);
    write(&job.out, &places, &keys, &meta)?;
    Ok(PrecomputeSummary {
        out: job.out.display().to_string(),
        keys: keys.len(),
        cells: cells.len(),
        rows_scored: scored,
        rows_per_s: scored as f64 / seconds,
        snapshot_ts,
    })
}

/// The prepare config and snapshot time recorded in `prepare.json`.
fn read_prepare(dir: &Path) -> Result<(PrepareConfig, i64)> {
    let p = dir.join("prepare.json");
    let text = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::input(format!("{}: not valid JSON ({e})", p.display())))?;
    let cfg: PrepareConfig = serde_json::from_value(v["config"].clone())
        .map_err(|e| Error::input(format!("{}: `config` is not a prepare config ({e})", p.display())))?;
    let ts = v["summary"]["snapshot_ts"].as_i64().ok_or_else(|| {
        Error::input(format!(
            "{}: no summary.snapshot_ts (prepared by an older reco-cli: run prepare again)",
            p.display()
        ))
    })?;
    Ok((cfg, ts))
}

fn read_places(path: &Path, spec: &FeatureSpec) -> Result<Places> {
    if !path.is_file() {
        return Err(Error::input(format!(
            "{}: missing (prepare writes it; a features directory from an older reco-cli needs prepare again)",
            path.display()
        )));
    }
    let t = Table::read(path, &Default::default())?;
    if !t.has("place_lat") {
        return Err(Error::input(format!(
            "{}: no place coordinates (the places table has no lat/lon)",
            path.display()
        )));
    }
    let mut categorical = BTreeMap::new();
    let mut numeric = BTreeMap::new();
    for c in &spec.categorical {
        if t.has(&c.name) {
            categorical.insert(c.name.clone(), t.ids(&c.name)?);
        }
    }
    for n in &spec.numeric {
        if t.has(&n.name) {
            numeric.insert(n.name.clone(), t.floats(&n.name, false)?.into_iter().map(|x| x as f32).collect());
        }
    }
    Ok(Places {
        ids: t.ids("place_id")?,
        lat: t.floats("place_lat", false)?,
        lon: t.floats("place_lon", false)?,
        visits: t.floats("visits", false)?,
        category: if t.has("category") { Some(t.ids("category")?) } else { None },
        categorical,
        numeric,
    })
}

/// The `n` cells with the most visits (ties: lower cell first).
fn busiest_cells(places: &Places, deg: f64, n: usize) -> Vec<(i64, i64)> {
    let mut visits: BTreeMap<(i64, i64), f64> = BTreeMap::new();
    for i in 0..places.lat.len() {
        *visits.entry(cell_of(places.lat[i], places.lon[i], deg)).or_default() += places.visits[i];
    }
    let mut cells: Vec<_> = visits.into_iter().collect();
    cells.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cells.into_iter().take(n).map(|(c, _)| c).collect()
}

/// The grid cell of a point: `(floor(lat / deg), floor(lon / deg))`, as the server computes it.
pub fn cell_of(lat: f64, lon: f64, deg: f64) -> (i64, i64) {
    ((lat / deg).floor() as i64, (lon / deg).floor() as i64)
}

fn center(cell: (i64, i64), deg: f64) -> (f64, f64) {
    ((cell.0 as f64 + 0.5) * deg, (cell.1 as f64 + 0.5) * deg)
}

/// The inputs a key supplies: segments with their users, the time features.
struct RequestInputs {
    /// Segment values as text (a single `all` when the model has no segment input), each with
    /// the users averaged for it (empty when the model has no user input).
    segments: Vec<(String, Vec<Ids>)>,
    /// The `segment` column's vocabulary, when the model has one.
    segment_spec: Option<CategoricalSpec>,
    time: [(&'static str, f32); 4],
}

impl RequestInputs {
    fn new(spec: &FeatureSpec, job: &PrecomputeJob, train: &Path) -> Result<Self> {
        let segment_spec = spec.categorical.iter().find(|c| c.name == "segment").cloned();
        let has_user = spec.categorical.iter().any(|c| c.name == "user_id");
        let segments = active_users(train, spec, segment_spec.is_some(), has_user, job.users_per_segment)?;
        let hour = f64::from(job.hour) * std::f64::consts::TAU / 24.0;
        let dow = f64::from(job.dow) * std::f64::consts::TAU / 7.0;
        let time = [
            ("hour_sin", hour.sin() as f32),
            ("hour_cos", hour.cos() as f32),
            ("dow_sin", dow.sin() as f32),
            ("dow_cos", dow.cos() as f32),
        ];
        Ok(Self { segments, segment_spec, time })
    }

    /// The model's input columns for each of `users` (one block of candidates per user, in
    /// order; one block without a user input) × candidate places `cands` in `segment`.
    fn rows(
        &self,
        spec: &FeatureSpec,
        places: &Places,
        cands: &[u32],
        dist: &[f32],
        segment: &str,
        users: &[Ids],
    ) -> Result<Columns> {
        let blocks = users.len().max(1);
        let n = cands.len() * blocks;
        let idx: Vec<usize> = (0..blocks).flat_map(|_| cands.iter().map(|&p| p as usize)).collect();
        let mut categorical = Vec::new();
        for c in &spec.categorical {
            let col = match c.name.as_str() {
                "user_id" => repeat_each(users, cands.len()),
                "segment" => match self.segment_spec.as_ref().map(|s| &s.vocabulary) {
                    Some(Vocabulary::Int(_)) => Ids::Int(vec![segment.parse().unwrap_or_default(); n]),
                    _ => Ids::Str(vec![segment.to_string(); n]),
                },
                name => places.categorical.get(name).map(|ids| ids.take(&idx)).ok_or_else(|| unsupported(name))?,
            };
            categorical.push(col);
        }
        let mut numeric = Vec::new();
        for f in &spec.numeric {
            let col = match f.name.as_str() {
                "distance_km" => dist.repeat(blocks),
                name => match self.time.iter().find(|(t, _)| *t == name) {
                    Some(&(_, v)) => vec![v; n],
                    None => places
                        .numeric
                        .get(name)
                        .map(|v| idx.iter().map(|&i| v[i]).collect())
                        .ok_or_else(|| unsupported(name))?,
                },
            };
            numeric.push(col);
        }
        Ok(Columns { rows: n, categorical, numeric })
    }
}

/// Per segment (its value as text), the `k` users with the most rows in the training split
/// (ties: the smaller id), each as a one-value id column; one segment `all` when the model
/// has no segment input. Segments with no user are left out.
fn active_users(
    train: &Path,
    spec: &FeatureSpec,
    by_segment: bool,
    has_user: bool,
    k: usize,
) -> Result<Vec<(String, Vec<Ids>)>> {
    if !has_user && !by_segment {
        return Ok(vec![("all".into(), Vec::new())]);
    }
    // Only these two columns are read from the training split.
    let wanted = |n: &str| (n == "user_id" && has_user) || (n == "segment" && by_segment);
    let read = FeatureSpec {
        categorical: spec.categorical.iter().filter(|c| wanted(&c.name)).cloned().collect(),
        numeric: Vec::new(),
        label: spec.label.clone(),
        sources: Vec::new(),
    };
    let cols = crate::runtime::arrow_io::read_parquet(train, &read)?;
    let col = |name: &str| read.categorical.iter().position(|c| c.name == name).map(|i| &cols.categorical[i]);
    let (users, segs) = (col("user_id"), col("segment"));
    let mut counts: BTreeMap<Option<Key<'_>>, BTreeMap<Key<'_>, (usize, usize)>> = BTreeMap::new();
    for i in 0..cols.rows {
        let per = counts.entry(segs.map(|s| s.key(i))).or_default();
        if let Some(u) = users {
            per.entry(u.key(i)).or_insert((0, i)).0 += 1;
        }
    }
    let mut out = Vec::new();
    for (seg, per) in counts {
        let mut ranked: Vec<_> = per.into_iter().collect();
        ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        let picked = match users {
            Some(u) => ranked.iter().take(k).map(|(_, (_, row))| u.take(&[*row])).collect(),
            None => Vec::new(),
        };
        let text = match seg {
            Some(Key::Int(v)) => v.to_string(),
            Some(Key::Str(v)) => v.to_string(),
            None => "all".to_string(),
        };
        out.push((text, picked));
    }
    Ok(out)
}

/// Value `i` of an id column as text (integers in decimal).
fn id_text(ids: &Ids, i: usize) -> String {
    match ids {
        Ids::Int(v) => v[i].to_string(),
        Ids::Str(v) => v[i].clone(),
    }
}

/// `users` (one value each), each repeated `n` times, one after another.
fn repeat_each(users: &[Ids], n: usize) -> Ids {
    let mut out = match users.first() {
        Some(Ids::Str(_)) => Ids::Str(Vec::new()),
        _ => Ids::Int(Vec::new()),
    };
    for u in users {
        match (&mut out, u) {
            (Ids::Int(o), Ids::Int(v)) => o.extend(std::iter::repeat_n(v[0], n)),
            (Ids::Str(o), Ids::Str(v)) => o.extend(std::iter::repeat_n(v[0].clone(), n)),
            _ => {}
        }
    }
    out
}

/// Mean visit probability per candidate over blocks of `n` logits (one block per user).
fn mean_probability(logits: &[f32], n: usize) -> Vec<f32> {
    let blocks = (logits.len() / n.max(1)).max(1);
    let mut sum = vec![0f64; n];
    for block in logits.chunks_exact(n) {
        for (s, &z) in sum.iter_mut().zip(block) {
            *s += f64::from(sigmoid(z));
        }
    }
    sum.into_iter().map(|s| (s / blocks as f64) as f32).collect()
}

fn unsupported(name: &str) -> Error {
    Error::input(format!(
        "precompute: the model's input `{name}` is neither a place feature of places.parquet nor one a request supplies (a declared user or interaction feature)"
    ))
}

/// The top K of one segment's scored candidates, per key (all places, then each category).
fn top_keys(
    places: &Places,
    cands: &[u32],
    dist: &[f32],
    scores: &[f32],
    segment: &str,
    cell: (i64, i64),
    job: &PrecomputeJob,
) -> Vec<TopK> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(cands[a].cmp(&cands[b])));
    let pick = |filter: &dyn Fn(usize) -> bool| -> Vec<(usize, f32, f32)> {
        order
            .iter()
            .copied()
            .filter(|&i| filter(cands[i] as usize))
            .take(job.k)
            .map(|i| (cands[i] as usize, scores[i], dist[i]))
            .collect()
    };
    let mut out = vec![TopK { segment: segment.to_string(), cell, category: None, top: pick(&|_| true) }];
    if let (true, Some(cat)) = (job.by_category, &places.category) {
        let mut names: Vec<String> = cands.iter().map(|&p| cat.key(p as usize).to_string()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let top = pick(&|p| cat.key(p).to_string() == name);
            out.push(TopK { segment: segment.to_string(), cell, category: Some(name), top });
        }
    }
    out
}

fn metadata(
    hash: &str,
    kind: &str,
    snapshot_ts: i64,
    cfg: &PrepareConfig,
    job: &PrecomputeJob,
    req: &RequestInputs,
) -> Vec<(String, String)> {
    let users: BTreeMap<&str, Vec<serde_json::Value>> = req
        .segments
        .iter()
        .map(|(seg, users)| {
            let ids = users
                .iter()
                .map(|u| match u {
                    Ids::Int(v) => serde_json::Value::from(v[0]),
                    Ids::Str(v) => serde_json::Value::from(v[0].clone()),
                })
                .collect();
            (seg.as_str(), ids)
        })
        .collect();
    let users = serde_json::to_string(&users).unwrap_or_default();
    [
        ("reco_cli.version", crate::VERSION.to_string()),
        ("reco_cli.model_kind", kind.to_string()),
        ("reco_cli.model_content_sha256", hash.to_string()),
        ("reco_cli.feature_snapshot_ts", snapshot_ts.to_string()),
        ("reco_cli.cell_deg", job.cell_deg.to_string()),
        ("reco_cli.radius_km", cfg.radius_km.to_string()),
        ("reco_cli.k", job.k.to_string()),
        ("reco_cli.hour", job.hour.to_string()),
        ("reco_cli.dow", job.dow.to_string()),
        ("reco_cli.users_per_segment", job.users_per_segment.to_string()),
        ("reco_cli.segment_users", users),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One row per (key, rank): `segment`, `cell_lat`, `cell_lon`, `category` (null: all), `rank`,
/// `place_id` (as text), `score` (mean visit probability over the segment's users),
/// `distance_km`, `place_lat`, `place_lon`.
fn write(out: &Path, places: &Places, keys: &[TopK], meta: &[(String, String)]) -> Result<()> {
    let rows: Vec<(&TopK, usize)> = keys.iter().flat_map(|k| (0..k.top.len()).map(move |r| (k, r))).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("cell_lat", DataType::Int64, false),
        Field::new("cell_lon", DataType::Int64, false),
        Field::new("category", DataType::Utf8, true),
        Field::new("rank", DataType::UInt32, false),
        Field::new("place_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("distance_km", DataType::Float32, false),
        Field::new("place_lat", DataType::Float64, false),
        Field::new("place_lon", DataType::Float64, false),
    ]));
    let id_text = |p: usize| id_text(&places.ids, p);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(k, _)| k.segment.as_str()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(k, _)| k.cell.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(k, _)| k.cell.1))),
        Arc::new(rows.iter().map(|(k, _)| k.category.as_deref()).collect::<StringArray>()),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|(_, r)| *r as u32 + 1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(k, r)| id_text(k.top[*r].0)))),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|(k, r)| k.top[*r].1))),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|(k, r)| k.top[*r].2))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(k, r)| places.lat[k.top[*r].0]))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(k, r)| places.lon[k.top[*r].0]))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::Internal(e.to_string()))?;
    crate::parquet_out::write(out, schema, &[batch], meta)
}
