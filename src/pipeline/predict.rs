//! `predict`: batch scoring of a feature file into Parquet (`row`, `logit`, `probability`).

use std::path::Path;

use serde::Serialize;

use crate::data::features::FeatureFrame;
use crate::error::Result;
use crate::parquet_out::write_predictions;
use crate::runtime::Model;

/// What was scored.
#[derive(Debug, Clone, Serialize)]
pub struct PredictSummary {
    /// Rows written.
    pub rows: usize,
    /// Output file.
    pub out: String,
    /// Content hash of the model used.
    pub model_sha256: String,
}

/// Scores `data` with the model in `model_dir` and writes `out`.
pub fn predict(model_dir: &Path, data: &Path, out: &Path) -> Result<PredictSummary> {
    let (manifest, model) = Model::open(model_dir)?;
    super::paths::check_output(out, &[data], &[model_dir], None)?;
    let frame = FeatureFrame::read(data, model.spec(), false)?;
    let logits = model.logits(&frame.columns)?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(crate::error::Error::input(format!(
            "{}: the model scores row {i} of {} as {}; nothing written",
            model_dir.display(),
            data.display(),
            logits[i]
        )));
    }
    let hash = manifest.content_hash();
    let meta = vec![
        ("reco_cli.version".to_string(), crate::VERSION.to_string()),
        ("reco_cli.model_kind".to_string(), manifest.kind.to_string()),
        ("reco_cli.model_content_sha256".to_string(), hash.clone()),
        ("reco_cli.input".to_string(), data.display().to_string()),
    ];
    write_predictions(out, &logits, &meta)?;
    Ok(PredictSummary { rows: logits.len(), out: out.display().to_string(), model_sha256: hash })
}
