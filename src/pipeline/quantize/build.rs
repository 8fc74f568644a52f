//! Calibration and the INT8 layers: each dense layer's input observed over the calibration
//! rows (two passes when the calibrator needs a histogram: constant memory), per-channel s8
//! weights, i32 biases, u8 activations at the calibrator's ranges, row-wise embeddings in each
//! layout a table may take (the gate picks per table), and each layer's SQNR in isolation (its INT8 output against float, on the same input).

use super::{HISTOGRAM_BINS, Inputs, LayerReport, ValueHistogram};
use crate::data::features::FeatureFrame;
use crate::recipe::{EmbeddingPrecision, QuantizeSettings};
use reco_runtime::artifact::qweights::{QLayer, QuantWeights, RowwiseTable};
use reco_runtime::artifact::weights::Dense;
use reco_runtime::error::{Error, Result};
use reco_runtime::kernels::Kernel;
use reco_runtime::quant::calibrate::{Calibrator, Observer};
use reco_runtime::quant::{EmbeddingBits, QParams, TableLayout, quantize_bias, quantize_weights, sqnr_db};
use reco_runtime::runtime::int8;
use reco_runtime::runtime::{CHUNK, FloatModel, chunks, dense_forward, encode};

/// The layouts a table asked at `precision` can end in, the one the dense-layer step uses
/// first: `auto` between int8 and its smallest, a fixed precision its own. Only those are
/// quantized: a large table fixed at 8 bits skips the 4-bit search, and a row that only 4 bits
/// cannot hold fails only where 4 bits were asked.
pub(super) fn reachable(precision: EmbeddingPrecision, rows: usize, dim: usize) -> Vec<TableLayout> {
    match precision {
        EmbeddingPrecision::Auto => vec![TableLayout::Int8, TableLayout::smallest(rows, dim)],
        EmbeddingPrecision::Bits(EmbeddingBits::Eight) => vec![TableLayout::Int8],
        EmbeddingPrecision::Bits(EmbeddingBits::Four) => vec![TableLayout::Int4],
    }
}

/// The INT8 pieces of a float model, before the gate chooses which layers stay float.
pub(super) struct Built {
    /// Each dense layer's static input parameters (`None`: dynamic, per batch).
    pub act: Vec<Option<QParams>>,
    /// The calibrators' state, bytes (independent of the number of rows).
    pub state_bytes: usize,
    /// Each table in every layout it may take ([`reachable`]).
    embeddings: Vec<Vec<RowwiseTable>>,
    int8_layers: Vec<QLayer>,
    float_layers: Vec<Dense>,
    /// Each dense layer's float input on the first calibration chunk.
    inputs: Vec<Vec<f32>>,
    /// Each layer's SQNR, dB (infinite: exact).
    pub sqnr: Vec<f64>,
}

