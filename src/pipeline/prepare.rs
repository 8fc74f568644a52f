//! `prepare`: raw tables -> leakage-free feature files (DESIGN §3), as named steps:
//!
//! 1. [`raw::read`]: the tables as the recipe maps them, validated (ids, types, timestamps,
//!    local time).
//! 2. [`labels`]: an explicit 0/1 column, a rating threshold, or implicit (visits only).
//! 3. [`context`]: where the user was: the interaction's location, the user's home, or the
//!    place of their previous visit; rows without one are dropped and counted.
//! 4. [`impressions`]: the rows, with `negatives_per_positive` sampled places for implicit
//!    data (within `radius_km` of the context with a grid index, by popularity otherwise).
//! 5. [`split`]: by time, the earliest part trains, then valid, then test.
//! 6. [`ranking_set`]: sampled test positives, each with `ranking_candidates` other places.
//! 7. Point-in-time place statistics over a trailing window, from events strictly before
//!    each row's timestamp ([`PlaceEvents`]).
//! 8. [`featurize::features`]: joins, haversine distance, local-time features and declared
//!    features as one polars lazy plan.
//! 9. [`fit_spec`]: vocabularies and mean/std on the training split; a random calibration
//!    sample of the training split.
//!
//! Output directory (written atomically): `train|valid|test|calibration|ranking.parquet`,
//! `feature_spec.json`, `prepare.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::artifact::ArtifactWriter;
use crate::artifact::spec::{FeatureSpec, SourceColumn};
use crate::data::chunks::local_rows;
use crate::data::io::{pl, write_parquet};
use crate::data::raw::{self, Interactions, Places, RawData, Users};
use crate::data::schema::{ContextSource, FeatureKind, FilesConfig, TableName, Transform};
use crate::error::{Error, Result};
use crate::geo::GridIndex;
use crate::pipeline::feature_files::{SpecFitter, write_split};
use crate::pipeline::featurize::{self, FeatureContext, RowValues, Rows};
use crate::pipeline::prepare_stream;
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use crate::rng::Rng;

/// Where the labels came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LabelSource {
    /// An explicit 0/1 column.
    Column,
    /// `rating >= threshold` is a positive, lower ratings are observed negatives.
    Rating {
        /// The threshold.
        threshold: f64,
    },
    /// Visits only: sampled negatives.
    Implicit,
}

/// Where the context location came from (resolved from the recipe's `context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextKind {
    /// The interactions' own coordinates.
    Interaction,
    /// The user's home.
    Home,
    /// The place of the user's previous visit.
    PreviousVisit,
}

/// What `prepare` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareSummary {
    /// Output directory.
    pub dir: PathBuf,
    /// Rows per output file.
    pub rows: BTreeMap<String, usize>,
    /// Whether negatives were sampled (implicit data).
    pub sampled_negatives: bool,
    /// How rows got their labels.
    pub labels: LabelSource,
    /// Where the context location came from (`null`: none, no distance features).
    pub context: Option<ContextKind>,
    /// Interactions dropped because they had no context location (no previous visit, no home).
    pub dropped_no_context: usize,
    /// Visits dropped because the place is farther than `radius_km` from the context location
    /// (implicit data: negatives are drawn within the radius, so a visit outside it would be
    /// told apart by its distance alone).
    pub dropped_outside_radius: usize,
    /// Timestamps where valid and test begin.
    pub split_times: [i64; 2],
    /// sha256 of each input table.
    pub input_sha256: BTreeMap<String, String>,
    /// Model inputs written, categorical then numeric.
    pub features: Vec<String>,
    /// The moment `places.parquet` describes: one second after the last interaction (its
    /// window statistics count every event).
    pub snapshot_ts: i64,
}
/// Per-place event history, sorted by time, with prefix sums for O(log n) window queries.
pub struct PlaceEvents {
    times: Vec<Vec<i64>>,
    visits: Vec<Vec<u32>>,
    rating_sum: Vec<Vec<f64>>,
    rating_n: Vec<Vec<u32>>,
}

/// Window statistics of one place at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Events (impressions) in the window.
    pub impressions: u32,
    /// Visits (positive events) in the window.
    pub visits: u32,
    /// Mean rating of rated visits in the window, if any.
    pub mean_rating: Option<f64>,
}

impl PlaceEvents {
    /// Indexes events `(place row, timestamp, visited, rating)`.
    pub fn new(n_places: usize, events: impl Iterator<Item = (usize, i64, bool, Option<f64>)>) -> Self {
        let mut per: Vec<Vec<(i64, bool, Option<f64>)>> = vec![Vec::new(); n_places];
        for (p, t, v, r) in events {
            per[p].push((t, v, r));
        }
        let mut s = Self { times: vec![], visits: vec![], rating_sum: vec![], rating_n: vec![] };
        for mut ev in per {
            ev.sort_by_key(|e| e.0);
            let mut times = Vec::with_capacity(ev.len());
            let (mut v, mut rs, mut rn) = (vec![0u32], vec![0f64], vec![0u32]);
            for (t, visit, rating) in ev {
                times.push(t);
                v.push(v[v.len() - 1] + u32::from(visit));
                let r = rating.filter(|x| x.is_finite());
                rs.push(rs[rs.len() - 1] + r.unwrap_or(0.0));
                rn.push(rn[rn.len() - 1] + u32::from(r.is_some()));
            }
            s.times.push(times);
            s.visits.push(v);
            s.rating_sum.push(rs);
            s.rating_n.push(rn);
        }
        s
    }

