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
//! the vocabulary, so it would rank for a random user), each scored with their own values of
//! the declared users-table features (read from the training split, where every row of a user
//! holds them). A declared interactions-table feature is refused: each request brings its own
//! value, which no precomputed table can know.
//!
//! The features directory must be the one the model was trained on (equal feature specs);
//! category keys are the category values as they are (`Bar`, not `"Bar"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use serde::Serialize;

use crate::data::table::Table;
use crate::geo::{GridIndex, haversine_km};
use crate::recipe::PrepareConfig;
use reco_runtime::artifact::spec::{CategoricalSpec, FeatureSpec, Ids, Key, Vocabulary};
use reco_runtime::error::{Error, Result};
use reco_runtime::features::history::{self, HistoryStats};
use reco_runtime::runtime::{Columns, Model, lists_or_none, sigmoid, take_lists};

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
    /// Use a model whose status is failed, or that is stale.
    pub allow_failed: bool,
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
    /// The offsets of the multi-valued ones among `categorical`.
    lists: BTreeMap<String, Vec<usize>>,
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
    check_flags(job)?;
    crate::outputs::OutputGuard::new("--out", &job.out, crate::outputs::Written::File(crate::outputs::Format::Parquet))
        .reads(&[&job.model, &job.features])
        .check()?;
    let (manifest, model) = Model::open(&job.model)?;
    if !job.allow_failed {
        reco_runtime::artifact::check_usable(&job.model, &manifest)?;
    }
    check_feature_spec(&job.model, model.spec(), &job.features)?;
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

/// Refuses the first flag outside its range, naming it, its value and the range.
fn check_flags(job: &PrecomputeJob) -> Result<()> {
    let checks = [
        (job.k >= 1, "--k", job.k.to_string(), "an integer >= 1"),
        (job.cells >= 1, "--cells", job.cells.to_string(), "an integer >= 1"),
        (
            (1..=1024).contains(&job.users_per_segment),
            "--users-per-segment",
            job.users_per_segment.to_string(),
            "1 to 1024",
        ),
        (job.cell_deg > 0.0 && job.cell_deg <= 10.0, "--cell-deg", job.cell_deg.to_string(), "a number in (0, 10]"),
        (job.hour <= 23, "--hour", job.hour.to_string(), "0 to 23"),
        (job.dow <= 6, "--dow", job.dow.to_string(), "0 to 6 (0 = Monday)"),
    ];
    match checks.into_iter().find(|c| !c.0) {
        Some((_, flag, value, range)) => Err(Error::input(format!("precompute {flag} {value}: expected {range}"))),
        None => Ok(()),
    }
}

/// The features directory must be the one the model was trained on: its `feature_spec.json`
/// equal to the model's (inputs, vocabularies, normalization and sources).
fn check_feature_spec(model_dir: &Path, spec: &FeatureSpec, features: &Path) -> Result<()> {
    let theirs = super::train::load_spec(features)?;
    if theirs == *spec {
        return Ok(());
    }
    let what = if theirs.input_names() != spec.input_names() {
        "its input columns differ"
    } else {
        "its vocabularies, normalization or sources differ"
    };
    Err(Error::input(format!(
        "{}: not the feature spec of the model {} ({what}); precompute with the features directory the model was trained on",
        features.join("feature_spec.json").display(),
        model_dir.join("manifest.json").display()
    )))
}

