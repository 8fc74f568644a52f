//! `predict`: batch scoring of a feature file into Parquet (`row`, `logit`, `probability`).
//!
//! Parquet input (a file, or a directory or glob of parts) is streamed: read [`BATCH_ROWS`]
//! rows at a time (only the model's columns), scored, written, so memory stays flat whatever
//! the file's size. CSV input, model inputs in hive folder names, and column types only the
//! whole-table reader converts (whole-number float ids, say) are read whole.

use std::path::Path;

use serde::Serialize;

use crate::data::features::FeatureFrame;
use crate::outputs::{Format, OutputGuard, Written};
use crate::parquet_out::{stream_predictions, write_predictions};
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::{Columns, Model};

/// Rows scored per streamed batch.
pub const BATCH_ROWS: usize = 64 * 1024;

/// What was scored.
#[derive(Debug, Clone, Serialize)]
pub struct PredictSummary {
    /// Rows written.
    pub rows: usize,
    /// Output file.
    pub out: String,
    /// Content hash of the model used.
    pub model_sha256: String,
    /// Whether the input was streamed (Parquet) or read whole (CSV).
    pub streamed: bool,
    /// Raw rows (`--raw`): how many the features could not fully know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<crate::pipeline::raw::FlagCounts>,
}

/// Scores `data` with the model in `model_dir` and writes `out`: a feature file, or raw rows
/// featurized with `raw`'s features directory ([`crate::pipeline::raw`]). A failed or stale
/// model is refused unless `allow_failed`.
pub fn predict(
    model_dir: &Path,
    (data, raw): (&Path, Option<&Path>),
    out: &Path,
    allow_failed: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<PredictSummary> {
    let mut reads = vec![data, model_dir];
    reads.extend(raw);
    OutputGuard::new("--out", out, Written::File(Format::Parquet)).reads(&reads).check()?;
    let (manifest, model) = Model::open(model_dir)?;
    if !allow_failed {
        reco_runtime::artifact::check_usable(model_dir, &manifest)?;
    }
    let hash = manifest.content_hash();
    let meta = vec![
        ("reco_cli.version".to_string(), crate::VERSION.to_string()),
        ("reco_cli.model_kind".to_string(), manifest.kind.to_string()),
        ("reco_cli.model_content_sha256".to_string(), hash.clone()),
        ("reco_cli.input".to_string(), data.display().to_string()),
    ];
    if let Some(features) = raw {
        let (cols, flags) = crate::pipeline::raw::featurize(data, features, model.spec())?;
        if flags.unknown_user + flags.unknown_place > 0 {
            progress.log(&format!(
                "predict: {} rows with a user and {} with a place the model does not know, scored through the out-of-vocabulary rows",
                flags.unknown_user, flags.unknown_place
            ));
        }
        let logits = scored(&model, &cols, 0, model_dir, data)?;
        write_predictions(out, &logits, &meta)?;
        let out = out.display().to_string();
        return Ok(PredictSummary { rows: logits.len(), out, model_sha256: hash, streamed: false, raw: Some(flags) });
    }
    let parts = crate::data::table::list_files(data)?;
    let parquet = parts.iter().all(|(p, keys)| streamable(p, keys, &model));
    let rows = if parquet {
        let files: Vec<_> = parts.into_iter().map(|(p, _)| p).collect();
        let total: usize = files
            .iter()
            .filter_map(|f| crate::data::table::parquet_footer(f).ok())
            .map(|(groups, _)| groups.iter().sum::<usize>())
            .sum();
        progress.begin("predict: rows scored", total as u64);
        let rows = stream(&model, (model_dir, data), &files, out, &meta, progress)?;
        progress.end();
        rows
    } else {
        let frame = FeatureFrame::read(data, model.spec(), false)?;
        let logits = scored(&model, &frame.columns, 0, model_dir, data)?;
        write_predictions(out, &logits, &meta)?;
        logits.len()
    };
    Ok(PredictSummary { rows, out: out.display().to_string(), model_sha256: hash, streamed: parquet, raw: None })
}

/// Whether a part can be streamed: Parquet, no model input held in its `key=value` folders
/// (those come from the whole-table reader), and every model input of a type the streaming
/// reader takes (integer or string ids, numbers of any width). Anything else is read whole.
fn streamable(path: &Path, hive: &[(String, String)], model: &Model) -> bool {
    let spec = model.spec();
    let inputs = spec.input_names();
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
        || hive.iter().any(|(k, _)| inputs.contains(&k.as_str()))
    {
        return false;
    }
    let Ok(schema) = reco_runtime::runtime::arrow_io::parquet_schema(path) else { return false };
    let typed = |name: &str, ok: &dyn Fn(&arrow::datatypes::DataType) -> bool| {
        schema.field_with_name(name).is_ok_and(|f| ok(f.data_type()))
    };
    let id_ok = |t: &arrow::datatypes::DataType| t.is_integer() || !t.is_numeric();
    spec.categorical.iter().all(|c| typed(&c.name, &id_ok))
        && spec.numeric.iter().all(|n| typed(&n.name, &|t| t.is_numeric()))
}

/// Logits of `cols` (rows `first..` of the input), every one finite.
fn scored(model: &Model, cols: &Columns, first: usize, model_dir: &Path, data: &Path) -> Result<Vec<f32>> {
    let logits = model.logits(cols)?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(Error::input(format!(
            "{}: the model scores row {} of {} as {}; nothing written",
            model_dir.display(),
            first + i,
            data.display(),
            logits[i]
        )));
    }
    Ok(logits)
}

/// Streams every part of a Parquet input through the model into `out`.
fn stream(
    model: &Model,
    (model_dir, data): (&Path, &Path),
    files: &[std::path::PathBuf],
    out: &Path,
    meta: &[(String, String)],
    progress: &dyn crate::progress::Progress,
) -> Result<usize> {
    let spec = model.spec();
    let mut files = files.iter();
    let mut batches: Option<Box<dyn Iterator<Item = Result<Columns>> + '_>> = None;
    let mut done = 0usize;
    let rows = stream_predictions(out, data, meta, || {
        loop {
            if let Some(cols) = batches.as_mut().and_then(Iterator::next) {
                let cols = cols?;
                let logits = scored(model, &cols, done, model_dir, data)?;
                done += logits.len();
                progress.advance(logits.len() as u64);
                return Ok(Some(logits));
            }
            match files.next() {
                Some(f) => {
                    batches = Some(Box::new(reco_runtime::runtime::arrow_io::parquet_batches(f, spec, BATCH_ROWS)?))
                }
                None => return Ok(None),
            }
        }
    })?;
    Ok(rows as usize)
}
