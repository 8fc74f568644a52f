//! TFLite (LiteRT) models of our artifacts, written in Rust from LiteRT's `schema.fbs`
//! ([`schema`]); no TensorFlow anywhere. Owns the graph layout and nothing else: reading
//! artifacts and writing files is `pipeline::export`'s job.
//!
//! TFLite has no string hash tables, so the id lookup stays outside the graph: every
//! categorical column is an input of embedding **row indices** (`int32 [batch]`: the id's
//! position in the feature spec's vocabulary + 1, 0 for an id never seen in training), and
//! every numeric column an input of raw values (`float32 [batch, 1]`), normalized inside the
//! graph with the same two f32 operations as our encoder (`SUB` the mean, `MUL` by 1/std).
//! `reco-runtime` ([`reco_runtime::runtime::tflite_inputs`]) and the Python wheel
//! (`Model.tflite_inputs`) turn raw columns into exactly these inputs; `export` writes the
//! vocabularies beside the model for other languages.
//!
//! - **Float artifacts**: `GATHER` of each float table, `CONCATENATION` with the normalized
//!   numerics, `FULLY_CONNECTED` layers with fused ReLU, then the output layer.
//! - **INT8 artifacts**, full-integer up to the last hidden layer: each table is stored as
//!   int8 codes at layer 0's calibrated input scale and zero point (the rows our runtime
//!   copies, `u8 − 128`), so `GATHER` yields layer 0's input codes directly; the numerics
//!   are `QUANTIZE`d to the same parameters and `CONCATENATION` joins blocks of one scale (LiteRT
//!   requires it). Hidden layers are int8 `FULLY_CONNECTED` with our int8 weights — per
//!   channel (`quantized_dimension` 0, zero points 0) or, with [`WeightScales::PerTensor`], one
//!   scale per layer for NNAPI and NPU compilers that refuse per-channel FC — our int32 biases
//!   at `s_x · s_w`, fused ReLU, int8 outputs at the next layer's input parameters. The
//!   one-unit output layer runs in float on the `DEQUANTIZE`d last hidden activations (its
//!   weights our int8 codes times their scales), so the logit keeps full resolution: an int8
//!   logit has 256 levels, and the ties would move AUC.
//! - Outputs, as the ONNX graphs: `logit` and `probability` (`LOGISTIC`), both `[batch]`.
//!
//! Refused with one line: multi-valued (bag) columns, the dot interaction term, and INT8
//! artifacts with a layer kept in float or quantized dynamically.

pub mod schema;

use std::collections::BTreeMap;

use reco_runtime::artifact::manifest::{Architecture, Interaction};
use reco_runtime::artifact::qweights::{QLayer, QuantWeights};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::{Dense, FloatWeights};
use reco_runtime::error::{Error, Result};
use reco_runtime::quant::QParams;
use schema::{DType, Graph, OpCode, Options, Quant, TensorId};

/// How an INT8 model's weight scales are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightScales {
    /// One scale per output channel (our artifacts' own scales: the model is unchanged).
    #[default]
    PerChannel,
    /// One scale per layer: each channel's codes rescaled to the layer's largest scale and
    /// rounded (coarser weights: NNAPI and some NPU compilers refuse per-channel FC).
    PerTensor,
}

/// The graph's input name of a numeric column (`float32 [batch, 1]`) and of a categorical one
/// (`int32 [batch]`, row indices): the column's name.
pub fn input_names(spec: &FeatureSpec) -> Vec<String> {
    spec.categorical.iter().map(|c| c.name.clone()).chain(spec.numeric.iter().map(|n| n.name.clone())).collect()
}

/// Refuses what a TFLite graph of ours cannot express, naming it.
fn check(spec: &FeatureSpec, arch: &Architecture) -> Result<()> {
    arch.validate()?;
    if let Some(c) = spec.categorical.iter().find(|c| c.bag.is_some()) {
        return Err(Error::input(format!(
            "--format tflite: column {:?} is multi-valued; the TFLite export supports single-valued columns only (export ONNX instead)",
            c.name
        )));
    }
    if arch.interaction == Interaction::Dot {
        return Err(Error::input(
            "--format tflite: the model has a dot interaction term (train.interaction = \"dot\"), which the TFLite export does not support (export ONNX instead)",
        ));
    }
    let mut names = input_names(spec);
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::input(format!("feature spec names column {:?} twice; TFLite inputs must be unique", w[0])));
    }
    if let Some(n) = names.iter().find(|n| ["probability", "logit"].contains(&n.as_str())) {
        return Err(Error::input(format!("feature column {n:?} collides with a TFLite output name")));
    }
    Ok(())
}

