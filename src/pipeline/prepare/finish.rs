//! What both drivers do once the splits are written: the place snapshot, the feature spec fit
//! on the training split, the calibration sample, `feature_spec.json` and `prepare.json`, and
//! the staging directory renamed into place; the summary and the drop log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use super::candidates::Dropped;
use super::context::ContextKind;
use super::feature_files::SpecFitter;
use super::featurize::{self, FeatureContext, RowValues, Rows};
use super::labels::LabelSource;
use crate::data::chunks::local_rows;
use crate::data::io::{pl, write_parquet};
use crate::data::raw::RawData;
use crate::data::schema::{FeatureKind, FilesConfig, TableName, Transform};
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use reco_runtime::artifact::ArtifactWriter;
use reco_runtime::artifact::spec::{FeatureSpec, SourceColumn};
use reco_runtime::error::{Error, Result};
use reco_runtime::features::history;

/// What `prepare` wrote.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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

impl PrepareSummary {
    /// The summary of what both drivers wrote (the feature names come with the spec).
    pub(crate) fn new(
        dir: &Path,
        rows: BTreeMap<String, usize>,
        (labels, context): (LabelSource, Option<ContextKind>),
        dropped: Dropped,
        split_times: [i64; 2],
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            rows,
            sampled_negatives: labels == LabelSource::Implicit,
            labels,
            context,
            dropped_no_context: dropped.no_context,
            dropped_outside_radius: dropped.outside_radius,
            split_times,
            input_sha256: BTreeMap::new(),
            features: Vec::new(),
            snapshot_ts: 0,
        }
    }

    /// With the input tables' hashes and the place snapshot's time.
    pub(crate) fn with_inputs(mut self, input_sha256: BTreeMap<String, String>, snapshot_ts: i64) -> Self {
        self.input_sha256 = input_sha256;
        self.snapshot_ts = snapshot_ts;
        self
    }
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
/// `place_lat`/`place_lon` and `visits` (all visits before `ts`); not the user's history,
/// which depends on the user. What `precompute` scores
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
        .map(|(c, ..)| c.as_str())
        .chain(layout.numeric.iter().map(String::as_str))
        .filter(|c| !REQUEST_FEATURES.contains(c) && !history::NAMES.contains(c))
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

pub(crate) fn table_name(raw: &RawData) -> String {
    raw.inter.mapped.table.name.clone()
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
    for f in data.features.iter().filter(|f| f.kind.is_embedded()) {
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
    let (record, _) = crate::outputs::stable::for_file(record, out_dir);
    let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Internal(e.to_string()))?;
    writer.write("prepare.json", &json)?;
    writer.commit()?;
    Ok(summary)
}
