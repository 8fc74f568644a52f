//! `quantize`: post-training INT8 quantization of a float artifact (DESIGN §6).
//!
//! 1. Calibrate: stream the calibration file through the float model in chunks, observing each
//!    dense layer's input (two passes: range, then a fixed histogram — constant memory).
//! 2. Quantize: per-channel symmetric s8 weights, i32 biases, u8 activations with the chosen
//!    calibrator's ranges, row-wise embeddings (8- or 4-bit codes, fp16 scale and bias).
//! 3. Measure each layer's SQNR in isolation (its int8 output vs float, same float input).
//! 4. Gate: compare with the float parent on the test split (AUC, logloss) and ranking set
//!    (NDCG@10). While it fails, move the least accurate remaining layer (lowest SQNR) back to
//!    float. Still failing with every layer in float: the artifact is written, marked failed.
//!    Then `auto` embedding tables drop to their smallest layout, the most sensitive raised
//!    back to 8 bits while the gate fails, and one more float layer may buy every table its
//!    smallest ([`gate`]).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::chunks::{MAX_ROWS_IN_MEMORY, Split};
use crate::data::features::FeatureFrame;
use crate::pipeline::eval::Quality;
use crate::progress::Progress;
use crate::recipe::{EmbeddingPrecision, QuantizeSettings};
use reco_runtime::artifact::manifest::{Kind, Manifest};
use reco_runtime::artifact::size;
use reco_runtime::error::{Error, Result};
use reco_runtime::kernels::Kernel;
use reco_runtime::quant::TableLayout;
use reco_runtime::runtime::{FloatModel, Model};

/// Inputs of a quantization run.
pub struct QuantizeJob<'a> {
    /// Float artifact.
    pub model: &'a Path,
    /// Calibration feature file.
    pub calibration: &'a Path,
    /// Held-out feature file for the gate.
    pub test: &'a Path,
    /// Ranking set for NDCG@10 (optional).
    pub ranking: Option<&'a Path>,
    /// Output artifact directory.
    pub out: &'a Path,
    /// Settings.
    pub opts: QuantizeSettings,
    /// Dense layers to keep in float whatever the gate says (the gate's fallback adds to them).
    pub keep_float: &'a [usize],
}

/// What quantization produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QuantizeSummary {
    /// Output directory.
    pub dir: PathBuf,
    /// Artifact kind (`<parent>-int8`).
    pub kind: Kind,
    /// Whether the gate held.
    pub passed: bool,
    /// Settings used.
    pub options: QuantizeSettings,
    /// Float parent on the test split.
    pub parent: Quality,
    /// The written INT8 model on the test split.
    pub int8: Quality,
    /// AUC(int8) - AUC(float).
    pub delta_auc: Option<f64>,
    /// NDCG@10(int8) - NDCG@10(float).
    pub delta_ndcg: Option<f64>,
    /// Per-layer SQNR (dB), integer layer vs float, same float input.
    pub layer_sqnr_db: Vec<f64>,
    /// Layers kept in float by the gate.
    pub float_layers: Vec<usize>,
    /// Calibration rows streamed.
    pub calibration_rows: usize,
    /// Calibrator state, bytes (independent of the number of rows).
    pub calibrator_state_bytes: usize,
    /// Kernel used for evaluation.
    pub kernel: String,
    /// Per dense layer: its input's distribution, the range calibration chose, its SQNR.
    pub layers: Vec<LayerReport>,
    /// Every gate evaluation, in order: the float layers and table precisions tried and what
    /// they gave.
    pub steps: Vec<FallbackStep>,
    /// Each embedding table's chosen layout, by column.
    pub embedding_precision: BTreeMap<String, TableLayout>,
    /// The `auto` tables' sensitivities (measured only when every table at its smallest failed).
    pub embedding_sensitivity: Vec<TableSensitivity>,
    /// Bytes of each embedding table and dense layer as stored.
    pub sizes: Vec<reco_runtime::artifact::size::TensorSize>,
    /// (float logit, INT8 logit) of up to [`SCATTER_ROWS`] test rows spread over the file.
    pub scatter: Vec<[f32; 2]>,
}

/// Test rows sampled for the INT8-vs-float scatter.
pub const SCATTER_ROWS: usize = 500;

/// Bins of each layer's activation histogram.
pub const HISTOGRAM_BINS: usize = 40;