    /// Statistics over events with `t - window <= time < t` (strictly before `t`).
    pub fn window(&self, place: usize, t: i64, window: i64) -> WindowStats {
        let times = &self.times[place];
        let lo = times.partition_point(|&x| x < t.saturating_sub(window));
        let hi = times.partition_point(|&x| x < t);
        let n = self.rating_n[place][hi] - self.rating_n[place][lo];
        WindowStats {
            impressions: (hi - lo) as u32,
            visits: self.visits[place][hi] - self.visits[place][lo],
            mean_rating: (n > 0).then(|| (self.rating_sum[place][hi] - self.rating_sum[place][lo]) / f64::from(n)),
        }
    }
}

/// The context location of every interaction (NaN where it has none).
pub struct Context {
    /// Where it came from.
    pub kind: ContextKind,
    /// Latitude per interaction.
    pub lat: Vec<f64>,
    /// Longitude per interaction.
    pub lon: Vec<f64>,
}

/// Runs the whole preparation of the tables `data` describes into `out_dir`: a large
/// Parquet interactions table streams ([`prepare_stream`]), the rest is read into memory.
pub fn prepare(
    data: &FilesConfig,
    out_dir: &Path,
    cfg: &PrepareConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    if let Some(plan) = prepare_stream::plan(data, cfg)? {
        return prepare_stream::prepare(data, plan, out_dir, cfg, seed, progress);
    }
    progress.begin("prepare", 6);
    let mut raw = raw::read(data)?;
    let (label, label_source) = labels(data, &raw.inter)?;
    let ctx = context(data, &raw.users, &raw.places, &raw.inter, &label)?;
    if let Some(c) = ctx.as_ref().filter(|c| c.kind == ContextKind::Interaction) {
        let (at, visits) = at_place_counts(&raw.places, &raw.inter.place, c, &label);
        refuse_at_place(&table_name(&raw), at, visits)?;
    }
    check_declared_leakage(data, label_source)?;
    // From here on the interactions table is read only for its declared features.
    let mut declared: Vec<&str> = Vec::new();
    for f in data.features.iter().filter(|f| f.table == TableName::Interactions) {
        if !declared.contains(&f.column.as_str()) {
            declared.push(f.column.as_str()); // two features may read one column
        }
    }
    raw.inter.mapped.table.keep_columns(&declared)?;
    progress.advance(1);

    // Point-in-time statistics come from the real events only, never from sampled negatives.
    let inter = &raw.inter;
    let rating = inter.rating.as_ref();
    let events = PlaceEvents::new(
        raw.places.ids.len(),
        (0..inter.ts.len()).map(|i| (inter.place[i] as usize, inter.ts[i], label[i] > 0.5, rating.map(|r| r[i]))),
    );
    let candidates = Candidates::new(&raw, ctx.as_ref(), &label, cfg);
    let mut rng = Rng::derive(seed, "prepare");
    let (rows, dropped) = impressions(&raw, &label, label_source, ctx.as_ref(), &candidates, cfg, &mut rng);
    refuse_no_rows(&table_name(&raw), rows.len(), dropped, cfg)?;
    log_drops(progress, &table_name(&raw), raw.inter.ts.len(), dropped, cfg);
    progress.advance(1);

    let (splits, cuts) = split(&rows, cfg, &table_name(&raw))?;
    drop(rows);
    let ranking = ranking_set(&splits[2], ctx.as_ref(), &candidates, cfg, &mut rng);
    progress.advance(1);

    let fctx = FeatureContext {
        users: &raw.users,
        places: &raw.places,
        inter: Some(&raw.inter.mapped),
        inter_rating: raw.inter.rating.is_some(),
        inter_oracle: raw.inter.oracle.is_some(),
        has_ctx: ctx.is_some(),
        window: window_seconds(cfg),
        declared: &data.features,
        implicit: label_source == LabelSource::Implicit,
    };
    let values = |r: &Rows, _: usize| featurize::resolve(r, &raw, ctx.as_ref(), &events, &fctx);
    // Every file goes into a staging directory renamed into place at the end.
    let writer = ArtifactWriter::create(out_dir)?;
    let mut sample = TrainSample::new(&fctx, calibration_rows(splits[0].len(), cfg.calibration_rows, &mut rng));
    let mut rows = BTreeMap::new();
    for (name, s) in ["train", "valid", "test"].into_iter().zip(&splits) {
        let path = writer.path(&format!("{name}.parquet"));
        let n = write_split(s, &fctx, &path, values, |df, first| match name {
            "train" => sample.add(df, first),
            _ => Ok(()),
        })?;
        rows.insert(name.to_string(), n);
    }
    rows.insert(
        "ranking".into(),
        write_split(&ranking, &fctx, &writer.path("ranking.parquet"), values, |_, _| Ok(()))?,
    );
    progress.advance(1);

    let snapshot_ts = raw.inter.ts.iter().max().map_or(0, |t| t.saturating_add(1));
    let snapshot_rows = snapshot_rows(raw.places.ids.len(), snapshot_ts);
    let mut visits = vec![0u32; raw.places.ids.len()];
    for (&p, &y) in raw.inter.place.iter().zip(&label) {
        visits[p as usize] += u32::from(y > 0.5);
    }
    let places = place_snapshot(&fctx, &snapshot_rows, &values(&snapshot_rows, 0)?, visits)?;
    let summary = PrepareSummary {
        dir: out_dir.to_path_buf(),
        rows,
        sampled_negatives: label_source == LabelSource::Implicit,
        labels: label_source,
        context: ctx.as_ref().map(|c| c.kind),
        dropped_no_context: dropped.no_context,
        dropped_outside_radius: dropped.outside_radius,
        split_times: cuts,
        input_sha256: raw.hashes.clone(),
        features: Vec::new(),
        snapshot_ts,
    };
    let done = Finish { writer, sample, places, sources: raw.sources.clone(), summary };
    done.write(data, out_dir, cfg, seed, progress)
}