/// The prepare config and snapshot time recorded in `prepare.json`.
fn read_prepare(dir: &Path) -> Result<(PrepareConfig, i64)> {
    /// The part of `prepare.json` precompute reads.
    #[derive(serde::Deserialize)]
    struct Recorded {
        config: PrepareConfig,
        summary: Option<Snapshot>,
    }
    #[derive(serde::Deserialize)]
    struct Snapshot {
        snapshot_ts: Option<i64>,
    }
    let p = dir.join("prepare.json");
    let text = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
    let rec: Recorded = serde_json::from_slice(&text).map_err(|e| {
        Error::input(format!("{}: does not read as prepare's record ({e}); run prepare again", p.display()))
    })?;
    let ts = rec.summary.and_then(|s| s.snapshot_ts).ok_or_else(|| {
        Error::input(format!(
            "{}: no summary.snapshot_ts (prepared by an older reco-cli: run prepare again)",
            p.display()
        ))
    })?;
    Ok((rec.config, ts))
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
    let (mut categorical, mut lists, mut numeric) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for c in spec.categorical.iter().filter(|c| t.has(&c.name)) {
        if c.bag.is_some() {
            let l = t.id_lists(&c.name, None)?;
            categorical.insert(c.name.clone(), l.ids);
            lists.insert(c.name.clone(), l.offsets);
        } else {
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
        lists,
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
    /// the training rows of the users averaged for it (empty when the model has no user input).
    segments: Vec<(String, Vec<usize>)>,
    /// `user_id`, `segment` and the declared users-table features of the training split.
    users: UserInputs,
    /// The `segment` column's vocabulary, when the model has one.
    segment_spec: Option<CategoricalSpec>,
    time: [(&'static str, f32); 4],
}

impl RequestInputs {
    fn new(spec: &FeatureSpec, job: &PrecomputeJob, train: &Path) -> Result<Self> {
        let segment_spec = spec.categorical.iter().find(|c| c.name == "segment").cloned();
        let users = UserInputs::read(train, spec, segment_spec.is_some())?;
        let segments = users.active(job.users_per_segment);
        let hour = f64::from(job.hour) * std::f64::consts::TAU / 24.0;
        let dow = f64::from(job.dow) * std::f64::consts::TAU / 7.0;
        let time = [
            ("hour_sin", hour.sin() as f32),
            ("hour_cos", hour.cos() as f32),
            ("dow_sin", dow.sin() as f32),
            ("dow_cos", dow.cos() as f32),
        ];
        Ok(Self { segments, users, segment_spec, time })
    }

    /// The model's input columns for each of `users` (training rows; one block of candidates
    /// per user, in order; one block without a user input) × candidate places `cands` in
    /// `segment`.
    fn rows(
        &self,
        spec: &FeatureSpec,
        places: &Places,
        cands: &[u32],
        dist: &[f32],
        segment: &str,
        users: &[usize],
    ) -> Result<Columns> {
        let blocks = users.len().max(1);
        let n = cands.len() * blocks;
        let idx: Vec<usize> = (0..blocks).flat_map(|_| cands.iter().map(|&p| p as usize)).collect();
        let user_rows: Vec<usize> = users.iter().flat_map(|&r| std::iter::repeat_n(r, cands.len())).collect();
        let (mut categorical, mut lists) = (Vec::new(), Vec::new());
        for c in &spec.categorical {
            if c.bag.is_some() {
                let (ids, offsets) = match (self.users.categorical(&c.name), self.users.list(&c.name)) {
                    (Some(ids), Some(o)) => take_lists(ids, o, user_rows.iter().map(|&r| Some(r))),
                    _ => match (places.categorical.get(&c.name), places.lists.get(&c.name)) {
                        (Some(ids), Some(o)) => take_lists(ids, o, idx.iter().map(|&i| Some(i))),
                        _ => return Err(unsupported(spec, &c.name)),
                    },
                };
                categorical.push(ids);
                lists.push(Some(offsets));
                continue;
            }
            lists.push(None);
            let col = match (c.name.as_str(), self.users.categorical(&c.name)) {
                ("segment", _) => match self.segment_spec.as_ref().map(|s| &s.vocabulary) {
                    Some(Vocabulary::Int(_)) => Ids::Int(vec![segment.parse().unwrap_or_default(); n]),
                    _ => Ids::Str(vec![segment.to_string(); n]),
                },
                (_, Some(ids)) => ids.take(&user_rows),
                (name, None) => {
                    places.categorical.get(name).map(|ids| ids.take(&idx)).ok_or_else(|| unsupported(spec, name))?
                }
            };
            categorical.push(col);
        }
        let mut numeric = Vec::new();
        for f in &spec.numeric {
            let name = f.name.as_str();
            let col = if name == "distance_km" {
                dist.repeat(blocks)
            } else if let Some(&(_, v)) = self.time.iter().find(|(t, _)| *t == name) {
                vec![v; n]
            } else if let Some(v) = self.users.numeric(name) {
                user_rows.iter().map(|&r| v[r]).collect()
            } else if let Some(k) = history::NAMES.iter().position(|h| *h == name) {
                // A table per segment and cell knows no user's past: ranked as for a user
                // without history (personal ranking with history: POST /v1/score/raw).
                vec![HistoryStats::default().values(true)[k] as f32; n]
            } else {
                let v = places.numeric.get(name).ok_or_else(|| unsupported(spec, name))?;
                idx.iter().map(|&i| v[i]).collect()
            };
            numeric.push(col);
        }
        Ok(Columns { rows: n, categorical, lists: lists_or_none(lists), numeric })
    }
}

/// `user_id`, `segment` and the declared users-table features (with their `_missing`
/// indicators) of every row of the training split: a user's values are the same on each of
/// their rows. Only the columns the model has are read.
struct UserInputs {
    read: FeatureSpec,
    cols: Columns,
}

impl UserInputs {
    fn read(train: &Path, spec: &FeatureSpec, by_segment: bool) -> Result<Self> {
        let features = user_features(spec);
        let has_user = spec.categorical.iter().any(|c| c.name == "user_id");
        if let (false, Some(f)) = (has_user, features.first()) {
            return Err(Error::input(format!(
                "precompute: the model's input `{f}` is a users-table feature, but the model has no user_id input to pick the users it averages over"
            )));
        }
        let wanted = |n: &str| (n == "user_id" && has_user) || (n == "segment" && by_segment) || features.contains(&n);
        let read = FeatureSpec {
            categorical: spec.categorical.iter().filter(|c| wanted(&c.name)).cloned().collect(),
            numeric: spec.numeric.iter().filter(|c| wanted(&c.name)).cloned().collect(),
            label: spec.label.clone(),
            sources: Vec::new(),
        };
        let cols = if read.input_names().is_empty() {
            Columns::default()
        } else {
            reco_runtime::runtime::arrow_io::read_parquet(train, &read)?
        };
        Ok(Self { read, cols })
    }

    fn categorical(&self, name: &str) -> Option<&Ids> {
        self.read.categorical.iter().position(|c| c.name == name).map(|i| &self.cols.categorical[i])
    }

    /// The offsets of a multi-valued users-table input.
    fn list(&self, name: &str) -> Option<&[usize]> {
        self.read.categorical.iter().position(|c| c.name == name).and_then(|i| self.cols.list(i))
    }

    fn numeric(&self, name: &str) -> Option<&[f32]> {
        self.read.numeric.iter().position(|c| c.name == name).map(|i| self.cols.numeric[i].as_slice())
    }

    /// Per segment (its value as text), the first training row of each of its `k` users with
    /// the most rows (ties: the smaller id); one segment `all` when the model has no segment
    /// input. Segments with no user are left out.
    fn active(&self, k: usize) -> Vec<(String, Vec<usize>)> {
        let (users, segs) = (self.categorical("user_id"), self.categorical("segment"));
        if users.is_none() && segs.is_none() {
            return vec![("all".into(), Vec::new())];
        }
        let mut counts: BTreeMap<Option<Key<'_>>, BTreeMap<Key<'_>, (usize, usize)>> = BTreeMap::new();
        for i in 0..self.cols.rows {
            let per = counts.entry(segs.map(|s| s.key(i))).or_default();
            if let Some(u) = users {
                per.entry(u.key(i)).or_insert((0, i)).0 += 1;
            }
        }
        let mut out = Vec::new();
        for (seg, per) in counts {
            let mut ranked: Vec<_> = per.into_iter().collect();
            ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
            let picked = ranked.iter().take(k).map(|(_, (_, row))| *row).collect();
            let text = match seg {
                Some(Key::Int(v)) => v.to_string(),
                Some(Key::Str(v)) => v.to_string(),
                None => "all".to_string(),
            };
            out.push((text, picked));
        }
        out
    }

    /// The user ids at training rows `rows`, as JSON values.
    fn ids_json(&self, rows: &[usize]) -> Vec<serde_json::Value> {
        match self.categorical("user_id") {
            Some(Ids::Int(v)) => rows.iter().map(|&r| v[r].into()).collect(),
            Some(Ids::Str(v)) => rows.iter().map(|&r| v[r].clone().into()).collect(),
            None => Vec::new(),
        }
    }
}

/// The model inputs that are declared users-table features or their `_missing` indicators
/// (`user_id` and `segment` are filled apart).
fn user_features(spec: &FeatureSpec) -> Vec<&str> {
    spec.input_names()
        .into_iter()
        .filter(|n| !matches!(*n, "user_id" | "segment") && source_table(spec, n) == Some("users"))
        .collect()
}

/// The table a model input comes from, per the spec's sources (a `<name>_missing` indicator
/// comes from its feature's table).
fn source_table<'a>(spec: &'a FeatureSpec, name: &str) -> Option<&'a str> {
    let find = |f: &str| spec.sources.iter().find(|s| s.feature == f).map(|s| s.table.as_str());
    find(name).or_else(|| name.strip_suffix("_missing").and_then(find))
}

/// Value `i` of an id column as text (integers in decimal, strings as they are).
fn id_text(ids: &Ids, i: usize) -> String {
    match ids {
        Ids::Int(v) => v[i].to_string(),
        Ids::Str(v) => v[i].clone(),
    }
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

/// A model input precompute cannot fill, with why.
fn unsupported(spec: &FeatureSpec, name: &str) -> Error {
    match source_table(spec, name) {
        Some("interactions") => Error::input(format!(
            "precompute: the model's input `{name}` is a declared interactions-table feature: each request brings its own value, which a precomputed table cannot know (score such a model with POST /v1/score)"
        )),
        _ => Error::input(format!(
            "precompute: the model's input `{name}` is not in places.parquet and not one precompute fills (user_id, segment, distance_km, the hour and day of week, declared users-table features)"
        )),
    }
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
        // The category as it is: a string category is its text, not its quoted form.
        let mut names: Vec<String> = cands.iter().map(|&p| id_text(cat, p as usize)).collect();
        names.sort();
        names.dedup();
        for name in names {
            let top = pick(&|p| id_text(cat, p) == name);
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
    let users: BTreeMap<&str, Vec<serde_json::Value>> =
        req.segments.iter().map(|(seg, rows)| (seg.as_str(), req.users.ids_json(rows))).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::spec::{NumericSpec, SourceColumn};

    fn source(feature: &str, table: &str) -> SourceColumn {
        SourceColumn {
            feature: feature.into(),
            table: table.into(),
            column: feature.into(),
            dtype: "f64".into(),
            derive: None,
        }
    }

    fn spec() -> FeatureSpec {
        let numeric = ["distance_km", "age", "age_missing", "device"]
            .map(|n| NumericSpec { name: n.into(), mean: 0.0, std: 1.0 })
            .to_vec();
        let sources = vec![source("age", "users"), source("device", "interactions"), source("segment", "users")];
        FeatureSpec { categorical: Vec::new(), numeric, label: "label".into(), sources }
    }

    #[test]
    fn users_table_inputs_are_found_by_their_source_and_others_refused_with_the_reason() {
        let spec = spec();
        assert_eq!(user_features(&spec), ["age", "age_missing"]);
        assert_eq!(source_table(&spec, "age_missing"), Some("users"));
        let msg = unsupported(&spec, "device").to_string();
        assert!(msg.contains("`device`") && msg.contains("interactions-table") && msg.contains("/v1/score"), "{msg}");
        let msg = unsupported(&spec, "mystery").to_string();
        assert!(msg.contains("`mystery`") && msg.contains("places.parquet") && !msg.contains("interactions"), "{msg}");
    }

    #[test]
    fn each_flag_out_of_range_is_named_with_its_value_and_range() {
        let job = PrecomputeJob {
            model: PathBuf::new(),
            features: PathBuf::new(),
            out: PathBuf::new(),
            cells: 100,
            k: 20,
            cell_deg: 0.01,
            by_category: false,
            hour: 18,
            users_per_segment: 16,
            dow: 5,
            allow_failed: false,
        };
        assert!(check_flags(&job).is_ok());
        for (bad, want) in [
            (PrecomputeJob { cell_deg: f64::NAN, ..job.clone() }, "--cell-deg NaN: expected a number in (0, 10]"),
            (PrecomputeJob { cell_deg: f64::INFINITY, ..job.clone() }, "--cell-deg inf"),
            (PrecomputeJob { cell_deg: 1e20, ..job.clone() }, "--cell-deg 100000000000000000000"),
            (PrecomputeJob { k: 0, ..job.clone() }, "--k 0"),
            (PrecomputeJob { users_per_segment: 2000, ..job.clone() }, "--users-per-segment 2000: expected 1 to 1024"),
            (PrecomputeJob { dow: 7, ..job.clone() }, "--dow 7"),
        ] {
            let msg = check_flags(&bad).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
        }
    }
}