fn dim(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The categorical inputs (row indices) and the numeric inputs, then the numerics joined and
/// normalized: `(row-index inputs, normalized [batch, k] or None)`.
fn inputs(g: &mut Graph, spec: &FeatureSpec) -> (Vec<TensorId>, Option<TensorId>) {
    let ids = spec.categorical.iter().map(|c| g.input(&c.name, &[], DType::I32, None)).collect();
    let nums: Vec<TensorId> = spec.numeric.iter().map(|n| g.input(&n.name, &[1], DType::F32, None)).collect();
    let k = dim(nums.len());
    let joined = match nums[..] {
        [] => return (ids, None),
        [one] => one,
        _ => {
            let t = g.activation("numeric.raw", &[k], DType::F32, None);
            g.op(OpCode::Concatenation, 1, &nums, &[t], Options::Concatenation { axis: 1 });
            t
        }
    };
    let (mean, inv): (Vec<f32>, Vec<f32>) = spec.numeric.iter().map(|n| n.coefficients()).unzip();
    let mean = g.constant_f32("numeric.mean", &[k], &mean);
    let inv = g.constant_f32("numeric.inv_std", &[k], &inv);
    let centred = g.activation("numeric.centred", &[k], DType::F32, None);
    g.op(OpCode::Sub, 1, &[joined, mean], &[centred], Options::Sub);
    let normalized = g.activation("numeric.normalized", &[k], DType::F32, None);
    g.op(OpCode::Mul, 1, &[centred, inv], &[normalized], Options::Mul);
    (ids, Some(normalized))
}

/// `x [batch, 1]` → outputs `logit [batch]` and `probability [batch]`.
fn outputs(g: &mut Graph, x: TensorId) {
    let shape = g.constant_i32("output.shape", &[1], &[-1], None);
    let logit = g.push_output("logit", DType::F32);
    g.op(OpCode::Reshape, 1, &[x, shape], &[logit], Options::Reshape { new_shape: vec![-1] });
    let p = g.push_output("probability", DType::F32);
    g.op(OpCode::Logistic, 1, &[logit], &[p], Options::None);
}

/// A float `FULLY_CONNECTED` layer (ReLU unless it is the output layer).
fn float_dense(g: &mut Graph, x: TensorId, i: usize, d: &Dense, relu: bool) -> TensorId {
    let w = g.constant_f32(&format!("dense.{i}.weight"), &[dim(d.output), dim(d.input)], &d.weight);
    let b = g.constant_f32(&format!("dense.{i}.bias"), &[dim(d.output)], &d.bias);
    let y = g.activation(&format!("dense.{i}.out"), &[dim(d.output)], DType::F32, None);
    g.op(OpCode::FullyConnected, 1, &[x, w, b], &[y], Options::FullyConnected { relu });
    y
}

/// The float model of a float artifact, serialized.
pub fn float_model(
    spec: &FeatureSpec,
    arch: &Architecture,
    w: &FloatWeights,
    metadata: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>> {
    check(spec, arch)?;
    let mut g = Graph::new();
    let (ids, numeric) = inputs(&mut g, spec);
    let mut blocks = Vec::new();
    for ((c, t), idx) in spec.categorical.iter().zip(&w.embeddings).zip(ids) {
        let table = g.constant_f32(&format!("embedding.{}", c.name), &[dim(t.rows), dim(t.dim)], &t.data);
        let out = g.activation(&format!("embedding.{}.rows", c.name), &[dim(t.dim)], DType::F32, None);
        g.op(OpCode::Gather, 1, &[table, idx], &[out], Options::Gather { axis: 0 });
        blocks.push(out);
    }
    blocks.extend(numeric);
    let x = g.activation("input", &[dim(arch.input_dim(spec))], DType::F32, None);
    g.op(OpCode::Concatenation, 1, &blocks, &[x], Options::Concatenation { axis: 1 });
    let mut x = x;
    let last = w.dense.len().saturating_sub(1);
    for (i, d) in w.dense.iter().enumerate() {
        x = float_dense(&mut g, x, i, d, i < last);
    }
    outputs(&mut g, x);
    Ok(g.finish(&format!("reco-cli float model: hidden {:?}", arch.hidden), metadata))
}

/// One static integer layer of an INT8 artifact: weight codes, per-channel scales, int32 bias
/// and input parameters.
struct IntLayer<'a> {
    weight: &'a [i8],
    scale: &'a [f32],
    bias_q: &'a [i32],
    input: QParams,
    rows: usize,
    cols: usize,
}

/// The layers of an INT8 artifact when every one is a static integer layer.
fn int_layers(w: &QuantWeights) -> Result<Vec<IntLayer<'_>>> {
    w.layers
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            QLayer::Int8 { weight, weight_scale, static_input: Some((bias_q, qp)), input, output, .. } => Ok(IntLayer {
                weight,
                scale: weight_scale,
                bias_q,
                input: *qp,
                rows: *output,
                cols: *input,
            }),
            QLayer::Int8 { static_input: None, .. } => Err(Error::input(format!(
                "--format tflite: layer {i} of this INT8 artifact quantizes its input dynamically (per batch), which a TFLite integer graph cannot express; quantize with calibration (the default) or export ONNX"
            ))),
            QLayer::Float(_) => Err(Error::input(format!(
                "--format tflite: layer {i} of this INT8 artifact was kept in float by the accuracy gate; the TFLite export needs every layer in INT8 (export ONNX, or the float parent)"
            ))),
        })
        .collect()
}