/// One dense layer's quantization record.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// Layer index.
    pub layer: usize,
    /// SQNR of its INT8 output against float on the same input, dB (`null`: exact).
    pub sqnr_db: Option<f64>,
    /// The real range its u8 input codes cover (`null`: dynamic, per batch).
    pub range: Option<[f64; 2]>,
    /// Its input values on the first calibration chunk.
    pub histogram: ValueHistogram,
}

/// Equal-width bins over `[lo, hi]`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ValueHistogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Values per bin.
    pub counts: Vec<u64>,
}

/// One evaluation of the accuracy gate.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FallbackStep {
    /// Layers kept in float.
    pub float_layers: Vec<usize>,
    /// Each embedding table's layout, by column.
    pub embedding_precision: BTreeMap<String, TableLayout>,
    /// INT8 minus float AUC on the test split.
    pub delta_auc: Option<f64>,
    /// INT8 minus float NDCG@10 on the ranking set.
    pub delta_ndcg: Option<f64>,
    /// Mean Jaccard similarity of each ranking query's top 10 under INT8 and float.
    pub top10_jaccard: Option<f64>,
    /// Whether the gate held.
    pub passed: bool,
}

/// One embedding table alone in its smallest layout, the others as the dense-layer step left
/// them.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TableSensitivity {
    /// Its categorical column.
    pub table: String,
    /// The column's index.
    pub column: usize,
    /// INT8 minus float AUC.
    pub delta_auc: Option<f64>,
    /// INT8 minus float NDCG@10.
    pub delta_ndcg: Option<f64>,
    /// The larger of |ΔAUC| and |ΔNDCG@10| as a share of what the gate allows.
    pub severity: f64,
}

pub use reco_runtime::quant::calibrate::MIN_CALIBRATION_ROWS;

mod artifact;
mod build;
mod gate;
pub(crate) use gate::within;

use build::Built;

/// Runs calibration, quantization, the gate with fallback, and writes the artifact.
pub fn quantize(job: &QuantizeJob<'_>, progress: &dyn Progress) -> Result<QuantizeSummary> {
    let inputs = Inputs::load(job)?;
    progress.begin("quantize", 4);
    let built = Built::new(&inputs, &job.opts)?;
    progress.advance(2);
    let parent_model = Model::Float(inputs.parent.clone());
    let gated = gate::fallback(&inputs, &built, &parent_model, &job.opts, progress)?;
    progress.advance(1);
    let weights = gated.weights.to_bytes(&inputs.parent.spec)?;
    let summary = summarize(job, &inputs, (&built, &gated, &weights), &parent_model)?;
    artifact::write(job, &inputs, &built, &gated, (&summary, &weights))?;
    progress.advance(1);
    progress.end();
    Ok(summary)
}

/// Everything `quantize` reads, checked before any work: the float parent, the kernel, the
/// calibration rows, the test split (in memory up to `MAX_ROWS_IN_MEMORY` rows, else a row
/// group at a time) with its labels, the ranking set, and the layers asked to stay float.
pub(crate) struct Inputs {
    pman: Manifest,
    kind: Kind,
    parent: FloatModel,
    kernel: Kernel,
    cal: FeatureFrame,
    test: Split,
    test_labels: Vec<f32>,
    ranking: Option<FeatureFrame>,
    requested: Vec<usize>,
    /// Each embedding table's precision as asked, in column order.
    table_precision: Vec<EmbeddingPrecision>,
}

impl Inputs {
    fn load(job: &QuantizeJob<'_>) -> Result<Self> {
        let (pman, kind, parent) = float_parent(job)?;
        let layers = parent.weights.dense.len();
        if let Some(&bad) = job.keep_float.iter().find(|&&i| i >= layers) {
            return Err(Error::input(format!(
                "--keep-float {bad}: {} has dense layers 0 to {}",
                job.model.display(),
                layers.saturating_sub(1)
            )));
        }
        let table_precision = table_precision(&job.opts, &parent, job.model)?;
        let cal = FeatureFrame::read(job.calibration, &parent.spec, false)?;
        if cal.columns.rows < MIN_CALIBRATION_ROWS {
            return Err(Error::input(format!(
                "{}: {} calibration rows, expected at least {MIN_CALIBRATION_ROWS} (activation ranges from fewer rows are noise)",
                job.calibration.display(),
                cal.columns.rows
            )));
        }
        let test = Split::open(job.test, &parent.spec, true, MAX_ROWS_IN_MEMORY)?;
        let test_labels = test.labels(&parent.spec, job.test)?;
        let ranking = job.ranking.map(|p| ranking_set(p, &parent)).transpose()?;
        let mut requested = job.keep_float.to_vec();
        requested.sort_unstable();
        requested.dedup();
        let kernel = Kernel::detect()?;
        Ok(Self { pman, kind, parent, kernel, cal, test, test_labels, ranking, requested, table_precision })
    }
}