/// The trailing window of the place statistics, seconds.
pub(crate) fn window_seconds(cfg: &PrepareConfig) -> i64 {
    (cfg.window_days * 86_400.0).round() as i64
}

/// What the training split's chunks feed as they are written: the feature spec's running
/// counts and the calibration sample.
pub(crate) struct TrainSample {
    fitter: SpecFitter,
    rows: Vec<usize>,
    calibration: Option<DataFrame>,
}

impl TrainSample {
    /// Fits `fctx`'s layout; the calibration sample is the training rows `rows` (ascending).
    pub(crate) fn new(fctx: &FeatureContext<'_>, rows: Vec<usize>) -> Self {
        Self { fitter: SpecFitter::new(&featurize::layout(fctx)), rows, calibration: None }
    }

    /// Adds a chunk of the training split's features whose first row is `first`.
    pub(crate) fn add(&mut self, df: &DataFrame, first: usize) -> Result<()> {
        self.fitter.add(df, first)?;
        let part = take_rows(df, first, &self.rows)?;
        match &mut self.calibration {
            None => self.calibration = Some(part),
            Some(c) => drop(c.vstack_mut(&part).map_err(pl("calibration sample"))?),
        }
        Ok(())
    }
}

/// Everything `prepare` has once the splits are written: the rest is the same for both paths.
pub(crate) struct Finish {
    /// The staging directory, with the splits in it.
    pub writer: ArtifactWriter,
    /// The training split's spec counts and calibration sample.
    pub sample: TrainSample,
    /// `places.parquet`.
    pub places: DataFrame,
    /// Source columns of the tables.
    pub sources: Vec<SourceColumn>,
    /// The summary, without the feature names.
    pub summary: PrepareSummary,
}

