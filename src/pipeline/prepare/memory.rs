//! The in-memory driver of `prepare`: the tables read whole, then every step in turn
//! (labels, context, impressions, splits, ranking set, window statistics, features, finish).

use std::collections::BTreeMap;
use std::path::Path;

use super::candidates::{Candidates, impressions};
use super::context::{Context, ContextKind, at_place_counts, context, refuse_at_place};
use super::events::{self, EventChunk, EventWriter};
use super::feature_files::{CHUNK_ROWS, write_split};
use super::featurize::{self, FeatureContext, RowValues, Rows};
use super::finish::{
    Finish, PrepareSummary, TrainSample, log_drops, place_snapshot, refuse_no_rows, snapshot_rows, table_name,
};
use super::history::{UserHistory, place_categories};
use super::labels::{LabelSource, check_declared_leakage, labels};
use super::splits::{calibration_rows, ranking_set, split};
use super::window::{PlaceEvents, window_seconds};
use crate::data::raw::{self, RawData};
use crate::data::schema::{FilesConfig, TableName};
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use reco_runtime::artifact::ArtifactWriter;
use reco_runtime::error::Result;
use reco_runtime::rng::Rng;

/// Prepares the tables `data` describes into `out_dir`, read into memory whole.
pub fn prepare(
    data: &FilesConfig,
    out_dir: &Path,
    cfg: &PrepareConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    progress.begin("prepare", 6);
    let Labelled { raw, label, source: label_source, ctx } = read(data)?;
    progress.advance(1);
    let events = place_events(&raw, &label);
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
        history: cfg.history,
    };
    let history = cfg.history.then(|| user_history(&raw, &label, fctx.window)).transpose()?;
    let values = |r: &Rows, _: usize| featurize::resolve(r, &raw, ctx.as_ref(), (&events, history.as_ref()), &fctx);
    // Every file goes into a staging directory renamed into place at the end.
    let writer = ArtifactWriter::create(out_dir)?;
    let mut sample = TrainSample::new(&fctx, calibration_rows(splits[0].len(), cfg.calibration_rows, &mut rng));
    let rows = write_splits(&writer, (&splits, &ranking), &fctx, values, &mut sample)?;
    progress.advance(1);

    let snapshot_ts = raw.inter.ts.iter().max().map_or(0, |t| t.saturating_add(1));
    write_events(&writer, &raw, &label)?;
    events::write_settings(&writer, data, &fctx, snapshot_ts)?;
    let snapshot_rows = snapshot_rows(raw.places.ids.len(), snapshot_ts);
    let places = place_snapshot(&fctx, &snapshot_rows, &values(&snapshot_rows, 0)?, visits(&raw, &label))?;
    let summary = PrepareSummary::new(out_dir, rows, (label_source, ctx.as_ref().map(|c| c.kind)), dropped, cuts)
        .with_inputs(raw.hashes.clone(), snapshot_ts);
    let done = Finish { writer, sample, places, sources: raw.sources.clone(), summary };
    done.write(data, out_dir, cfg, seed, progress)
}

/// The tables with their labels and context locations, checked for leaks.
struct Labelled {
    raw: RawData,
    label: Vec<f32>,
    source: LabelSource,
    ctx: Option<Context>,
}

/// Reads the tables, labels the interactions, finds each one's context location and refuses
/// what would leak the label; afterwards the interactions table keeps only the columns its
/// declared features read.
fn read(data: &FilesConfig) -> Result<Labelled> {
    let mut raw = raw::read(data)?;
    let (label, source) = labels(data, &raw.inter)?;
    let ctx = context(data, &raw.users, &raw.places, &raw.inter, &label)?;
    if let Some(c) = ctx.as_ref().filter(|c| c.kind == ContextKind::Interaction) {
        let (at, visits) = at_place_counts(&raw.places, &raw.inter.place, c, &label);
        refuse_at_place(&table_name(&raw), at, visits)?;
    }
    check_declared_leakage(data, source)?;
    let mut declared: Vec<&str> = Vec::new();
    for f in data.features.iter().filter(|f| f.table == TableName::Interactions) {
        if !declared.contains(&f.column.as_str()) {
            declared.push(f.column.as_str()); // two features may read one column
        }
    }
    raw.inter.mapped.table.keep_columns(&declared)?;
    Ok(Labelled { raw, label, source, ctx })
}

/// Point-in-time statistics come from the real events only, never from sampled negatives.
fn place_events(raw: &RawData, label: &[f32]) -> PlaceEvents {
    let inter = &raw.inter;
    let rating = inter.rating.as_ref();
    PlaceEvents::new(
        raw.places.ids.len(),
        (0..inter.ts.len()).map(|i| (inter.place[i] as usize, inter.ts[i], label[i] > 0.5, rating.map(|r| r[i]))),
    )
}

/// Every user's visits (the real events only), indexed for the history features.
fn user_history(raw: &RawData, label: &[f32], window: i64) -> Result<UserHistory> {
    let inter = &raw.inter;
    let visits = (0..inter.ts.len()).filter(|&i| label[i] > 0.5).map(|i| (inter.user[i], inter.place[i], inter.ts[i]));
    Ok(UserHistory::new(visits, place_categories(&raw.places)?, window))
}

/// Every real event into `events.parquet`, in input order.
fn write_events(writer: &ArtifactWriter, raw: &RawData, label: &[f32]) -> Result<()> {
    let inter = &raw.inter;
    let mut out = EventWriter::create(writer, &raw.users, &raw.places)?;
    let mut chunk = EventChunk::default();
    for i in 0..inter.ts.len() {
        let rating = inter.rating.as_ref().map(|r| r[i]);
        chunk.push((inter.user[i], inter.place[i], inter.ts[i], label[i] > 0.5), rating);
        if chunk.len() == CHUNK_ROWS {
            out.push(&mut chunk)?;
        }
    }
    out.push(&mut chunk)?;
    out.finish()
}

/// Every place's visits in the whole log.
fn visits(raw: &RawData, label: &[f32]) -> Vec<u32> {
    let mut visits = vec![0u32; raw.places.ids.len()];
    for (&p, &y) in raw.inter.place.iter().zip(label) {
        visits[p as usize] += u32::from(y > 0.5);
    }
    visits
}

/// The three splits (the training one feeding the spec and the calibration sample) and the
/// ranking set into the staging directory; the rows of each.
fn write_splits(
    writer: &ArtifactWriter,
    (splits, ranking): (&[Rows; 3], &Rows),
    fctx: &FeatureContext<'_>,
    values: impl Fn(&Rows, usize) -> Result<RowValues> + Copy,
    sample: &mut TrainSample,
) -> Result<BTreeMap<String, usize>> {
    let mut rows = BTreeMap::new();
    for (name, s) in ["train", "valid", "test"].into_iter().zip(splits) {
        let path = writer.path(&format!("{name}.parquet"));
        let n = write_split(s, fctx, &path, values, |df, first| match name {
            "train" => sample.add(df, first),
            _ => Ok(()),
        })?;
        rows.insert(name.to_string(), n);
    }
    rows.insert("ranking".into(), write_split(ranking, fctx, &writer.path("ranking.parquet"), values, |_, _| Ok(()))?);
    Ok(rows)
}
