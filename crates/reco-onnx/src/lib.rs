//! ONNX graphs of our artifacts, built on the generated protobuf types of `onnx-protobuf`
//! (no `protoc` at build time). Owns the graph layout and nothing else: reading artifacts and
//! writing files is `pipeline::export`'s job.
//!
//! Every graph takes the raw feature columns, one input per column named as in the feature
//! spec (`int64 [batch]` or `string [batch]` for categorical ids, as the spec's `dtype` says,
//! `float [batch]` for numeric values), and carries the whole preprocessing:
//!
//! - categorical ids → embedding rows: a lookup table indexed by `clip(id - min, -1, range) + 1`
//!   (plain `Sub`/`Clip`/`Add`/`Gather`, so any runtime runs it) when integer ids are dense
//!   enough, else `ai.onnx.ml.LabelEncoder` (always for string ids: `keys_strings`); unknown
//!   ids map to row 0, the OOV row, as in our runtime;
//! - a multi-valued column (a `bag` in the spec): two inputs, its ids padded to
//!   `[batch, max_values]` (any id in the padding) and `<column>_mask` (`float [batch,
//!   max_values]`, 1 for a value, 0 for padding); the rows gathered, multiplied by the mask,
//!   added position by position in list order, divided by max(Σ mask, 1) for mean pooling —
//!   an empty list (all zeros in the mask) gives zeros, as our runtime;
//! - numeric columns: `(x - mean) · (1 / std)`, the same two f32 operations as our encoder;
//! - a dot interaction term (`architecture.interaction = "dot"`): one more input column after
//!   the numeric ones, computed as the runtime does, to the bit: in f32 from the user and place
//!   embedding rows (`Mul`, `Split` into columns, a chain of `Add`s in index order), or, before
//!   a static integer layer 0, as an integer dot of their u8 input codes (`QuantizeLinear`,
//!   `Cast` to int32, `Sub` the zero point, `Mul`, `ReduceSum`, `Cast` to float, `Mul` by the
//!   scale squared);
//! - the MLP: `Gemm(transB = 1)` + `Relu`; outputs `probability` and `logit`, both `[batch]`.
//!
//! INT8 artifacts become QDQ graphs carrying exactly our tensors: weights are int8
//! initializers with per-axis `DequantizeLinear` (axis 0, zero point 0), biases int32 at scale
//! `s_x · s_w`, each static layer's input passes `QuantizeLinear`/`DequantizeLinear` with our
//! calibrated u8 scale and zero point, row-wise embeddings are u8 codes gathered and rescaled
//! by their row's f32 scale and offset, and layers the accuracy gate kept in float stay float.
//! Layers quantized dynamically use `DynamicQuantizeLinear`.

use std::collections::BTreeMap;

use onnx_protobuf as pb;
use pb::Message;
use pb::tensor_proto::DataType;

use reco_runtime::artifact::manifest::{Architecture, Interaction};
use reco_runtime::artifact::qweights::{QLayer, QuantWeights};
use reco_runtime::artifact::spec::{Bag, CategoricalSpec, FeatureSpec, IdType, Pooling, Vocabulary};
use reco_runtime::artifact::weights::{Dense, FloatWeights};
use reco_runtime::error::{Error, Result};
use reco_runtime::quant::{EmbeddingBits, QParams};

/// ONNX IR version written (IR 8: ONNX 1.10+, onnxruntime 1.10+).
pub const IR_VERSION: i64 = 8;
/// Default-domain opset (per-axis Q/DQ needs 13+).
pub const OPSET: i64 = 17;
/// `ai.onnx.ml` opset (LabelEncoder with int64 keys and values).
pub const ML_OPSET: i64 = 3;
/// Name of the symbolic batch dimension.
pub const BATCH: &str = "batch";

/// A serialized graph and the opsets it imports (by domain; `ai.onnx` for the default one).
#[derive(Debug, Clone)]
pub struct Exported {
    /// The `.onnx` bytes.
    pub bytes: Vec<u8>,
    /// Opset version per domain.
    pub opsets: BTreeMap<String, i64>,
}

/// How categorical ids become embedding rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLookup {
    /// A dense table when the id range is small enough, else `LabelEncoder` (the default).
    Auto,
    /// Always `ai.onnx.ml.LabelEncoder`.
    LabelEncoder,
}

/// The graph builder: nodes, initializers and fresh names.
struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    uses_ml: bool,
    next: usize,
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.to_string();
    a.type_ = pb::attribute_proto::AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_ints(name: &str, v: Vec<i64>) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.to_string();
    a.type_ = pb::attribute_proto::AttributeType::INTS.into();
    a.ints = v;
    a
}

fn attr_string(name: &str, v: &str) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.to_string();
    a.type_ = pb::attribute_proto::AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

fn attr_strings(name: &str, v: Vec<String>) -> pb::AttributeProto {
    let mut a = pb::AttributeProto::new();
    a.name = name.to_string();
    a.type_ = pb::attribute_proto::AttributeType::STRINGS.into();
    a.strings = v.into_iter().map(String::into_bytes).collect();
    a
}