impl Finish {
    /// Fits the spec, writes the calibration sample, the place snapshot, the spec and
    /// `prepare.json`, and renames the staging directory into place.
    pub(crate) fn write(
        self,
        data: &FilesConfig,
        out_dir: &Path,
        cfg: &PrepareConfig,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<PrepareSummary> {
        let Self { writer, sample, places, sources, mut summary } = self;
        let spec = fit_spec(sample.fitter, &writer.path("train.parquet"), data, sources)?;
        let mut frames: Vec<(&str, DataFrame)> = Vec::new();
        frames.extend(sample.calibration.map(|c| ("calibration", c)));
        frames.push(("places", places));
        progress.advance(1);
        summary.features = spec.input_names().into_iter().map(str::to_string).collect();
        let summary = write(writer, out_dir, &mut frames, &spec, summary, cfg, seed)?;
        progress.advance(1);
        progress.end();
        Ok(summary)
    }
}

/// Refuses a run where no interaction is left to featurize.
pub(crate) fn refuse_no_rows(table: &str, rows: usize, dropped: Dropped, cfg: &PrepareConfig) -> Result<()> {
    if rows > 0 {
        return Ok(());
    }
    Err(Error::input(format!(
        "{table}: no interaction is left after dropping {} without a context location and {} farther than prepare.radius_km = {} from it",
        dropped.no_context, dropped.outside_radius, cfg.radius_km
    )))
}

/// Says on the log (stderr, hidden by `--quiet`) when more than 1 % of the `interactions`
/// were dropped, with the count of each reason: `prepare.json` alone is easy to miss.
pub(crate) fn log_drops(
    progress: &dyn Progress,
    table: &str,
    interactions: usize,
    dropped: Dropped,
    cfg: &PrepareConfig,
) {
    let total = dropped.no_context + dropped.outside_radius;
    if total * 100 <= interactions {
        return;
    }
    let pct = |n: usize| 100.0 * n as f64 / interactions.max(1) as f64;
    let mut why = Vec::new();
    if dropped.outside_radius > 0 {
        why.push(format!(
            "{} ({:.1} %) farther than prepare.radius_km = {} from their context location (dropped_outside_radius)",
            dropped.outside_radius,
            pct(dropped.outside_radius),
            cfg.radius_km
        ));
    }
    if dropped.no_context > 0 {
        why.push(format!(
            "{} ({:.1} %) without a context location: no previous visit or no home (dropped_no_context)",
            dropped.no_context,
            pct(dropped.no_context)
        ));
    }
    progress.log(&format!(
        "prepare: {table}: dropped {total} of {interactions} interactions ({:.1} %): {}",
        pct(total),
        why.join("; ")
    ));
}

/// Model inputs that describe the user, the request context or the time, not the place: what
/// `precompute` supplies per key, everything else comes from `places.parquet`.
pub const REQUEST_FEATURES: [&str; 7] =
    ["user_id", "segment", "distance_km", "hour_sin", "hour_cos", "dow_sin", "dow_cos"];

/// One row per place at `ts` (interaction 0's user, context and local time, which the
/// snapshot does not keep).
pub(crate) fn snapshot_rows(places: usize, ts: i64) -> Rows {
    let mut rows = Rows::new(false, false);
    for p in 0..places {
        rows.push_interaction(0, p as u32, ts, 0.0);
    }
    rows
}

/// Every place as the feature code sees it at `ts`: `place_id` and the place's own inputs
/// (category, trailing-window statistics, static and declared place features), computed by
/// the same [`featurize::features`] as the feature files from [`snapshot_rows`], then
/// `place_lat`/`place_lon` and `visits` (all visits before `ts`). What `precompute` scores
/// candidates from.
pub(crate) fn place_snapshot(
    fctx: &FeatureContext<'_>,
    rows: &Rows,
    values: &RowValues,
    visits: Vec<u32>,
) -> Result<DataFrame> {
    let df = featurize::features(rows, values, fctx)?;
    let layout = featurize::layout(fctx);
    let not_place: Vec<String> =
        fctx.declared.iter().filter(|f| f.table != TableName::Places).map(|f| f.feature_name().to_string()).collect();
    let keep: Vec<&str> = layout
        .categorical
        .iter()
        .map(|(c, _)| c.as_str())
        .chain(layout.numeric.iter().map(String::as_str))
        .filter(|c| !REQUEST_FEATURES.contains(c))
        .filter(|c| !not_place.iter().any(|d| c == d || c.strip_suffix("_missing") == Some(d.as_str())))
        .collect();
    let mut out = df.select(keep).map_err(pl("place snapshot"))?;
    let mut extra = vec![Column::new("visits".into(), visits)];
    if let Some((lat, lon)) = &fctx.places.coords {
        extra.insert(0, Column::new("place_lon".into(), lon));
        extra.insert(0, Column::new("place_lat".into(), lat));
    }
    out.hstack_mut(&extra).map_err(pl("place snapshot"))?;
    Ok(out)
}

fn table_name(raw: &RawData) -> String {
    raw.inter.mapped.table.name.clone()
}

/// Step 2: labels of every interaction and where they came from.
pub fn labels(data: &FilesConfig, inter: &Interactions) -> Result<(Vec<f32>, LabelSource)> {
    let (label, source) = chunk_labels(data, inter)?;
    if source == LabelSource::Implicit {
        let mut per_user = Vec::new();
        count_users(&mut per_user, &inter.user);
        refuse_single_visits(&inter.mapped.table.name, &per_user)?;
    }
    Ok((label, source))
}

/// The labels of a chunk of interactions (implicit data: see [`refuse_single_visits`]).
pub(crate) fn chunk_labels(data: &FilesConfig, inter: &Interactions) -> Result<(Vec<f32>, LabelSource)> {
    if let Some(y) = &inter.label {
        return Ok((y.clone(), LabelSource::Column));
    }
    let t = &inter.mapped.table;
    if let Some(threshold) = data.positive_rating {
        let col = inter.mapped.col(crate::data::schema::Role::Rating).unwrap_or("rating");
        let r = inter.rating.as_ref().ok_or_else(|| {
            Error::input(format!(
                "{}: data.positive_rating needs a rating column (missing column `{col}`; map it with data.interactions.columns.rating)",
                t.name
            ))
        })?;
        if let Some(i) = r.iter().position(|v| v.is_nan()) {
            return Err(Error::input(format!("{} is null, expected a rating (data.positive_rating)", t.at(col, i))));
        }
        return Ok((
            r.iter().map(|&v| f32::from(u8::from(v >= threshold))).collect(),
            LabelSource::Rating { threshold },
        ));
    }
    Ok((vec![1.0; inter.ts.len()], LabelSource::Implicit))
}

/// Adds the events of each user row in `users` to `per_user`.
pub(crate) fn count_users(per_user: &mut Vec<u32>, users: &[u32]) {
    for &u in users {
        if per_user.len() <= u as usize {
            per_user.resize(u as usize + 1, 0);
        }
        per_user[u as usize] += 1;
    }
}

/// Implicit data where every user has one event has nothing to learn preferences from.
pub(crate) fn refuse_single_visits(table: &str, per_user: &[u32]) -> Result<()> {
    if per_user.iter().all(|&n| n <= 1) {
        return Err(Error::input(format!(
            "{table}: implicit data (no label column, no data.positive_rating) where every user has one event: \
             nothing to learn preferences from; expected users with several visits"
        )));
    }
    Ok(())
}

/// Step 3: the context location of every interaction, or `None` when there is none to use
/// (places without coordinates, or no location anywhere with `context = "auto"`).
pub fn context(
    data: &FilesConfig,
    users: &Users,
    places: &Places,
    inter: &Interactions,
    label: &[f32],
) -> Result<Option<Context>> {
    let Some(kind) = context_kind(data, users, places, inter)? else { return Ok(None) };
    let t = &inter.mapped.table;
    let (lat, lon) = match kind {
        ContextKind::Interaction => inter.coords.clone().ok_or_else(|| {
            Error::input(format!("{}: data.context = \"interaction\" needs lat and lon columns", t.name))
        })?,
        ContextKind::Home => {
            let (hl, ho) = users.home.as_ref().ok_or_else(|| {
                Error::input("data.context = \"home\" needs a users table with home_lat and home_lon")
            })?;
            inter.user.iter().map(|&u| (hl[u as usize], ho[u as usize])).unzip()
        }
        ContextKind::PreviousVisit => {
            let (pl, po) = places.coords.as_ref().ok_or_else(|| Error::Internal("no coordinates".into()))?;
            let prev = previous_visit(&inter.user, &inter.ts, &inter.place, Some(label));
            prev.iter().map(|p| p.map_or((f64::NAN, f64::NAN), |p| (pl[p as usize], po[p as usize]))).unzip()
        }
    };
    Ok(Some(Context { kind, lat, lon }))
}

/// Where the context location comes from, as the recipe and the tables resolve it.
pub(crate) fn context_kind(
    data: &FilesConfig,
    users: &Users,
    places: &Places,
    inter: &Interactions,
) -> Result<Option<ContextKind>> {
    let t = &inter.mapped.table;
    if places.coords.is_none() {
        if data.context != ContextSource::Auto {
            return Err(Error::input(format!(
                "{}: data.context = \"{}\" needs place coordinates: map lat and lon of the places table ([data.places] columns)",
                t.name,
                context_name(data.context)
            )));
        }
        return Ok(None);
    }
    Ok(Some(match data.context {
        ContextSource::Interaction => ContextKind::Interaction,
        ContextSource::Home => ContextKind::Home,
        ContextSource::PreviousVisit => ContextKind::PreviousVisit,
        ContextSource::Auto if inter.coords.is_some() => ContextKind::Interaction,
        ContextSource::Auto if users.home.is_some() => ContextKind::Home,
        ContextSource::Auto => {
            return Err(Error::input(format!(
                "{}: no context location: map interactions lat/lon or users home_lat/home_lon, or set data.context = \"previous_visit\"",
                t.name
            )));
        }
    }))
}

/// Of the visits among interactions at `place` with context `ctx`: how many have the
/// visited place's own location as context (within 50 m), and how many there are.
pub(crate) fn at_place_counts(places: &Places, place: &[u32], ctx: &Context, label: &[f32]) -> (usize, usize) {
    let Some((pl, po)) = &places.coords else { return (0, 0) };
    let visits: Vec<usize> = (0..label.len()).filter(|&i| label[i] > 0.5).collect();
    let at_place = visits
        .iter()
        .filter(|&&i| {
            let p = place[i] as usize;
            crate::geo::haversine_km(ctx.lat[i], ctx.lon[i], pl[p], po[p]) < 0.05
        })
        .count();
    (at_place, visits.len())
}

/// Refuses interaction coordinates that are the visited place's own location (a check-in log
/// repeats the venue's coordinates, or a GPS fix at the venue, on every row): distance would
/// be ~0 for every visit, a leak. Within 50 m on more than half of the visits counts.
pub(crate) fn refuse_at_place(table: &str, at_place: usize, visits: usize) -> Result<()> {
    if visits >= 10 && at_place * 2 > visits {
        return Err(Error::input(format!(
            "{table}: the interactions' lat/lon equal the visited place's coordinates on {at_place} of {visits} visits: they are the place's location, not where the user was; set data.context = \"previous_visit\" (or map the user's own location)"
        )));
    }
    Ok(())
}

/// The place of each user's last visit strictly before each interaction (`None` for a
/// user's first visit time). `label` marks visits (all rows are visits without it).
pub fn previous_visit(user: &[u32], ts: &[i64], place: &[u32], label: Option<&[f32]>) -> Vec<Option<u32>> {
    let mut order: Vec<usize> = (0..ts.len()).collect();
    order.sort_by_key(|&i| (user[i], ts[i], i));
    let mut out = vec![None; ts.len()];
    for group in order.chunk_by(|&a, &b| user[a] == user[b]) {
        let mut last: Option<u32> = None;
        // Events at one instant do not see each other: the whole instant gets the visit before.
        for same in group.chunk_by(|&a, &b| ts[a] == ts[b]) {
            for &i in same {
                out[i] = last;
            }
            if let Some(&i) = same.iter().rev().find(|&&i| label.is_none_or(|y| y[i] > 0.5)) {
                last = Some(place[i]);
            }
        }
    }
    out
}

/// Interaction-level declared features on implicit data would copy the visited row's values
/// onto its sampled negatives (a leak), so they need labelled data.
pub(crate) fn check_declared_leakage(data: &FilesConfig, labels: LabelSource) -> Result<()> {
    if labels != LabelSource::Implicit {
        return Ok(());
    }
    match data.features.iter().find(|f| f.table == TableName::Interactions) {
        Some(f) => Err(Error::input(format!(
            "data.features {:?}: an interactions column cannot be a feature of implicit data (sampled negatives would copy the visit's value); declare it on the places or users table",
            f.feature_name()
        ))),
        None => Ok(()),
    }
}

/// How negatives and ranking candidates are drawn.
pub enum Candidates {
    /// Places within the radius of the context location (grid index).
    Radius {
        /// Grid over the places.
        index: GridIndex,
        /// Radius, km.
        radius_km: f64,
    },
    /// Any place, with probability proportional to its visits in the training period + 1.
    Popularity {
        /// Cumulative weights.
        cumulative: Vec<f64>,
    },
}

impl Candidates {
    fn new(raw: &RawData, ctx: Option<&Context>, label: &[f32], cfg: &PrepareConfig) -> Self {
        Self::radius(&raw.places, ctx.is_some(), cfg).unwrap_or_else(|| {
            let inter = &raw.inter;
            let cut = time_cuts(bounds(&inter.ts), cfg)[0];
            let mut weights = vec![1.0f64; raw.places.ids.len()];
            add_popularity(&mut weights, &inter.place, label, &inter.ts, cut);
            Self::popularity(&weights)
        })
    }