/// Each table's precision: its override, else `embedding_bits`. An override naming no
/// categorical column of the model is refused.
fn table_precision(opts: &QuantizeSettings, parent: &FloatModel, model: &Path) -> Result<Vec<EmbeddingPrecision>> {
    let cols = &parent.spec.categorical;
    if let Some(bad) = opts.embedding_table_bits.keys().find(|k| !cols.iter().any(|c| &c.name == *k)) {
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::input(format!(
            "embedding_table_bits: {} has no categorical column `{bad}` (its tables: {})",
            model.display(),
            names.join(", ")
        )));
    }
    Ok(cols.iter().map(|c| opts.embedding_table_bits.get(&c.name).copied().unwrap_or(opts.embedding_bits)).collect())
}

/// The float artifact to quantize (an INT8 one is refused), when `--out` may take its INT8
/// model (an artifact already there may only be an earlier version of it).
fn float_parent(job: &QuantizeJob<'_>) -> Result<(Manifest, Kind, FloatModel)> {
    let (pman, parent) = match Model::open(job.model)? {
        (m, Model::Float(f)) => (m, f),
        (m, Model::Int8(_)) => {
            return Err(Error::input(format!(
                "{}: kind {} is already INT8, expected a float artifact",
                job.model.display(),
                m.kind
            )));
        }
    };
    let kind = pman.kind.int8().ok_or_else(|| Error::Internal(format!("kind {} has no INT8 version", pman.kind)))?;
    if let Ok(existing) = reco_runtime::artifact::open(job.out)
        && existing.kind != kind
    {
        return Err(Error::input(format!(
            "--out {}: holds a {} artifact; quantize writes a {kind} there (choose another --out)",
            job.out.display(),
            existing.kind
        )));
    }
    Ok((pman, kind, parent))
}

/// A ranking set with its queries.
fn ranking_set(path: &Path, parent: &FloatModel) -> Result<FeatureFrame> {
    let r = FeatureFrame::read(path, &parent.spec, true)?;
    if r.query_id.is_none() {
        return Err(Error::input(format!("{}: the ranking file has no query_id column", path.display())));
    }
    Ok(r)
}

/// The stage's summary: what the gate chose, each layer's record, the scatter of INT8
/// against float logits on sampled test rows.
fn summarize(
    job: &QuantizeJob<'_>,
    inputs: &Inputs,
    (built, gated, weights): (&Built, &gate::Gated, &[u8]),
    parent_model: &Model,
) -> Result<QuantizeSummary> {
    let (test, spec) = (&inputs.test, &inputs.parent.spec);
    let sample = test.take(spec, &build::spread(test.rows(), SCATTER_ROWS))?;
    let scatter =
        parent_model.logits(&sample)?.into_iter().zip(gated.model.logits(&sample)?).map(|(a, b)| [a, b]).collect();
    let (q, parent_q) = (gated.quality, gated.parent_quality);
    Ok(QuantizeSummary {
        dir: job.out.to_path_buf(),
        kind: inputs.kind,
        passed: gated.passed,
        options: job.opts.clone(),
        parent: parent_q,
        int8: q,
        delta_auc: gate::delta(q.auc, parent_q.auc),
        delta_ndcg: gate::delta(q.ndcg10, parent_q.ndcg10),
        layer_sqnr_db: built.sqnr.clone(),
        float_layers: gated.float_layers.clone(),
        calibration_rows: inputs.cal.columns.rows,
        calibrator_state_bytes: built.state_bytes,
        kernel: inputs.kernel.name().to_string(),
        layers: built.layer_reports(),
        steps: gated.steps.clone(),
        embedding_precision: gate::table_map(inputs, &gated.weights.embedding_layouts()),
        embedding_sensitivity: gated.sensitivity.clone(),
        sizes: size::tensor_sizes(weights, spec, &inputs.parent.arch, true)?,
        scatter,
    })
}

/// `<model>-int8` next to the model directory.
pub fn default_out(model: &Path) -> PathBuf {
    let name = model.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    model.with_file_name(format!("{name}-int8"))
}