/// An activation's parameters as int8: our u8 zero point − 128.
fn int8_quant(qp: QParams) -> Quant {
    Quant::tensor(qp.scale, i64::from(qp.zero_point) - 128)
}

/// A layer's int8 weights and their scales, per channel or rescaled to one scale per layer,
/// with the int32 bias at `s_x · s_w` (rescaled alike).
fn weights_for(l: &IntLayer<'_>, scales: WeightScales) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
    match scales {
        WeightScales::PerChannel => (l.weight.to_vec(), l.scale.to_vec(), l.bias_q.to_vec()),
        WeightScales::PerTensor => {
            let s = l.scale.iter().fold(0f32, |a, &b| a.max(b)).max(f32::MIN_POSITIVE);
            let weight = l
                .weight
                .chunks(l.cols)
                .zip(l.scale)
                .flat_map(|(row, &sc)| {
                    row.iter().map(move |&q| (f32::from(q) * sc / s).round().clamp(-127.0, 127.0) as i8)
                })
                .collect();
            let bias = l
                .bias_q
                .iter()
                .zip(l.scale)
                .map(|(&b, &sc)| (f64::from(b) * f64::from(sc / s)).round() as i32)
                .collect();
            (weight, vec![s], bias)
        }
    }
}

/// One int8 `FULLY_CONNECTED` hidden layer writing int8 at `out` (the next layer's input).
fn int8_dense(g: &mut Graph, x: TensorId, i: usize, l: &IntLayer<'_>, out: QParams, scales: WeightScales) -> TensorId {
    let (weight, s_w, bias) = weights_for(l, scales);
    let n = s_w.len();
    let wq = Quant { scale: s_w.clone(), zero_point: vec![0; n], axis: 0 };
    let wbytes = weight.iter().map(|&v| v as u8).collect();
    let w = g.constant(&format!("dense.{i}.weight"), &[dim(l.rows), dim(l.cols)], DType::I8, wbytes, Some(wq));
    let bq = Quant { scale: s_w.iter().map(|s| s * l.input.scale).collect(), zero_point: vec![0; n], axis: 0 };
    let b = g.constant_i32(&format!("dense.{i}.bias"), &[dim(l.rows)], &bias, Some(bq));
    let y = g.activation(&format!("dense.{i}.out"), &[dim(l.rows)], DType::I8, Some(int8_quant(out)));
    g.op(OpCode::FullyConnected, 4, &[x, w, b], &[y], Options::FullyConnected { relu: true });
    y
}