impl Built {
    /// Calibrates `inputs.parent` on the calibration rows and quantizes every layer.
    pub fn new(inputs: &Inputs, opts: &QuantizeSettings) -> Result<Self> {
        let parent = &inputs.parent;
        let (obs, state_bytes) = calibrate(parent, &inputs.cal, opts.calibrator);
        let act: Vec<Option<QParams>> =
            obs.iter().map(|o| (!opts.dynamic).then(|| o.qparams(opts.calibrator))).collect();
        // Tables feed layer 0: an integer one reads them requantized to its input grid.
        let grid = act.first().copied().flatten().filter(|_| !inputs.requested.contains(&0));
        let embeddings = parent
            .weights
            .embeddings
            .iter()
            .zip(&parent.spec.categorical)
            .zip(&inputs.table_precision)
            .map(|((t, c), &precision)| {
                let at = |layout| {
                    RowwiseTable::quantize_for(&t.data, t.rows, t.dim, layout, grid.as_ref()).map_err(|row| {
                        Error::input(format!(
                            "embedding table `{}` row {row}: values beyond fp16's range (±65504), which row-wise scales and biases use",
                            c.name
                        ))
                    })
                };
                reachable(precision, t.rows, t.dim).into_iter().map(at).collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let dense = &parent.weights.dense;
        let int8_layers: Vec<QLayer> = dense.iter().zip(&act).map(|(d, qp)| int8_layer(d, *qp, opts)).collect();
        // Per-layer SQNR on the first calibration chunk.
        let m = inputs.cal.columns.rows.min(CHUNK);
        let x = layer_inputs(parent, &encode(&parent.spec, &inputs.cal.columns.view().slice(0..m)));
        let sqnr =
            dense.iter().zip(&int8_layers).zip(&x).map(|((d, l), x)| layer_sqnr(d, l, x, m, inputs.kernel)).collect();
        Ok(Self { act, state_bytes, embeddings, int8_layers, float_layers: dense.clone(), inputs: x, sqnr })
    }

    /// The INT8 weights with `float_layers` kept float and each table in its layout.
    pub fn weights(&self, float_layers: &[usize], layouts: &[TableLayout]) -> Result<QuantWeights> {
        let layers = self
            .int8_layers
            .iter()
            .enumerate()
            .map(|(i, l)| if float_layers.contains(&i) { half_weights(&self.float_layers[i]) } else { l.clone() })
            .collect();
        let embeddings = self
            .embeddings
            .iter()
            .zip(layouts)
            .map(|(built, l)| {
                built.iter().find(|t| t.layout == *l).cloned().ok_or_else(|| {
                    Error::Internal(format!("embedding table asked in {} but not built in it", l.name()))
                })
            })
            .collect::<Result<_>>()?;
        Ok(QuantWeights { embeddings, layers })
    }

    /// Each dense layer's record: its input's distribution, the range calibration chose, its SQNR.
    pub fn layer_reports(&self) -> Vec<LayerReport> {
        let reports = self.inputs.iter().zip(&self.act).enumerate().map(|(i, (x, qp))| {
            let range = qp.as_ref().map(code_range);
            LayerReport {
                layer: i,
                sqnr_db: Some(self.sqnr[i]).filter(|s| s.is_finite()),
                range,
                histogram: histogram(x, range),
            }
        });
        reports.collect()
    }
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
pub(super) fn spread(n: usize, k: usize) -> Vec<usize> {
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

/// A layer the gate keeps in float, its weights rounded to fp16 (stored in half the bytes;
/// computed in f32): the gate measures the model with them.
/// Weights beyond fp16's range stay f32.
fn half_weights(d: &Dense) -> QLayer {
    let weight: Vec<f32> = d.weight.iter().map(|&w| reco_runtime::quant::to_f16(w)).collect();
    if weight.iter().any(|w| !w.is_finite()) {
        return QLayer::Float(d.clone());
    }
    QLayer::Float(Dense { weight, ..d.clone() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::features::Baselines;
    use reco_runtime::artifact::manifest::{Activation, Architecture, Interaction};
    use reco_runtime::artifact::spec::{CategoricalSpec, FeatureSpec, Ids, NumericSpec};
    use reco_runtime::artifact::weights::{FloatWeights, Table};
    use reco_runtime::runtime::Columns;

    #[test]
    fn calibration_sees_the_dot_column_in_layer_0s_input() {
        // Embedding rows of 3s (width 4): every dot is 36, every other input at most 3.
        let spec = FeatureSpec {
            categorical: ["user_id", "place_id"].map(|c| CategoricalSpec::new(c, vec![1, 2])).to_vec(),
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: vec![4, 4],
            hidden: vec![2],
            activation: Activation::Relu,
            interaction: Interaction::Dot,
        };
        let table = || Table { data: vec![3.0; 12], rows: 3, dim: 4 };
        let dense = arch
            .layer_shapes(&spec)
            .into_iter()
            .map(|(input, output)| Dense { weight: vec![0.1; input * output], bias: vec![0.0; output], input, output })
            .collect();
        let model = FloatModel::new(spec, arch, FloatWeights { embeddings: vec![table(), table()], dense }).unwrap();
        let rows = 40;
        let columns = Columns {
            rows,
            categorical: vec![Ids::Int(vec![1; rows]), Ids::Int(vec![2; rows])],
            lists: Vec::new(),
            numeric: vec![(0..rows).map(|i| (i % 7) as f32 * 0.5 - 1.5).collect()],
        };
        let frame =
            FeatureFrame { columns, label: None, oracle: None, query_id: None, baselines: Baselines::default() };
        let (obs, _) = calibrate(&model, &frame, Calibrator::Minmax);
        assert_eq!(obs[0].max, 36.0, "layer 0's range reaches the dot");
        assert_eq!(obs[0].min, -1.5);
    }
}