    /// Places within the radius, when places have coordinates and rows a context.
    pub(crate) fn radius(places: &Places, has_ctx: bool, cfg: &PrepareConfig) -> Option<Self> {
        let radius_km = cfg.radius_km;
        match (&places.coords, has_ctx) {
            (Some((lat, lon)), true) => Some(Self::Radius { index: GridIndex::new(lat, lon, radius_km), radius_km }),
            _ => None,
        }
    }

    /// Any place, with probability proportional to `weights` (visits in the training period
    /// + 1: see [`add_popularity`]).
    pub(crate) fn popularity(weights: &[f64]) -> Self {
        let mut acc = 0.0;
        let cumulative = weights.iter().map(|&x| {
            acc += x;
            acc
        });
        Self::Popularity { cumulative: cumulative.collect() }
    }

    /// Up to `k` distinct places other than `exclude`, around (`lat`, `lon`) when by radius.
    fn draw(&self, lat: f64, lon: f64, exclude: u32, k: usize, rng: &mut Rng) -> Vec<u32> {
        match self {
            Self::Radius { index, radius_km } => {
                let mut cands = index.within(lat, lon, *radius_km);
                cands.retain(|&c| c != exclude);
                rng.shuffle(&mut cands);
                cands.truncate(k);
                cands
            }
            Self::Popularity { cumulative } => {
                let total = cumulative.last().copied().unwrap_or(0.0);
                let k = k.min(cumulative.len().saturating_sub(1));
                let mut out: Vec<u32> = Vec::with_capacity(k);
                let mut tries = 0;
                while out.len() < k && tries < 50 * k + 100 {
                    tries += 1;
                    let u = rng.uniform() * total;
                    let c = cumulative.partition_point(|&x| x <= u).min(cumulative.len() - 1) as u32;
                    if c != exclude && !out.contains(&c) {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// Adds the visits before `cut` (the training period: negatives are not drawn with
/// popularity from the future) to each place's popularity weight.
pub(crate) fn add_popularity(weights: &mut [f64], place: &[u32], label: &[f32], ts: &[i64], cut: i64) {
    for ((&p, &y), &t) in place.iter().zip(label).zip(ts) {
        if t < cut {
            weights[p as usize] += f64::from(y);
        }
    }
}

/// Interactions `impressions` left out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dropped {
    /// Without a context location.
    pub no_context: usize,
    /// Farther than the radius from it (implicit data).
    pub outside_radius: usize,
}

/// Step 4: the impressions — interactions with a context (labelled data as they are;
/// implicit data with sampled negatives, and only the visits within the radius the
/// negatives are drawn from). Returns them and what was dropped.
fn impressions(
    raw: &RawData,
    label: &[f32],
    labels: LabelSource,
    ctx: Option<&Context>,
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) -> (Rows, Dropped) {
    let inter = &raw.inter;
    let has_oracle = inter.oracle.is_some() && labels != LabelSource::Implicit;
    let mut rows = Rows::new(has_oracle, false);
    let mut dropped = Dropped::default();
    let imp = Impressions::new(&raw.places, labels, candidates, cfg);
    for (i, &y) in label.iter().enumerate() {
        let at = ctx.map_or((0.0, 0.0), |c| (c.lat[i], c.lon[i]));
        imp.push(&mut rows, &mut dropped, (i, inter.place[i], inter.ts[i], y), at, rng);
    }
    (rows, dropped)
}

/// How one interaction becomes rows (step 4).
pub(crate) struct Impressions<'a> {
    implicit: bool,
    radius_check: Option<&'a (Vec<f64>, Vec<f64>)>,
    candidates: &'a Candidates,
    cfg: &'a PrepareConfig,
}

impl<'a> Impressions<'a> {
    /// The rule for `labels`, negatives drawn from `candidates`.
    pub(crate) fn new(
        places: &'a Places,
        labels: LabelSource,
        candidates: &'a Candidates,
        cfg: &'a PrepareConfig,
    ) -> Self {
        let implicit = labels == LabelSource::Implicit;
        let radius_check = match (&places.coords, candidates) {
            (Some(coords), Candidates::Radius { .. }) if implicit => Some(coords),
            _ => None,
        };
        Self { implicit, radius_check, candidates, cfg }
    }

    /// Pushes the rows of interaction `(src, place, ts, label)` with context location `at`
    /// onto `rows`, or counts it in `dropped`.
    pub(crate) fn push(
        &self,
        rows: &mut Rows,
        dropped: &mut Dropped,
        (src, place, ts, y): (usize, u32, i64, f32),
        (lat, lon): (f64, f64),
        rng: &mut Rng,
    ) {
        if lat.is_nan() || lon.is_nan() {
            dropped.no_context += 1;
            return;
        }
        if let Some((pl, po)) = self.radius_check {
            let p = place as usize;
            if crate::geo::haversine_km(lat, lon, pl[p], po[p]) > self.cfg.radius_km {
                dropped.outside_radius += 1;
                return;
            }
        }
        rows.push_interaction(src, place, ts, y);
        if self.implicit {
            for c in self.candidates.draw(lat, lon, place, self.cfg.negatives_per_positive, rng) {
                rows.push_interaction(src, c, ts, 0.0);
            }
        }
    }
}

/// The recipe name of a context setting.
fn context_name(c: ContextSource) -> &'static str {
    match c {
        ContextSource::Auto => "auto",
        ContextSource::Interaction => "interaction",
        ContextSource::Home => "home",
        ContextSource::PreviousVisit => "previous_visit",
    }
}

/// The earliest and latest of `ts`.
pub(crate) fn bounds(ts: &[i64]) -> (i64, i64) {
    ts.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)))
}

/// Where valid and test begin: the latest `valid_fraction + test_fraction` of the time range
/// `(t0, t1)` is held out.
pub(crate) fn time_cuts((t0, t1): (i64, i64), cfg: &PrepareConfig) -> [i64; 2] {
    let span = t1.saturating_sub(t0) as f64;
    let cut_valid = t0 + (span * (1.0 - cfg.valid_fraction - cfg.test_fraction)).round() as i64;
    let cut_test = t0 + (span * (1.0 - cfg.test_fraction)).round() as i64;
    [cut_valid, cut_test]
}

/// Which split a row at `t` falls in: 0 train, 1 valid, 2 test.
pub(crate) fn split_of(t: i64, [cut_valid, cut_test]: [i64; 2]) -> usize {
    if t < cut_valid {
        0
    } else if t < cut_test {
        1
    } else {
        2
    }
}

/// What the check of a split needs to know of it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SplitCounts {
    /// Rows.
    pub rows: usize,
    /// Rows labelled 1.
    pub positives: usize,
}