/// The output layer in float from int8 codes: weights `w_q · s_w`, bias `b_q · s_x · s_w`
/// (the integer layer's own arithmetic, in real numbers).
fn output_dense(g: &mut Graph, x: TensorId, i: usize, l: &IntLayer<'_>) -> TensorId {
    let sx = l.input.scale;
    let deq = g.activation(&format!("dense.{i}.input"), &[dim(l.cols)], DType::F32, None);
    g.op(OpCode::Dequantize, 2, &[x], &[deq], Options::None);
    let weight: Vec<f32> =
        l.weight.chunks(l.cols).zip(l.scale).flat_map(|(row, &s)| row.iter().map(move |&q| f32::from(q) * s)).collect();
    let bias: Vec<f32> = l.bias_q.iter().zip(l.scale).map(|(&b, &s)| b as f32 * (sx * s)).collect();
    let d = Dense { weight, bias, input: l.cols, output: l.rows };
    float_dense(g, deq, i, &d, false)
}

/// The integer model of an INT8 artifact (every layer static integer), serialized.
pub fn int8_model(
    spec: &FeatureSpec,
    arch: &Architecture,
    w: &QuantWeights,
    scales: WeightScales,
    metadata: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>> {
    check(spec, arch)?;
    let layers = int_layers(w)?;
    let Some(first) = layers.first() else { return Err(Error::input("--format tflite: the artifact has no layers")) };
    let q0 = first.input;
    let mut g = Graph::new();
    let (ids, numeric) = inputs(&mut g, spec);
    let mut blocks = Vec::new();
    for ((c, t), idx) in spec.categorical.iter().zip(&w.embeddings).zip(ids) {
        let codes: Vec<u8> =
            reco_runtime::runtime::int8::requantized_codes(t, &q0).iter().map(|&u| u.wrapping_sub(128)).collect();
        let name = format!("embedding.{}", c.name);
        let table = g.constant(&name, &[dim(t.rows), dim(t.dim)], DType::I8, codes, Some(int8_quant(q0)));
        let out = g.activation(&format!("{name}.rows"), &[dim(t.dim)], DType::I8, Some(int8_quant(q0)));
        g.op(OpCode::Gather, 2, &[table, idx], &[out], Options::Gather { axis: 0 });
        blocks.push(out);
    }
    if let Some(n) = numeric {
        let q = g.activation("numeric.codes", &[dim(spec.numeric.len())], DType::I8, Some(int8_quant(q0)));
        g.op(OpCode::Quantize, 1, &[n], &[q], Options::None);
        blocks.push(q);
    }
    let mut x = g.activation("input", &[dim(arch.input_dim(spec))], DType::I8, Some(int8_quant(q0)));
    g.op(OpCode::Concatenation, 2, &blocks, &[x], Options::Concatenation { axis: 1 });
    let last = layers.len() - 1;
    for (i, l) in layers.iter().enumerate() {
        x = match layers.get(i + 1) {
            Some(next) if i < last => int8_dense(&mut g, x, i, l, next.input, scales),
            _ => output_dense(&mut g, x, i, l),
        };
    }
    outputs(&mut g, x);
    Ok(g.finish(&format!("reco-cli INT8 model: hidden {:?}", arch.hidden), metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_tensor_scales_rescale_each_channel_to_the_largest_scale() {
        let (weight, scale, bias_q) = ([10i8, -20, 7, 3], [0.5f32, 1.0], [4i32, 6]);
        let qp = QParams { scale: 0.1, zero_point: 0 };
        let l = IntLayer { weight: &weight, scale: &scale, bias_q: &bias_q, input: qp, rows: 2, cols: 2 };
        // Channel 0 at half the layer's scale: its codes and bias halve; channel 1 is the largest.
        assert_eq!(weights_for(&l, WeightScales::PerTensor), (vec![5, -10, 7, 3], vec![1.0], vec![2, 6]));
        assert_eq!(weights_for(&l, WeightScales::PerChannel), (weight.to_vec(), scale.to_vec(), bias_q.to_vec()));
    }

    #[test]
    fn a_model_starts_with_the_tflite_file_identifier_and_names_its_inputs_and_outputs() {
        let mut g = Graph::new();
        let x = g.input("x", &[2], DType::F32, None);
        let y = g.push_output("y", DType::F32);
        g.op(OpCode::Logistic, 1, &[x], &[y], Options::None);
        let bytes = g.finish("test", &BTreeMap::new());
        assert_eq!(&bytes[4..8], FILE_ID_BYTES);
        // Names are stored as flatbuffer strings: both appear verbatim.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("serving_default") && text.contains("test"));
    }

    const FILE_ID_BYTES: &[u8] = schema::FILE_IDENTIFIER.as_bytes();
}
