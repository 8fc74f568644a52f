//! `quantize`: post-training INT8 quantization of a float artifact (DESIGN §6).
//!
//! 1. Calibrate: stream the calibration file through the float model in chunks, observing each
//!    dense layer's input (two passes: range, then a fixed histogram — constant memory).
//! 2. Quantize: per-channel symmetric s8 weights, i32 biases, u8 activations with the chosen
//!    calibrator's ranges, row-wise u8 embeddings.
//! 3. Measure each layer's SQNR in isolation (its int8 output vs float, same float input).
//! 4. Gate: compare with the float parent on the test split (AUC, logloss) and ranking set
//!    (NDCG@10). While it fails, move the least accurate remaining layer (lowest SQNR) back to
//!    float. Still failing with every layer in float: the artifact is written, marked failed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::chunks::{MAX_ROWS_IN_MEMORY, Split};
use crate::data::features::FeatureFrame;
use crate::metrics;
use crate::pipeline::eval::{Quality, quality_and_ranking};
use crate::progress::Progress;
use crate::recipe::QuantizeSettings;
use reco_runtime::artifact::manifest::{
    ActivationQuant, FORMAT, FORMAT_VERSION, Kind, Lineage, Manifest, Quantization, QuantizationGate, Status,
};
use reco_runtime::artifact::qweights::{LAYOUT, QLayer, QuantWeights, RowwiseTable};
use reco_runtime::artifact::weights::Dense;
use reco_runtime::artifact::{ArtifactWriter, WEIGHTS, sha256_file};
use reco_runtime::error::{Error, Result};
use reco_runtime::kernels::Kernel;
use reco_runtime::quant::calibrate::{Calibrator, Observer};
use reco_runtime::quant::{QParams, quantize_bias, quantize_rowwise, quantize_weights, sqnr_db};
use reco_runtime::runtime::int8::{self, Int8Model};
use reco_runtime::runtime::{CHUNK, FloatModel, Model, chunks, dense_forward, encode};

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
    /// Every gate evaluation, in order: the float layers tried and what they gave.
    pub steps: Vec<FallbackStep>,
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
    /// INT8 minus float AUC on the test split.
    pub delta_auc: Option<f64>,
    /// INT8 minus float NDCG@10 on the ranking set.
    pub delta_ndcg: Option<f64>,
    /// Mean Jaccard similarity of each ranking query's top 10 under INT8 and float.
    pub top10_jaccard: Option<f64>,
    /// Whether the gate held.
    pub passed: bool,
}