/// Each split needs both visits and non-visits; `span` is the rows' time range.
pub(crate) fn check_splits(table: &str, counts: &[SplitCounts; 3], span: (i64, i64), cuts: [i64; 2]) -> Result<()> {
    for (name, c) in ["train", "valid", "test"].iter().zip(counts) {
        if c.rows == 0 || c.positives == 0 || c.positives == c.rows {
            let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).map_or("-".into(), |d| d.to_rfc3339());
            return Err(Error::input(format!(
                "{table}: the {name} split has {} rows and needs both visits and non-visits (timestamps span {} to {}, split at {} and {}); give more days of interactions or change prepare.valid_fraction/test_fraction",
                c.rows,
                at(span.0),
                at(span.1),
                at(cuts[0]),
                at(cuts[1])
            )));
        }
    }
    Ok(())
}

/// Step 5: the time split. Returns train, valid, test and the two cut times.
fn split(rows: &Rows, cfg: &PrepareConfig, table: &str) -> Result<([Rows; 3], [i64; 2])> {
    let span = bounds(&rows.ts);
    let cuts = time_cuts(span, cfg);
    let mut splits = [rows.empty_like(), rows.empty_like(), rows.empty_like()];
    let mut counts = [SplitCounts::default(); 3];
    for i in 0..rows.len() {
        let s = split_of(rows.ts[i], cuts);
        splits[s].push(rows, i);
        counts[s].rows += 1;
        counts[s].positives += usize::from(rows.label[i] > 0.5);
    }
    check_splits(table, &counts, span, cuts)?;
    Ok((splits, cuts))
}