/// Raw little-endian bytes of a tensor's elements.
trait Elem: Copy {
    const TYPE: DataType;
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! elem {
    ($t:ty, $d:ident) => {
        impl Elem for $t {
            const TYPE: DataType = DataType::$d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
elem!(f32, FLOAT);
elem!(i64, INT64);
elem!(i32, INT32);
elem!(i8, INT8);
elem!(u8, UINT8);

impl Graph {
    fn new() -> Self {
        Self { nodes: Vec::new(), inits: Vec::new(), uses_ml: false, next: 0 }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    /// Gathered 4-bit rows `[n, ⌈dim/2⌉]` (two codes a byte, the lower nibble first) as u8 codes
    /// `[n, dim]`: each byte's nibbles by `BitShift` (`(b << 4) >> 4` and `b >> 4`), interleaved
    /// by `Unsqueeze`, `Concat` and `Reshape`, the padding nibble of an odd width sliced off.
    fn unpack_nibbles(&mut self, packed: &str, dim: usize) -> String {
        let four = self.fresh("nibble_shift");
        self.init(&four, &[], &[4u8]);
        let axis = self.fresh("nibble_axis");
        self.init(&axis, &[1], &[2i64]);
        let left = self.op("BitShift", &[packed, &four], vec![attr_string("direction", "LEFT")]);
        let low = self.op("BitShift", &[&left, &four], vec![attr_string("direction", "RIGHT")]);
        let high = self.op("BitShift", &[packed, &four], vec![attr_string("direction", "RIGHT")]);
        let low = self.op("Unsqueeze", &[&low, &axis], vec![]);
        let high = self.op("Unsqueeze", &[&high, &axis], vec![]);
        let pairs = self.op("Concat", &[&low, &high], vec![attr_int("axis", 2)]);
        let shape = self.fresh("nibble_rows");
        self.init(&shape, &[2], &[0i64, -1]);
        let codes = self.op("Reshape", &[&pairs, &shape], vec![]);
        if dim.is_multiple_of(2) {
            return codes;
        }
        let (starts, ends, axes) =
            (self.fresh("nibble_start"), self.fresh("nibble_end"), self.fresh("nibble_slice_axis"));
        self.init(&starts, &[1], &[0i64]);
        self.init(&ends, &[1], &[dim as i64]);
        self.init(&axes, &[1], &[1i64]);
        self.op("Slice", &[&codes, &starts, &ends, &axes], vec![])
    }

    /// Adds a constant tensor; returns its name.
    fn init<T: Elem>(&mut self, name: &str, dims: &[usize], data: &[T]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let mut t = pb::TensorProto::new();
        t.name = name.to_string();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = T::TYPE as i32;
        let mut raw = Vec::with_capacity(std::mem::size_of_val(data));
        data.iter().for_each(|v| v.put(&mut raw));
        t.raw_data = raw;
        self.inits.push(t);
        name.to_string()
    }

    /// Adds a node with one output named `out`.
    fn op_to(&mut self, op: &str, domain: &str, inputs: &[&str], out: &str, attrs: Vec<pb::AttributeProto>) -> String {
        let mut n = pb::NodeProto::new();
        n.op_type = op.to_string();
        n.domain = domain.to_string();
        n.name = format!("{op}_{}", self.nodes.len());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.to_string()];
        n.attribute = attrs;
        self.nodes.push(n);
        out.to_string()
    }

    /// Adds a default-domain node with one fresh output.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.op_to(op, "", inputs, &out, attrs)
    }

    /// Adds a default-domain node with `n` fresh outputs.
    fn op_n(&mut self, op: &str, inputs: &[&str], n: usize, attrs: Vec<pb::AttributeProto>) -> Vec<String> {
        let base = self.fresh(&op.to_lowercase());
        let outs: Vec<String> = (0..n).map(|i| format!("{base}.{i}")).collect();
        let mut node = pb::NodeProto::new();
        node.op_type = op.to_string();
        node.name = format!("{op}_{}", self.nodes.len());
        node.input = inputs.iter().map(|s| s.to_string()).collect();
        node.output = outs.clone();
        node.attribute = attrs;
        self.nodes.push(node);
        outs
    }

    /// `[batch, 1]`: `Σ a[:, i]·b[:, i]` over the `d` columns of two `[batch, d]` float
    /// tensors, as `runtime::dot_f32`: one `Mul`, then the products' columns added one at a
    /// time in index order (a `Split` and `d − 1` `Add`s; no reduction whose order a runtime
    /// may choose).
    fn dot_f32(&mut self, a: &str, b: &str, d: usize) -> String {
        let p = self.op("Mul", &[a, b], vec![]);
        if d <= 1 {
            return p;
        }
        let cols = self.op_n("Split", &[&p], d, vec![attr_int("axis", 1)]);
        let mut sum = cols[0].clone();
        for c in &cols[1..] {
            sum = self.op("Add", &[&sum, c], vec![]);
        }
        sum
    }

    /// `[batch, 1]`: the dot of two `[batch, d]` float tensors through their u8 codes at `qp`
    /// (layer 0's input codes), as `runtime::int8::dot_codes`: `Σ (qa − z)·(qb − z)` in int32
    /// (exact, so `ReduceSum`'s order does not matter), cast to float, times `scale²`.
    fn dot_codes(&mut self, a: &str, b: &str, qp: QParams) -> String {
        let s = self.init("interaction.input_scale", &[], &[qp.scale]);
        let z = self.init("interaction.input_zero_point", &[], &[qp.zero_point.clamp(0, 255) as u8]);
        let zi = self.init("interaction.zero_point_i32", &[], &[qp.zero_point]);
        let s2 = self.init("interaction.scale_squared", &[], &[qp.scale * qp.scale]);
        let axes = self.init("interaction.axes", &[1], &[1i64]);
        let mut centered = |x: &str| {
            let q = self.op("QuantizeLinear", &[x, &s, &z], vec![]);
            let q = self.op("Cast", &[&q], vec![attr_int("to", DataType::INT32 as i64)]);
            self.op("Sub", &[&q, &zi], vec![])
        };
        let (qa, qb) = (centered(a), centered(b));
        let p = self.op("Mul", &[&qa, &qb], vec![]);
        let acc = self.op("ReduceSum", &[&p, &axes], vec![attr_int("keepdims", 1)]);
        let acc = self.op("Cast", &[&acc], vec![attr_int("to", DataType::FLOAT as i64)]);
        self.op("Mul", &[&acc, &s2], vec![])
    }

    /// A multi-valued column's block `[batch, dim]` from its `rows` `[batch · width, dim]`
    /// and its `mask` input `[batch, width]`: the rows times the mask, added one position at a
    /// time in list order (a `Split` and a chain of `Add`s, as `Bag::pool`: no reduction whose
    /// order a runtime may choose), divided by max(Σ mask, 1) for mean pooling.
    fn pool(&mut self, name: &str, rows: &str, mask: &str, bag: Bag, dim: usize) -> String {
        let width = bag.max_values;
        let shape = self.init(&format!("{name}.list_shape"), &[3], &[-1i64, width as i64, dim as i64]);
        let rows = self.op("Reshape", &[rows, &shape], vec![]);
        let axis2 = self.init(&format!("{name}.mask_axes"), &[1], &[2i64]);
        let m = self.op("Unsqueeze", &[mask, &axis2], vec![]);
        let masked = self.op("Mul", &[&rows, &m], vec![]);
        let mut sum = masked.clone();
        if width > 1 {
            let parts = self.op_n("Split", &[&masked], width, vec![attr_int("axis", 1)]);
            sum = parts[0].clone();
            for p in &parts[1..] {
                sum = self.op("Add", &[&sum, p], vec![]);
            }
        }
        let block_shape = self.init(&format!("{name}.block_shape"), &[2], &[-1i64, dim as i64]);
        let pooled = self.op("Reshape", &[&sum, &block_shape], vec![]);
        if bag.pooling == Pooling::Sum {
            return pooled;
        }
        let axis1 = self.init(&format!("{name}.count_axes"), &[1], &[1i64]);
        let count = self.op("ReduceSum", &[mask, &axis1], vec![attr_int("keepdims", 1)]);
        let one = self.init(&format!("{name}.one"), &[], &[1f32]);
        let count = self.op("Max", &[&count, &one], vec![]);
        self.op("Div", &[&pooled, &count], vec![])
    }

    /// Embedding row index (int64 `[batch]`, 0 = OOV) of the raw ids in `input`.
    fn row_index(&mut self, input: &str, c: &CategoricalSpec, lookup: IdLookup) -> String {
        let col = &c.name;
        if let Vocabulary::Str(v) = &c.vocabulary {
            // String ids: always the ML domain's LabelEncoder (string keys -> int64 rows).
            self.uses_ml = true;
            let out = self.fresh("label_encoder");
            let (keys, values): (Vec<String>, Vec<i64>) =
                if v.is_empty() { (vec![String::new()], vec![0]) } else { (v.clone(), (1..=v.len() as i64).collect()) };
            return self.op_to(
                "LabelEncoder",
                "ai.onnx.ml",
                &[input],
                &out,
                vec![
                    attr_strings("keys_strings", keys),
                    attr_ints("values_int64s", values),
                    attr_int("default_int64", 0),
                ],
            );
        }
        let vocabulary = c.vocabulary.ints();
        let Some(&min) = vocabulary.first() else {
            // Empty vocabulary: every id is out of vocabulary.
            let zero = self.init(&format!("{col}.zero"), &[1], &[0i64]);
            let z = self.op("Mul", &[input, &zero], vec![]);
            return z;
        };
        let dense = c.dense_range().filter(|_| lookup == IdLookup::Auto);
        match dense {
            Some(range) => {
                // table[0] = below min, table[range + 2] = above max, table[v - min + 1] = row.
                let mut table = vec![0i64; range + 3];
                for (i, &v) in vocabulary.iter().enumerate() {
                    table[(v - min) as usize + 1] = i as i64 + 1;
                }
                let table = self.init(&format!("{col}.row_of_id"), &[table.len()], &table);
                let lo = self.init(&format!("{col}.min_id"), &[], &[min]);
                let neg1 = self.init(&format!("{col}.clip_lo"), &[], &[-1i64]);
                let hi = self.init(&format!("{col}.clip_hi"), &[], &[range as i64 + 1]);
                let one = self.init(&format!("{col}.one"), &[], &[1i64]);
                let d = self.op("Sub", &[input, &lo], vec![]);
                let d = self.op("Clip", &[&d, &neg1, &hi], vec![]);
                let d = self.op("Add", &[&d, &one], vec![]);
                self.op("Gather", &[&table, &d], vec![attr_int("axis", 0)])
            }
            None => {
                self.uses_ml = true;
                let out = self.fresh("label_encoder");
                let values: Vec<i64> = (1..=vocabulary.len() as i64).collect();
                self.op_to(
                    "LabelEncoder",
                    "ai.onnx.ml",
                    &[input],
                    &out,
                    vec![
                        attr_ints("keys_int64s", vocabulary.to_vec()),
                        attr_ints("values_int64s", values),
                        attr_int("default_int64", 0),
                    ],
                )
            }
        }
    }

    /// `[batch, k]` normalized numeric inputs: `(x - mean) · (1 / std)`.
    fn numeric(&mut self, spec: &FeatureSpec) -> Option<String> {
        if spec.numeric.is_empty() {
            return None;
        }
        let axes = self.init("numeric.unsqueeze_axes", &[1], &[1i64]);
        let cols: Vec<String> =
            spec.numeric.iter().map(|n| self.op("Unsqueeze", &[n.name.as_str(), &axes], vec![])).collect();
        let refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        let x = self.op("Concat", &refs, vec![attr_int("axis", 1)]);
        let k = spec.numeric.len();
        let (mean, inv): (Vec<f32>, Vec<f32>) = spec.numeric.iter().map(|n| n.coefficients()).unzip();
        let mean = self.init("numeric.mean", &[k], &mean);
        let inv = self.init("numeric.inv_std", &[k], &inv);
        let x = self.op("Sub", &[&x, &mean], vec![]);
        Some(self.op("Mul", &[&x, &inv], vec![]))
    }

    /// `Gemm(x, W, b, transB = 1)` for a float layer `i`.
    fn float_dense(&mut self, x: &str, i: usize, d: &Dense) -> String {
        let w = self.init(&format!("dense.{i}.weight"), &[d.output, d.input], &d.weight);
        let b = self.init(&format!("dense.{i}.bias"), &[d.output], &d.bias);
        self.op("Gemm", &[x, &w, &b], vec![attr_int("transB", 1)])
    }

    /// `Q` then `DQ` with fixed u8 parameters.
    fn qdq(&mut self, x: &str, name: &str, scale: f32, zero_point: i32) -> String {
        let s = self.init(&format!("{name}.scale"), &[], &[scale]);
        let z = self.init(&format!("{name}.zero_point"), &[], &[zero_point.clamp(0, 255) as u8]);
        let q = self.op("QuantizeLinear", &[x, &s, &z], vec![]);
        self.op("DequantizeLinear", &[&q, &s, &z], vec![])
    }

    /// Per-axis `DequantizeLinear` of an integer constant (axis 0, zero point 0).
    fn dq_axis0<T: Elem + Default>(&mut self, name: &str, dims: &[usize], data: &[T], scales: &[f32]) -> String {
        let q = self.init(name, dims, data);
        let s = self.init(&format!("{name}.scale"), &[scales.len()], scales);
        let z = self.init(&format!("{name}.zero_point"), &[scales.len()], &vec![T::default(); scales.len()]);
        self.op("DequantizeLinear", &[&q, &s, &z], vec![attr_int("axis", 0)])
    }

    fn into_model(self, inputs: Vec<pb::ValueInfoProto>, doc: &str, metadata: &[(String, String)]) -> pb::ModelProto {
        let mut g = pb::GraphProto::new();
        g.name = "reco".to_string();
        g.node = self.nodes;
        g.initializer = self.inits;
        g.input = inputs;
        g.output = vec![value_info("probability", DataType::FLOAT), value_info("logit", DataType::FLOAT)];
        let mut m = pb::ModelProto::new();
        m.ir_version = IR_VERSION;
        m.producer_name = "reco-cli".to_string();
        m.producer_version = reco_runtime::VERSION.to_string();
        m.doc_string = doc.to_string();
        let mut opset = pb::OperatorSetIdProto::new();
        opset.version = OPSET;
        m.opset_import.push(opset);
        if self.uses_ml {
            let mut ml = pb::OperatorSetIdProto::new();
            ml.domain = "ai.onnx.ml".to_string();
            ml.version = ML_OPSET;
            m.opset_import.push(ml);
        }
        for (k, v) in metadata {
            let mut e = pb::StringStringEntryProto::new();
            e.key = k.clone();
            e.value = v.clone();
            m.metadata_props.push(e);
        }
        m.graph = protobuf::MessageField::some(g);
        m
    }
}

/// A `[batch]` tensor value of type `t`.
fn value_info(name: &str, t: DataType) -> pb::ValueInfoProto {
    value_info_wide(name, t, None)
}

/// A `[batch]` tensor value of type `t`, or `[batch, width]` with a width.
fn value_info_wide(name: &str, t: DataType, width: Option<usize>) -> pb::ValueInfoProto {
    let mut dim = pb::tensor_shape_proto::Dimension::new();
    dim.value = Some(pb::tensor_shape_proto::dimension::Value::DimParam(BATCH.to_string()));
    let mut shape = pb::TensorShapeProto::new();
    shape.dim.push(dim);
    if let Some(w) = width {
        let mut d = pb::tensor_shape_proto::Dimension::new();
        d.value = Some(pb::tensor_shape_proto::dimension::Value::DimValue(w as i64));
        shape.dim.push(d);
    }
    let mut tensor = pb::type_proto::Tensor::new();
    tensor.elem_type = t as i32;
    tensor.shape = protobuf::MessageField::some(shape);
    let mut ty = pb::TypeProto::new();
    ty.value = Some(pb::type_proto::Value::TensorType(tensor));
    let mut v = pb::ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = protobuf::MessageField::some(ty);
    v
}

/// The graph's inputs: per categorical column its ids (`[batch]`, or a multi-valued one's
/// `[batch, max_values]` padded ids and its `<column>_mask` of 1s and 0s), then the numeric
/// columns.
fn inputs(spec: &FeatureSpec) -> Vec<pb::ValueInfoProto> {
    let mut out = Vec::new();
    for c in &spec.categorical {
        let ty = match c.dtype() {
            IdType::Int64 => DataType::INT64,
            IdType::String => DataType::STRING,
        };
        let width = c.bag.map(|b| b.max_values);
        out.push(value_info_wide(&c.name, ty, width));
        if width.is_some() {
            out.push(value_info_wide(&mask_name(c), DataType::FLOAT, width));
        }
    }
    out.extend(spec.numeric.iter().map(|n| value_info(&n.name, DataType::FLOAT)));
    out
}

/// The mask input of a multi-valued column: `<column>_mask`.
pub fn mask_name(c: &CategoricalSpec) -> String {
    format!("{}_mask", c.name)
}

/// `logit [batch, 1]` → outputs `logit [batch]` and `probability [batch]`.
fn outputs(g: &mut Graph, y: &str) {
    let shape = g.init("output.shape", &[1], &[-1i64]);
    g.op_to("Reshape", "", &[y, &shape], "logit", vec![]);
    g.op_to("Sigmoid", "", &["logit"], "probability", vec![]);
}

/// Concatenates embedding blocks, numeric features and the interaction column into the
/// `[batch, input_dim]` matrix.
fn input_matrix(g: &mut Graph, mut blocks: Vec<String>, numeric: Option<String>, dot: Option<String>) -> String {
    blocks.extend(numeric);
    blocks.extend(dot);
    let refs: Vec<&str> = blocks.iter().map(String::as_str).collect();
    g.op("Concat", &refs, vec![attr_int("axis", 1)])
}

fn check_names(spec: &FeatureSpec) -> Result<()> {
    let masks: Vec<String> = spec.categorical.iter().filter(|c| c.bag.is_some()).map(mask_name).collect();
    let mut names: Vec<&str> = spec
        .categorical
        .iter()
        .map(|c| c.name.as_str())
        .chain(spec.numeric.iter().map(|n| n.name.as_str()))
        .chain(masks.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::input(format!("feature spec names column {:?} twice; ONNX inputs must be unique", w[0])));
    }
    if let Some(n) = names.iter().find(|n| ["probability", "logit"].contains(n)) {
        return Err(Error::input(format!("feature column {n:?} collides with an ONNX output name")));
    }
    Ok(())
}

/// How the interaction column is computed from the first two embedding blocks.
#[derive(Debug, Clone, Copy)]
enum DotForm {
    /// In f32 from the blocks' values.
    Float,
    /// Exactly, from the blocks' u8 codes at a static integer layer 0's input parameters.
    Codes(QParams),
}

/// The MLP input `[batch, Σ dims + numeric (+ 1)]`: each categorical column's embedding block,
/// built by `block(graph, "embedding.<column>", row index, table)`, then the normalized
/// numerics, then (with a dot interaction) the first two blocks' dot in the form `dot`.
fn input_layer<T>(
    g: &mut Graph,
    (spec, arch): (&FeatureSpec, &Architecture),
    lookup: IdLookup,
    tables: &[T],
    mut block: impl FnMut(&mut Graph, &str, &str, &T) -> String,
    dot: DotForm,
) -> Result<String> {
    arch.validate()?;
    let mut blocks = Vec::new();
    for ((c, t), &dim) in spec.categorical.iter().zip(tables).zip(&arch.embedding_dims) {
        let idx = g.row_index(&c.name, c, lookup);
        let name = format!("embedding.{}", c.name);
        let Some(bag) = c.bag else {
            blocks.push(block(g, &name, &idx, t));
            continue;
        };
        // All `[batch · max_values]` ids at once, then back to `[batch, max_values, dim]`.
        let flat = g.init(&format!("{name}.flat_shape"), &[1], &[-1i64]);
        let flat = g.op("Reshape", &[&idx, &flat], vec![]);
        let mut rows = block(g, &name, &flat, t);
        if let DotForm::Codes(qp) = dot {
            // Each value as layer 0's input codes hold it (the runtime's `Input::Codes`).
            rows = g.qdq(&rows, &format!("{name}.values"), qp.scale, qp.zero_point);
        }
        blocks.push(g.pool(&name, &rows, &mask_name(c), bag, dim));
    }
    let numeric = g.numeric(spec);
    let dot = match (arch.interaction, &blocks[..]) {
        (Interaction::Dot, [u, p, ..]) => Some(match dot {
            DotForm::Float => g.dot_f32(u, p, arch.embedding_dims[0]),
            DotForm::Codes(qp) => g.dot_codes(u, p, qp),
        }),
        _ => None,
    };
    Ok(input_matrix(g, blocks, numeric, dot))
}

/// The dense layers (each built by `dense(graph, input, index, layer)`) with `Relu` between
/// them, then the `logit` and `probability` outputs.
fn mlp<L>(g: &mut Graph, mut x: String, layers: &[L], mut dense: impl FnMut(&mut Graph, &str, usize, &L) -> String) {
    let last = layers.len().saturating_sub(1);
    for (i, layer) in layers.iter().enumerate() {
        x = dense(g, &x, i, layer);
        if i < last {
            x = g.op("Relu", &[&x], vec![]);
        }
    }
    outputs(g, &x);
}

/// The FP32 graph of a float artifact, serialized.
pub fn float_model(
    spec: &FeatureSpec,
    arch: &Architecture,
    w: &FloatWeights,
    lookup: IdLookup,
    metadata: &[(String, String)],
) -> Result<Exported> {
    check_names(spec)?;
    let mut g = Graph::new();
    let gather = |g: &mut Graph, name: &str, idx: &str, t: &reco_runtime::artifact::weights::Table| {
        let table = g.init(name, &[t.rows, t.dim], &t.data);
        g.op("Gather", &[&table, idx], vec![attr_int("axis", 0)])
    };
    let x = input_layer(&mut g, (spec, arch), lookup, &w.embeddings, gather, DotForm::Float)?;
    mlp(&mut g, x, &w.dense, |g, x, i, d| g.float_dense(x, i, d));
    let doc = format!("reco-cli FP32 model: {} layers {:?}", w.dense.len(), arch.hidden);
    serialize(g.into_model(inputs(spec), &doc, metadata))
}

/// The QDQ graph of an INT8 artifact, serialized.
pub fn int8_model(
    spec: &FeatureSpec,
    arch: &Architecture,
    w: &QuantWeights,
    lookup: IdLookup,
    metadata: &[(String, String)],
) -> Result<Exported> {
    check_names(spec)?;
    let mut g = Graph::new();
    // The interaction from layer 0's input codes when it is a static integer layer (as the
    // runtime's `Input::Codes`), else from the dequantized embeddings.
    let dot = match w.layers.first() {
        Some(QLayer::Int8 { static_input: Some((_, qp)), .. }) => DotForm::Codes(*qp),
        _ => DotForm::Float,
    };
    let rowwise = |g: &mut Graph, name: &str, idx: &str, t: &reco_runtime::artifact::qweights::RowwiseTable| {
        let width = t.bits().row_bytes(t.dim);
        let four = t.bits() == EmbeddingBits::Four;
        let codes = g.init(&format!("{name}.{}", t.bits().codes_suffix()), &[t.rows, width], &t.codes);
        let scale: Vec<f32> = t.scale_offset.chunks(2).map(|p| p[0]).collect();
        let offset: Vec<f32> = t.scale_offset.chunks(2).map(|p| p[1]).collect();
        let pairs = scale.len();
        let scale = g.init(&format!("{name}.scale"), &[pairs, 1], &scale);
        let offset = g.init(&format!("{name}.offset"), &[pairs, 1], &offset);
        let q = g.op("Gather", &[&codes, idx], vec![attr_int("axis", 0)]);
        let q = if four { g.unpack_nibbles(&q, t.dim) } else { q };
        let q = g.op("Cast", &[&q], vec![attr_int("to", DataType::FLOAT as i64)]);
        // One pair for the table: `[1, 1]` broadcasts over the rows, no gather.
        let (s, o) = if t.layout.per_table() {
            (scale, offset)
        } else {
            (
                g.op("Gather", &[&scale, idx], vec![attr_int("axis", 0)]),
                g.op("Gather", &[&offset, idx], vec![attr_int("axis", 0)]),
            )
        };
        // code · scale + bias: two f32 operations, as RowwiseTable::dequantize.
        let v = g.op("Mul", &[&q, &s], vec![]);
        g.op("Add", &[&v, &o], vec![])
    };
    let x = input_layer(&mut g, (spec, arch), lookup, &w.embeddings, rowwise, dot)?;
    mlp(&mut g, x, &w.layers, |g, x, i, layer| match layer {
        QLayer::Float(d) => g.float_dense(x, i, d),
        QLayer::Int8 { weight, weight_scale, static_input, bias, input, output } => {
            let wd = g.dq_axis0(&format!("dense.{i}.weight_q"), &[*output, *input], weight, weight_scale);
            match static_input {
                Some((bias_q, qp)) => {
                    let xq = g.qdq(x, &format!("dense.{i}.input"), qp.scale, qp.zero_point);
                    let bias_scale: Vec<f32> = weight_scale.iter().map(|&s| qp.scale * s).collect();
                    let bd = g.dq_axis0(&format!("dense.{i}.bias_q"), &[*output], bias_q, &bias_scale);
                    g.op("Gemm", &[&xq, &wd, &bd], vec![attr_int("transB", 1)])
                }
                None => {
                    let dq = g.fresh("dynamic_quantize");
                    let (ds, dz) = (format!("{dq}.scale"), format!("{dq}.zero_point"));
                    let mut n = pb::NodeProto::new();
                    n.op_type = "DynamicQuantizeLinear".to_string();
                    n.name = dq.clone();
                    n.input = vec![x.to_string()];
                    n.output = vec![dq.clone(), ds.clone(), dz.clone()];
                    g.nodes.push(n);
                    let xq = g.op("DequantizeLinear", &[&dq, &ds, &dz], vec![]);
                    let b = g.init(&format!("dense.{i}.bias"), &[*output], bias);
                    g.op("Gemm", &[&xq, &wd, &b], vec![attr_int("transB", 1)])
                }
            }
        }
    });
    let floats: Vec<usize> =
        w.layers.iter().enumerate().filter(|(_, l)| matches!(l, QLayer::Float(_))).map(|(i, _)| i).collect();
    let doc = format!("reco-cli INT8 QDQ model: layers {:?}, float layers {floats:?}", arch.hidden);
    serialize(g.into_model(inputs(spec), &doc, metadata))
}

fn serialize(m: pb::ModelProto) -> Result<Exported> {
    let opsets = m
        .opset_import
        .iter()
        .map(|o| (if o.domain.is_empty() { "ai.onnx".to_string() } else { o.domain.clone() }, o.version))
        .collect();
    let bytes = m.write_to_bytes().map_err(|e| Error::Internal(format!("ONNX serialization failed: {e}")))?;
    Ok(Exported { bytes, opsets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::spec::NumericSpec;
    use reco_runtime::artifact::weights::Table;

    fn spec(vocab: Vec<i64>) -> FeatureSpec {
        FeatureSpec {
            categorical: vec![CategoricalSpec::new("place_id", vocab)],
            numeric: vec![NumericSpec { name: "distance_km".into(), mean: 1.5, std: 2.0 }],
            label: "label".into(),
            sources: vec![],
        }
    }

    fn weights(rows: usize) -> FloatWeights {
        FloatWeights {
            embeddings: vec![Table { data: (0..rows * 2).map(|i| i as f32).collect(), rows, dim: 2 }],
            dense: vec![Dense { weight: vec![0.5; 3], bias: vec![0.25], input: 3, output: 1 }],
        }
    }

    fn parse(bytes: &[u8]) -> pb::ModelProto {
        pb::ModelProto::parse_from_bytes(bytes).unwrap()
    }

    fn ops(m: &pb::ModelProto) -> Vec<String> {
        m.graph.node.iter().map(|n| n.op_type.clone()).collect()
    }

    #[test]
    fn float_graph_round_trips_with_named_inputs_and_both_outputs() {
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        let bytes = float_model(&spec(vec![3, 5, 9]), &arch, &weights(4), IdLookup::Auto, &[]).unwrap();
        assert_eq!(bytes.opsets, BTreeMap::from([("ai.onnx".to_string(), OPSET)]));
        let m = parse(&bytes.bytes);
        assert_eq!(m.ir_version, IR_VERSION);
        let names: Vec<&str> = m.graph.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["place_id", "distance_km"]);
        let outs: Vec<&str> = m.graph.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(outs, ["probability", "logit"]);
        // Dense ids: the portable table lookup, no ML domain.
        assert!(!ops(&m).contains(&"LabelEncoder".to_string()));
        assert_eq!(m.opset_import.len(), 1);
        let table = m.graph.initializer.iter().find(|t| t.name == "place_id.row_of_id").unwrap();
        let rows: Vec<i64> = table.raw_data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        // [below, 3, 4, 5, 6, 7, 8, 9, above] → rows [0, 1, 0, 2, 0, 0, 0, 3, 0].
        assert_eq!(rows, [0, 1, 0, 2, 0, 0, 0, 3, 0]);
    }

    #[test]
    fn sparse_ids_and_forced_lookup_use_the_label_encoder() {
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        for (vocab, lookup) in [(vec![1, 1 << 40], IdLookup::Auto), (vec![1, 2], IdLookup::LabelEncoder)] {
            let bytes = float_model(&spec(vocab.clone()), &arch, &weights(3), lookup, &[]).unwrap();
            assert_eq!(bytes.opsets.get("ai.onnx.ml"), Some(&ML_OPSET));
            let m = parse(&bytes.bytes);
            let le = m.graph.node.iter().find(|n| n.op_type == "LabelEncoder").unwrap();
            assert_eq!(le.domain, "ai.onnx.ml");
            let keys = le.attribute.iter().find(|a| a.name == "keys_int64s").unwrap();
            assert_eq!(keys.ints, vocab);
            assert!(m.opset_import.iter().any(|o| o.domain == "ai.onnx.ml" && o.version == ML_OPSET));
        }
    }

    #[test]
    fn string_ids_are_a_string_input_looked_up_by_the_label_encoder() {
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        let mut s = spec(vec![]);
        let words = vec!["Bar".to_string(), "Coffee Shop".to_string()];
        s.categorical[0] = CategoricalSpec::with_vocabulary("category", Vocabulary::Str(words.clone()));
        let bytes = float_model(&s, &arch, &weights(3), IdLookup::Auto, &[]).unwrap();
        let m = parse(&bytes.bytes);
        let input = &m.graph.input[0];
        assert_eq!(input.name, "category");
        let elem = match &input.type_.value {
            Some(pb::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => -1,
        };
        assert_eq!(elem, DataType::STRING as i32);
        let le = m.graph.node.iter().find(|n| n.op_type == "LabelEncoder").unwrap();
        let keys = le.attribute.iter().find(|a| a.name == "keys_strings").unwrap();
        assert_eq!(keys.strings, words.iter().map(|w| w.as_bytes().to_vec()).collect::<Vec<_>>());
        let values = le.attribute.iter().find(|a| a.name == "values_int64s").unwrap();
        assert_eq!(values.ints, [1, 2]);
    }

    /// A user and a place column of width 3, one number, no hidden layer, a dot interaction.
    fn dot_model() -> (FeatureSpec, Architecture, FloatWeights) {
        let mut s = spec(vec![1, 2, 3]);
        s.categorical.insert(0, CategoricalSpec::new("user_id", vec![1, 2]));
        let arch = Architecture {
            embedding_dims: vec![3, 3],
            hidden: vec![],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: Interaction::Dot,
        };
        let table = |rows: usize| Table { data: (0..rows * 3).map(|i| i as f32 * 0.1).collect(), rows, dim: 3 };
        let w = FloatWeights {
            embeddings: vec![table(3), table(4)],
            dense: vec![Dense { weight: vec![0.5; 8], bias: vec![0.25], input: 8, output: 1 }],
        };
        (s, arch, w)
    }

    #[test]
    fn a_dot_is_an_ordered_chain_of_adds_in_float_and_an_int32_sum_of_codes_in_int8() {
        let (s, arch, w) = dot_model();
        let m = parse(&float_model(&s, &arch, &w, IdLookup::Auto, &[]).unwrap().bytes);
        let split = m.graph.node.iter().find(|n| n.op_type == "Split").unwrap();
        assert_eq!(split.output.len(), 3);
        // ((p0 + p1) + p2): each Add takes the previous sum first, then the next column.
        let adds: Vec<&pb::NodeProto> = m
            .graph
            .node
            .iter()
            .filter(|n| n.op_type == "Add" && n.input.iter().any(|i| i.starts_with("split")))
            .collect();
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[0].input, [split.output[0].clone(), split.output[1].clone()]);
        assert_eq!(adds[1].input, [adds[0].output[0].clone(), split.output[2].clone()]);
        let concat = m.graph.node.iter().rfind(|n| n.op_type == "Concat").unwrap();
        assert_eq!(concat.input.last(), Some(&adds[1].output[0]), "the dot is the last input column");
        assert!(!ops(&m).contains(&"ReduceSum".to_string()));

        let qp = QParams { scale: 0.05, zero_point: 100 };
        let (weight, weight_scale) = reco_runtime::quant::quantize_weights(&w.dense[0].weight, 1, 8, 7, true);
        let bias_q = reco_runtime::quant::quantize_bias(&w.dense[0].bias, qp.scale, &weight_scale);
        let layer =
            QLayer::Int8 { weight, weight_scale, static_input: Some((bias_q, qp)), bias: vec![], input: 8, output: 1 };
        let embeddings = w
            .embeddings
            .iter()
            .map(|t| {
                let layout = reco_runtime::quant::TableLayout::Int8;
                reco_runtime::artifact::qweights::RowwiseTable::quantize(&t.data, t.rows, t.dim, layout).unwrap()
            })
            .collect::<Vec<_>>();
        let q = QuantWeights { embeddings: embeddings.clone(), layers: vec![layer] };
        let m = parse(&int8_model(&s, &arch, &q, IdLookup::Auto, &[]).unwrap().bytes);
        let reduce = m.graph.node.iter().find(|n| n.op_type == "ReduceSum").unwrap();
        let keepdims = reduce.attribute.iter().find(|a| a.name == "keepdims").unwrap();
        assert_eq!(keepdims.i, 1);
        let scale2 = m.graph.initializer.iter().find(|t| t.name == "interaction.scale_squared").unwrap();
        assert_eq!(scale2.raw_data, (qp.scale * qp.scale).to_le_bytes());
        assert!(!ops(&m).contains(&"Split".to_string()));
        // Layer 0 kept float: the dot of the dequantized rows, as in the FP32 graph.
        let q = QuantWeights { embeddings, layers: vec![QLayer::Float(w.dense[0].clone())] };
        let m = parse(&int8_model(&s, &arch, &q, IdLookup::Auto, &[]).unwrap().bytes);
        assert!(ops(&m).contains(&"Split".to_string()) && !ops(&m).contains(&"ReduceSum".to_string()));
        // Unequal widths are refused, not exported.
        let bad = Architecture { embedding_dims: vec![3, 2], ..arch };
        assert!(float_model(&s, &bad, &w, IdLookup::Auto, &[]).is_err());
    }

    #[test]
    fn duplicate_or_reserved_column_names_are_refused() {
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        let mut s = spec(vec![1]);
        s.numeric[0].name = "logit".into();
        assert!(float_model(&s, &arch, &weights(2), IdLookup::Auto, &[]).is_err());
        s.numeric[0].name = "place_id".into();
        assert!(float_model(&s, &arch, &weights(2), IdLookup::Auto, &[]).is_err());
    }
}