/// `values` in [`HISTOGRAM_BINS`] bins spanning them and `range` (so the range's edges fall
/// inside the plot).
fn histogram(values: &[f32], range: Option<[f64; 2]>) -> ValueHistogram {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(f64::from(v)), hi.max(f64::from(v))));
    if let Some([a, b]) = range {
        (lo, hi) = (lo.min(a), hi.max(b));
    }
    if !(lo.is_finite() && hi.is_finite()) {
        (lo, hi) = (0.0, 1.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    for &v in values {
        counts[(((f64::from(v) - lo) / width) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    ValueHistogram { lo, hi, counts }
}

/// The real values u8 codes 0 and 255 stand for.
fn code_range(qp: &QParams) -> [f64; 2] {
    let s = f64::from(qp.scale);
    [f64::from(-qp.zero_point) * s, f64::from(255 - qp.zero_point) * s]
}

/// Rows `0, n/k, 2n/k, ...`: at most `k` spread over `n`.
fn spread(n: usize, k: usize) -> Vec<usize> {
    let step = n.div_ceil(k.max(1)).max(1);
    (0..n).step_by(step).collect()
}

/// Float activations entering each dense layer for a chunk of rows.
fn layer_inputs(model: &FloatModel, enc: &reco_runtime::runtime::Encoded) -> Vec<Vec<f32>> {
    let mut inputs = vec![model.input_matrix(enc)];
    let last = model.weights.dense.len() - 1;
    for (i, layer) in model.weights.dense.iter().enumerate().take(last) {
        let mut y = dense_forward(&inputs[i], enc.rows, layer);
        y.iter_mut().for_each(|v| *v = v.max(0.0));
        inputs.push(y);
    }
    inputs
}

fn calibrate(model: &FloatModel, frame: &FeatureFrame, cal: Calibrator) -> (Vec<Observer>, usize) {
    let n_layers = model.weights.dense.len();
    let mut obs = vec![Observer::default(); n_layers];
    let rows = frame.columns.rows;
    let passes = if cal.needs_histogram() { 2 } else { 1 };
    for pass in 0..passes {
        if pass == 1 {
            obs.iter_mut().for_each(Observer::start_histogram);
        }
        for r in chunks(rows) {
            let enc = encode(&model.spec, &frame.columns.view().slice(r));
            for (o, x) in obs.iter_mut().zip(layer_inputs(model, &enc)) {
                if pass == 0 { o.observe_range(&x) } else { o.observe_histogram(&x) }
            }
        }
    }
    let bytes = obs.iter().map(Observer::state_bytes).sum();
    (obs, bytes)
}

fn int8_layer(d: &Dense, qp: Option<QParams>, opts: &QuantizeSettings) -> QLayer {
    let (weight, weight_scale) = quantize_weights(&d.weight, d.output, d.input, opts.weight_bits, opts.per_channel);
    let (static_input, bias) = match qp {
        Some(qp) => (Some((quantize_bias(&d.bias, qp.scale, &weight_scale), qp)), Vec::new()),
        None => (None, d.bias.clone()),
    };
    QLayer::Int8 { weight, weight_scale, static_input, bias, input: d.input, output: d.output }
}

/// SQNR of one quantized layer's output (before activation) against the float layer's, for
/// float input `x`; infinite for a layer kept float.
fn layer_sqnr(d: &Dense, layer: &QLayer, x: &[f32], m: usize, kernel: Kernel) -> f64 {
    match int8::layer_output(layer, x, m, kernel) {
        Some(y) => sqnr_db(&dense_forward(x, m, d), &y),
        None => f64::INFINITY,
    }
}

/// `a - b`, or `None` (not measurable) when either is missing or not finite.
fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let d = a? - b?;
    d.is_finite().then_some(d)
}

/// Whether a measured change stays within `max`: a change that could not be measured fails.
fn within(d: Option<f64>, max: f64) -> bool {
    d.is_some_and(|d| d.abs() <= max)
}

/// A change for the log: signed, or "not measurable".
fn shown(d: Option<f64>) -> String {
    d.map_or_else(|| "not measurable".into(), |d| format!("{d:+.5}"))
}

pub use reco_runtime::quant::calibrate::MIN_CALIBRATION_ROWS;

/// The scheme in words, as every INT8 manifest records it.
const SCHEME: &str = "weights int8 symmetric per output channel (zero point 0); biases int32 at s_x*s_w; activations uint8 asymmetric per tensor; embeddings row-wise uint8 with fp32 scale and offset";

/// Runs calibration, quantization, the gate with fallback, and writes the artifact.
pub fn quantize(job: &QuantizeJob<'_>, progress: &dyn Progress) -> Result<QuantizeSummary> {
    let opts = job.opts;
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
    // An artifact already at --out may only be an earlier version of this one.
    if let Ok(existing) = reco_runtime::artifact::open(job.out)
        && existing.kind != kind
    {
        return Err(Error::input(format!(
            "--out {}: holds a {} artifact; quantize writes a {kind} there (choose another --out)",
            job.out.display(),
            existing.kind
        )));
    }
    let kernel = Kernel::detect()?;
    let layers = parent.weights.dense.len();
    if let Some(&bad) = job.keep_float.iter().find(|&&i| i >= layers) {
        return Err(Error::input(format!(
            "--keep-float {bad}: {} has dense layers 0 to {}",
            job.model.display(),
            layers.saturating_sub(1)
        )));
    }
    let cal = FeatureFrame::read(job.calibration, &parent.spec, false)?;
    if cal.columns.rows < MIN_CALIBRATION_ROWS {
        return Err(Error::input(format!(
            "{}: {} calibration rows, expected at least {MIN_CALIBRATION_ROWS} (activation ranges from fewer rows are noise)",
            job.calibration.display(),
            cal.columns.rows
        )));
    }
    // Scored at every gate check: in memory up to MAX_ROWS_IN_MEMORY rows, else streamed a
    // row group at a time (only its labels stay in memory).
    let test = Split::open(job.test, &parent.spec, true, MAX_ROWS_IN_MEMORY)?;
    let test_labels = test.labels(&parent.spec, job.test)?;
    let ranking = match job.ranking {
        Some(p) => {
            let r = FeatureFrame::read(p, &parent.spec, true)?;
            if r.query_id.is_none() {
                return Err(Error::input(format!("{}: the ranking file has no query_id column", p.display())));
            }
            Some(r)
        }
        None => None,
    };
    progress.begin("quantize", 4);
    let (obs, state_bytes) = calibrate(&parent, &cal, opts.calibrator);
    let act: Vec<Option<QParams>> = obs.iter().map(|o| (!opts.dynamic).then(|| o.qparams(opts.calibrator))).collect();
    progress.advance(1);

    let embeddings: Vec<RowwiseTable> = parent
        .weights
        .embeddings
        .iter()
        .map(|t| {
            let (codes, scale_offset) = quantize_rowwise(&t.data, t.rows, t.dim);
            RowwiseTable { codes, scale_offset, rows: t.rows, dim: t.dim }
        })
        .collect();
    let int8_layers: Vec<QLayer> =
        parent.weights.dense.iter().zip(&act).map(|(d, qp)| int8_layer(d, *qp, &opts)).collect();

    // Per-layer SQNR on the first calibration chunk.
    let m = cal.columns.rows.min(CHUNK);
    let inputs = layer_inputs(&parent, &encode(&parent.spec, &cal.columns.view().slice(0..m)));
    let sqnr: Vec<f64> = parent
        .weights
        .dense
        .iter()
        .zip(&int8_layers)
        .zip(&inputs)
        .map(|((d, l), x)| layer_sqnr(d, l, x, m, kernel))
        .collect();
    progress.advance(1);

    let parent_model = Model::Float(parent.clone());
    let (parent_q, parent_scores) = quality_and_ranking(&parent_model, (&test, &test_labels), ranking.as_ref())?;
    let build = |float_layers: &[usize]| -> QuantWeights {
        let layers = int8_layers
            .iter()
            .enumerate()
            .map(
                |(i, l)| {
                    if float_layers.contains(&i) { QLayer::Float(parent.weights.dense[i].clone()) } else { l.clone() }
                },
            )
            .collect();
        QuantWeights { embeddings: embeddings.clone(), layers }
    };
    let mut requested = job.keep_float.to_vec();
    requested.sort_unstable();
    requested.dedup();
    let mut float_layers = requested.clone();
    // Fallback order: the remaining layers, lowest SQNR first.
    let mut order: Vec<usize> = (0..sqnr.len()).filter(|i| !float_layers.contains(i)).collect();
    order.sort_by(|&a, &b| sqnr[a].total_cmp(&sqnr[b]));
    let mut order = order.into_iter();
    let parent_rank = match (&ranking, parent_scores) {
        (Some(r), Some(s)) => Some((r.query_id.as_deref().unwrap_or_default(), s)),
        _ => None,
    };
    let mut steps = Vec::new();
    let (weights, q, passed, model) = loop {
        let w = build(&float_layers);
        let model = Model::Int8(Int8Model::with_kernel(parent.spec.clone(), parent.arch.clone(), w.clone(), kernel));
        let (q, rank_scores) = quality_and_ranking(&model, (&test, &test_labels), ranking.as_ref())?;
        let ok = within(delta(q.auc, parent_q.auc), opts.max_auc_drop)
            && within(delta(q.ndcg10, parent_q.ndcg10), opts.max_ndcg_drop);
        let top10_jaccard = match (&parent_rank, &rank_scores) {
            (Some((qid, base)), Some(s)) => metrics::topk_jaccard(qid, base, s, 10),
            _ => None,
        };
        steps.push(FallbackStep {
            float_layers: float_layers.clone(),
            delta_auc: delta(q.auc, parent_q.auc),
            delta_ndcg: delta(q.ndcg10, parent_q.ndcg10),
            top10_jaccard,
            passed: ok,
        });
        progress.log(&format!(
            "quantize: float layers {float_layers:?}: dAUC {}, dNDCG@10 {} -> {}",
            shown(delta(q.auc, parent_q.auc)),
            shown(delta(q.ndcg10, parent_q.ndcg10)),
            if ok { "gate holds" } else { "gate fails" }
        ));
        let Some(next) = order.next().filter(|_| !ok) else {
            break (w, q, ok, model);
        };
        float_layers.push(next);
        float_layers.sort_unstable();
    };
    progress.advance(1);
    let sample = test.take(&parent.spec, &spread(test.rows(), SCATTER_ROWS))?;
    let scatter = parent_model.logits(&sample)?.into_iter().zip(model.logits(&sample)?).map(|(a, b)| [a, b]).collect();
    let layers = inputs
        .iter()
        .zip(&act)
        .enumerate()
        .map(|(i, (x, qp))| {
            let range = qp.as_ref().map(code_range);
            LayerReport {
                layer: i,
                sqnr_db: Some(sqnr[i]).filter(|s| s.is_finite()),
                range,
                histogram: histogram(x, range),
            }
        })
        .collect();

    let summary = QuantizeSummary {
        dir: job.out.to_path_buf(),
        kind,
        passed,
        options: opts,
        parent: parent_q,
        int8: q,
        delta_auc: delta(q.auc, parent_q.auc),
        delta_ndcg: delta(q.ndcg10, parent_q.ndcg10),
        layer_sqnr_db: sqnr.clone(),
        float_layers: float_layers.clone(),
        calibration_rows: cal.columns.rows,
        calibrator_state_bytes: state_bytes,
        kernel: Kernel::detect()?.name().to_string(),
        layers,
        steps,
        scatter,
    };
    let mut input_data = pman.input_data.clone();
    input_data.insert("calibration".into(), sha256_file(job.calibration)?);
    input_data.insert("test".into(), sha256_file(job.test)?);
    let activations = act
        .iter()
        .enumerate()
        .map(|(layer, a)| match a {
            Some(qp) => ActivationQuant::Static {
                dtype: "uint8".into(),
                layer,
                scale: f64::from(qp.scale),
                zero_point: qp.zero_point,
            },
            None => ActivationQuant::Dynamic { dynamic: true, layer },
        })
        .collect();
    let quantization = Quantization {
        activations,
        calibration_rows: cal.columns.rows,
        calibrator: opts.calibrator,
        dynamic_activations: opts.dynamic,
        float_layers: float_layers.clone(),
        gate: QuantizationGate { max_auc_drop: opts.max_auc_drop, max_ndcg_drop: opts.max_ndcg_drop, passed },
        layer_sqnr_db: sqnr.iter().map(|&s| Some(s).filter(|s| s.is_finite())).collect(),
        per_channel: opts.per_channel,
        requested_float_layers: requested,
        scheme: SCHEME.into(),
        weight_bits: opts.weight_bits,
    };
    let writer = ArtifactWriter::create(job.out)?;
    writer.write(WEIGHTS, &weights.to_bytes(&parent.spec)?)?;
    let metrics = serde_json::json!({ "test": q, "parent_test": parent_q, "delta_auc": summary.delta_auc, "delta_ndcg@10": summary.delta_ndcg });
    writer.write("metrics.json", &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Internal(e.to_string()))?)?;
    // A parent that failed a gate fails its INT8 model too (its gates travel with it).
    let failures: Vec<_> =
        pman.gate_failures.iter().cloned().chain(gate_failures(&kind.to_string(), &summary)).collect();
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind,
        status: if failures.is_empty() { Status::Ok } else { Status::Failed },
        reco_cli_version: crate::VERSION.into(),
        architecture: parent.arch.clone(),
        feature_spec: parent.spec.clone(),
        tensor_layout: LAYOUT.into(),
        recipe: pman.recipe.clone(),
        seed: pman.seed,
        files: Default::default(),
        input_data,
        lineage: Some(Lineage {
            parent_content_sha256: pman.content_hash(),
            parent_kind: pman.kind,
            parent_path: crate::outputs::relative(job.out, job.model),
        }),
        training: serde_json::json!({ "parent_training": pman.training }),
        metrics,
        quantization: Some(quantization),
        exports: Default::default(),
        gate_failures: failures,
    };
    writer.finish(manifest)?;
    progress.advance(1);
    progress.end();
    Ok(summary)
}

/// The INT8 gates that failed, as the manifest records them (the artifact named as a run names
/// its directory).
fn gate_failures(artifact: &str, s: &QuantizeSummary) -> Vec<reco_runtime::artifact::manifest::GateFailure> {
    let gates = crate::pipeline::run::gates::int8_gates(
        artifact,
        (s.delta_auc, s.delta_ndcg),
        (s.options.max_auc_drop, s.options.max_ndcg_drop),
    );
    gates.iter().filter(|g| !g.passed).map(crate::pipeline::run::gates::GateReport::failure).collect()
}

/// `<model>-int8` next to the model directory.
pub fn default_out(model: &Path) -> PathBuf {
    let name = model.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    model.with_file_name(format!("{name}-int8"))
}