/// Step 6: ranking queries from sampled test positives, each with `ranking_candidates`
/// other places drawn like negatives.
fn ranking_set(
    test: &Rows,
    ctx: Option<&Context>,
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) -> Rows {
    let pos: Vec<usize> = (0..test.len()).filter(|&i| test.label[i] > 0.5).collect();
    let mut ranking = Rows::new(false, true);
    for (q, k) in ranking_picks(pos.len(), cfg, rng).into_iter().enumerate() {
        let i = pos[k];
        let src = test.src[i] as usize;
        let at = ctx.map_or((0.0, 0.0), |c| (c.lat[src], c.lon[src]));
        push_query(&mut ranking, q, (src, test.place[i], test.ts[i]), at, candidates, cfg, rng);
    }
    ranking
}

/// Which of `positives` test positives become ranking queries: their ranks among the
/// positives, ascending.
pub(crate) fn ranking_picks(positives: usize, cfg: &PrepareConfig, rng: &mut Rng) -> Vec<usize> {
    sample_sorted(positives, cfg.ranking_queries, rng)
}

/// `k` distinct numbers of `0..n` (all of them when `k >= n`), uniformly at random, ascending:
/// Floyd's algorithm, `k` draws and memory for `k` numbers whatever `n`.
pub(crate) fn sample_sorted(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut chosen = std::collections::BTreeSet::new();
    for j in n - k.min(n)..n {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// Pushes ranking query `q`: the visit `(src, place, ts)` at context `at`, then its drawn
/// candidates.
pub(crate) fn push_query(
    ranking: &mut Rows,
    q: usize,
    (src, place, ts): (usize, u32, i64),
    (lat, lon): (f64, f64),
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) {
    let cands = candidates.draw(lat, lon, place, cfg.ranking_candidates, rng);
    ranking.push_interaction(src, place, ts, 1.0);
    for &c in &cands {
        ranking.push_interaction(src, c, ts, 0.0);
    }
    if let Some(qv) = ranking.query.as_mut() {
        qv.extend(std::iter::repeat_n(q as i64, cands.len() + 1));
    }
}

/// Step 9: the feature spec, fitted on the training split (as written to `train`); declared
/// features that are constant there are an error (they cannot inform the model).
fn fit_spec(fitter: SpecFitter, train: &Path, data: &FilesConfig, sources: Vec<SourceColumn>) -> Result<FeatureSpec> {
    for f in &data.features {
        let name = f.feature_name();
        if fitter.constant(name) == Some(true) {
            return Err(Error::input(format!(
                "data.features {name:?} ({}.{}) is constant on the training split: it cannot inform the model; remove it",
                f.table.as_str(),
                f.column
            )));
        }
    }
    let mut spec = fitter.finish(train)?;
    // min_count can leave a declared column with no value in its vocabulary: all OOV, as
    // constant as a single value.
    for f in data.features.iter().filter(|f| f.kind == FeatureKind::Categorical) {
        if let Some(c) = spec.categorical.iter().find(|c| c.name == f.feature_name() && c.is_empty()) {
            return Err(Error::input(format!(
                "data.features {:?} ({}.{}): no value occurs min_count = {} times in the training split, so every value would be out of vocabulary; lower min_count",
                c.name,
                f.table.as_str(),
                f.column,
                f.min_count
            )));
        }
    }
    for f in data.features.iter().filter(|f| f.kind == FeatureKind::Numeric && f.transform == Transform::None) {
        for n in spec.numeric.iter_mut().filter(|n| n.name == f.feature_name()) {
            n.mean = 0.0;
            n.std = 1.0;
        }
    }
    spec.sources = sources;
    Ok(spec)
}

/// Which `n` of `rows` training rows form the calibration sample (ascending).
pub(crate) fn calibration_rows(rows: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    sample_sorted(rows, n, rng)
}

/// The rows of `idx` (ascending split indices) that fall in a chunk starting at row `first`.
fn take_rows(df: &DataFrame, first: usize, idx: &[usize]) -> Result<DataFrame> {
    let local = local_rows(idx, first, df.height()).into_iter().map(|i| i as IdxSize).collect();
    df.take(&IdxCa::from_vec("idx".into(), local)).map_err(pl("calibration sample"))
}

/// Step 10: the remaining files, then the staging directory renamed into place.
fn write(
    writer: ArtifactWriter,
    out_dir: &Path,
    frames: &mut [(&str, DataFrame)],
    spec: &FeatureSpec,
    mut summary: PrepareSummary,
    cfg: &PrepareConfig,
    seed: u64,
) -> Result<PrepareSummary> {
    for (name, df) in frames.iter_mut() {
        summary.rows.insert((*name).to_string(), df.height());
        write_parquet(df, &writer.path(&format!("{name}.parquet")))?;
    }
    let spec_json = serde_json::to_vec_pretty(spec).map_err(|e| Error::Internal(e.to_string()))?;
    writer.write("feature_spec.json", &spec_json)?;
    let record = serde_json::json!({ "summary": summary, "config": cfg, "seed": seed });
    let (record, _) = crate::pipeline::stable::for_file(record, out_dir);
    let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Internal(e.to_string()))?;
    writer.write("prepare.json", &json)?;
    writer.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_visit_is_the_last_visit_strictly_before_and_per_user() {
        // User 0: visits at t=10 (place 5), 20 (places 6 and 7 at the same instant), 30.
        // User 1: a non-visit at 5 (place 8), a visit at 15 (place 9).
        let user = [0, 0, 0, 0, 1, 1];
        let ts = [20, 10, 30, 20, 15, 5];
        let place = [6, 5, 1, 7, 9, 8];
        let label = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let prev = previous_visit(&user, &ts, &place, Some(&label));
        // Events at one instant do not see each other; a non-visit is no previous visit.
        assert_eq!(prev, [Some(5), None, Some(7), Some(5), None, None]);
    }

    #[test]
    fn popularity_candidates_are_distinct_exclude_the_visited_place_and_favour_visits() {
        let mut cumulative = Vec::new();
        let mut acc = 0.0;
        for w in [1.0, 1.0, 50.0, 1.0, 1.0] {
            acc += w;
            cumulative.push(acc);
        }
        let c = Candidates::Popularity { cumulative };
        let mut rng = Rng::new(1);
        let mut first = [0usize; 5];
        for _ in 0..400 {
            let d = c.draw(0.0, 0.0, 0, 3, &mut rng);
            assert_eq!(d.len(), 3);
            assert!(!d.contains(&0));
            let mut u = d.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), 3, "{d:?}");
            first[d[0] as usize] += 1;
        }
        // Place 2 carries 50 of the 54 weight: drawn first almost always.
        assert!(first[2] > 300, "{first:?}");
        // Asking for more than exist gives every other place once.
        assert_eq!(c.draw(0.0, 0.0, 4, 10, &mut rng).len(), 4);
    }

    #[test]
    fn floyd_samples_are_distinct_ascending_complete_when_asked_for_all_and_uniform() {
        let mut rng = Rng::new(3);
        assert_eq!(sample_sorted(5, 9, &mut rng), vec![0, 1, 2, 3, 4]);
        assert!(sample_sorted(0, 3, &mut rng).is_empty());
        let mut hits = [0u32; 10];
        for _ in 0..20_000 {
            let s = sample_sorted(10, 3, &mut rng);
            assert_eq!(s.len(), 3);
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
            for i in s {
                hits[i] += 1;
            }
        }
        // Each number is in a sample with probability 3/10: 6,000 of 20,000, sd ~65.
        assert!(hits.iter().all(|&h| (5_700..6_300).contains(&h)), "{hits:?}");
    }

    #[test]
    fn window_stats_use_only_events_strictly_before_t() {
        // Place 0: visits at t=10 (rating 4), 20 (no visit), 30 (rating 2), 30 (visit, no rating).
        let ev = PlaceEvents::new(
            1,
            vec![(0, 30, true, Some(2.0)), (0, 10, true, Some(4.0)), (0, 20, false, None), (0, 30, true, None)]
                .into_iter(),
        );
        let s = ev.window(0, 30, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (2, 1, Some(4.0)));
        let s = ev.window(0, 31, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (4, 3, Some(3.0)));
        // Window [t - 15, t): only the events at 20 and 30 when t = 31.
        let s = ev.window(0, 31, 15);
        assert_eq!((s.impressions, s.visits), (3, 2));
        let s = ev.window(0, 10, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (0, 0, None));
    }
}
