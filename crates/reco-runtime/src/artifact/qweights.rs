//! Tensor naming and layout of INT8 artifacts (`<stage>-int8/model.safetensors`).
//!
//! | name                          | dtype | shape        | meaning                                   |
//! |-------------------------------|-------|--------------|-------------------------------------------|
//! | `embedding.<col>.codes`       | U8    | [rows, dim]  | 8-bit row-wise codes, row 0 = OOV         |
//! | `embedding.<col>.codes4`      | U8    | [rows, ⌈dim/2⌉] | 4-bit codes, two per byte, low nibble first |
//! | `embedding.<col>.scale_bias`  | F16   | [rows, 2]    | value = code · scale + bias (per row)     |
//! |                               |       | or [1, 2]    | one pair for the whole table (`int8-table`) |
//! | `dense.<i>.weight_q`          | I8    | [out, in]    | symmetric per output channel              |
//! | `dense.<i>.weight_scale`      | F16   | [out]        | real weight = weight_q · weight_scale (F32 in artifacts before fp16 scales, or beyond fp16's range) |
//! | `dense.<i>.bias_q`            | I32   | [out]        | at scale input_scale · weight_scale       |
//! | `dense.<i>.input_scale`       | F32   | [1]          | u8 input activations: real = s · (q - z)  |
//! | `dense.<i>.input_zero_point`  | U8    | [1]          |                                           |
//! | `dense.<i>.weight`, `.bias`   | F16, F32 | [out, in], [out] | a layer kept in float by the accuracy gate: fp16 weights (computed in f32), f32 bias |
//!
//! A table holds either `codes` or `codes4` (its precision, chosen per table by `quantize`).
//! Artifacts written before fp16 scales hold `embedding.<col>.scale_offset` F32 [rows, 2]
//! instead of `scale_bias`; they still load.
//!
//! Dynamic-activation artifacts store `dense.<i>.bias` (F32) instead of `bias_q` and the input
//! qparams, which are computed per batch.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, tensor::TensorView};

use super::manifest::Architecture;
use super::spec::FeatureSpec;
use super::weights::Dense;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::quant::{EmbeddingBits, QParams, TableLayout};

/// Layout description stored in the manifest's `tensor_layout`.
pub const LAYOUT: &str = "embedding.<col>.codes U8 [rows, dim] (8-bit) or embedding.<col>.codes4 U8 [rows, ceil(dim/2)] (4-bit, low nibble first) + embedding.<col>.scale_bias F16 [rows, 2] (row-wise) or [1, 2] (one pair for the table); dense.<i>.weight_q I8 [out, in] + weight_scale F16 [out] (per channel, symmetric; F32 when beyond fp16's range) + bias_q I32 [out] + input_scale F32 [1] + input_zero_point U8 [1]; float-fallback layers dense.<i>.weight F16 [out, in] (F32 in artifacts before fp16) + bias F32 [out]";

/// A quantized embedding table: row-wise codes with a scale and bias per row, or one pair for
/// the whole table ([`TableLayout`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RowwiseTable {
    /// `[rows, layout.bits().row_bytes(dim)]` packed codes.
    pub codes: Vec<u8>,
    /// `[rows, 2]` (or `[1, 2]` for one pair a table) scale, bias: fp16 values in new artifacts.
    pub scale_offset: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Width.
    pub dim: usize,
    /// Code width and scale granularity.
    pub layout: TableLayout,
}

impl RowwiseTable {
    /// Quantizes a float `[rows, dim]` table ([`crate::quant::quantize_rowwise`]); `Err(row)`:
    /// a row beyond fp16's range.
    pub fn quantize(data: &[f32], rows: usize, dim: usize, layout: TableLayout) -> std::result::Result<Self, usize> {
        Self::quantize_for(data, rows, dim, layout, None)
    }

    /// [`Self::quantize`] for a first layer that reads its input as u8 codes at `input`
    /// ([`crate::quant::quantize_rowwise_for`]).
    pub fn quantize_for(
        data: &[f32],
        rows: usize,
        dim: usize,
        layout: TableLayout,
        input: Option<&QParams>,
    ) -> std::result::Result<Self, usize> {
        let (codes, scale_offset) = if layout.per_table() {
            // One group of every value: 8-bit codes lie as [rows, dim] either way.
            crate::quant::quantize_rowwise_for(data, 1, rows * dim, layout.bits(), input).map_err(|_| 0usize)?
        } else {
            crate::quant::quantize_rowwise_for(data, rows, dim, layout.bits(), input)?
        };
        Ok(Self { codes, scale_offset, rows, dim, layout })
    }

    /// The code width.
    pub fn bits(&self) -> EmbeddingBits {
        self.layout.bits()
    }

    /// Row `r`'s values into `out` (`dim` long): `code · scale + bias`, two f32 operations.
    #[inline]
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let k = if self.layout.per_table() { 0 } else { r };
        let (s, o) = (self.scale_offset[2 * k], self.scale_offset[2 * k + 1]);
        let bits = self.bits();
        let stride = bits.row_bytes(self.dim);
        let row = &self.codes[r * stride..(r + 1) * stride];
        for (j, v) in out.iter_mut().enumerate().take(self.dim) {
            *v = f32::from(bits.code(row, j)) * s + o;
        }
    }

    /// Dequantized `[rows, dim]` values.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.dim];
        for (r, row) in out.chunks_exact_mut(self.dim.max(1)).enumerate().take(self.rows) {
            self.row_into(r, row);
        }
        out
    }
}

/// One dense layer of an INT8 model.
#[derive(Debug, Clone, PartialEq)]
pub enum QLayer {
    /// Integer layer.
    Int8 {
        /// `[out, in]` codes.
        weight: Vec<i8>,
        /// Per output channel.
        weight_scale: Vec<f32>,
        /// Static activations: (i32 bias, input qparams). Dynamic: None (float bias below).
        static_input: Option<(Vec<i32>, QParams)>,
        /// Float bias (dynamic activations only; empty otherwise).
        bias: Vec<f32>,
        /// Input width.
        input: usize,
        /// Output width.
        output: usize,
    },
    /// Kept in float by the accuracy gate.
    Float(Dense),
}

/// All tensors of an INT8 model.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeights {
    /// One table per categorical column.
    pub embeddings: Vec<RowwiseTable>,
    /// Dense layers, output layer last.
    pub layers: Vec<QLayer>,
}

/// Values as F16 when every one is an fp16 value (exact), else as F32.
fn half_or_f32(v: &[f32]) -> (Dtype, Vec<u8>) {
    if v.iter().all(|&x| crate::quant::to_f16(x) == x) {
        (Dtype::F16, bytes_of(v, |x: f32| half::f16::from_f32(x).to_le_bytes().to_vec()))
    } else {
        (Dtype::F32, bytes_of(v, |x: f32| x.to_le_bytes().to_vec()))
    }
}

fn bytes_of<T: Copy>(v: &[T], f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

impl QuantWeights {
    /// Serializes to safetensors bytes with the names above.
    pub fn to_bytes(&self, spec: &FeatureSpec) -> Result<Vec<u8>> {
        let mut owned: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = Vec::new();
        for (c, t) in spec.categorical.iter().zip(&self.embeddings) {
            let (suffix, width) = codes_tensor(t.bits(), t.dim);
            owned.push((format!("embedding.{}.{suffix}", c.name), Dtype::U8, t.codes.clone(), vec![t.rows, width]));
            owned.push((
                format!("embedding.{}.scale_bias", c.name),
                Dtype::F16,
                bytes_of(&t.scale_offset, |x: f32| half::f16::from_f32(x).to_le_bytes().to_vec()),
                vec![t.scale_offset.len() / 2, 2],
            ));
        }
        let f32b = |v: &[f32]| bytes_of(v, |x: f32| x.to_le_bytes().to_vec());
        for (i, l) in self.layers.iter().enumerate() {
            match l {
                QLayer::Int8 { weight, weight_scale, static_input, bias, input, output } => {
                    owned.push((
                        format!("dense.{i}.weight_q"),
                        Dtype::I8,
                        weight.iter().map(|&w| w as u8).collect(),
                        vec![*output, *input],
                    ));
                    let (dtype, bytes) = half_or_f32(weight_scale);
                    owned.push((format!("dense.{i}.weight_scale"), dtype, bytes, vec![*output]));
                    match static_input {
                        Some((bias_q, qp)) => {
                            owned.push((
                                format!("dense.{i}.bias_q"),
                                Dtype::I32,
                                bytes_of(bias_q, |x: i32| x.to_le_bytes().to_vec()),
                                vec![*output],
                            ));
                            owned.push((format!("dense.{i}.input_scale"), Dtype::F32, f32b(&[qp.scale]), vec![1]));
                            owned.push((
                                format!("dense.{i}.input_zero_point"),
                                Dtype::U8,
                                vec![qp.zero_point as u8],
                                vec![1],
                            ));
                        }
                        None => owned.push((format!("dense.{i}.bias"), Dtype::F32, f32b(bias), vec![*output])),
                    }
                }
                QLayer::Float(d) => {
                    let (dtype, bytes) = half_or_f32(&d.weight);
                    owned.push((format!("dense.{i}.weight"), dtype, bytes, vec![d.output, d.input]));
                    owned.push((format!("dense.{i}.bias"), Dtype::F32, f32b(&d.bias), vec![d.output]));
                }
            }
        }
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .map(|(n, dt, b, s)| {
                TensorView::new(*dt, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::Internal(format!("tensor {n}: {e}")))
            })
            .collect::<Result<_>>()?;
        let meta: HashMap<String, String> =
            [("format".to_string(), "reco-cli".to_string()), ("quantization".to_string(), "int8".to_string())].into();
        super::weights::serialize_ordered(views, meta)
    }

    /// Reads and shape-checks an INT8 model's tensors.
    pub fn load(path: &Path, spec: &FeatureSpec, arch: &Architecture) -> Result<Self> {
        Self::from_bytes(&std::fs::read(path).at(path)?, path, spec, arch)
    }

    /// Same, from the file's bytes (`path` names them in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path, spec: &FeatureSpec, arch: &Architecture) -> Result<Self> {
        let st = super::weights::parse_safetensors(bytes, path)?;
        let names: std::collections::HashSet<String> = st.names().into_iter().map(str::to_string).collect();
        let raw = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>> {
            Ok(super::weights::tensor(&st, path, name, dtype, shape)?.to_vec())
        };
        let f32s = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            super::weights::finite_f32(path, name, &raw(name, Dtype::F32, shape)?)
        };
        // fp16 values as f32 (exact), refused when not finite as the f32 ones are.
        let f16s = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let h: Vec<f32> = raw(name, Dtype::F16, shape)?
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            super::weights::finite_f32(path, name, &bytes_of(&h, |x: f32| x.to_le_bytes().to_vec()))
        };
        // A tensor written as F16 or F32 ([`half_or_f32`]): as its dtype says.
        let half_or_f32s = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            match st.tensor(name).map(|t| t.dtype()) {
                Ok(Dtype::F16) => f16s(name, shape),
                _ => f32s(name, shape),
            }
        };
        let mut embeddings = Vec::new();
        for (c, &dim) in spec.categorical.iter().zip(&arch.embedding_dims) {
            let rows = c.rows();
            let has = |bits: EmbeddingBits| names.contains(&format!("embedding.{}.{}", c.name, bits.codes_suffix()));
            let bits = match (has(EmbeddingBits::Eight), has(EmbeddingBits::Four)) {
                (true, false) => EmbeddingBits::Eight,
                (false, true) => EmbeddingBits::Four,
                (both, _) => {
                    let what = if both { "both" } else { "neither" };
                    return Err(Error::new(
                        ErrorKind::ShapeMismatch,
                        format!(
                            "{}: holds {what} embedding.{name}.codes (8-bit) and embedding.{name}.codes4 (4-bit); expected one",
                            path.display(),
                            name = c.name
                        ),
                    ));
                }
            };
            let (suffix, width) = codes_tensor(bits, dim);
            let legacy = format!("embedding.{}.scale_offset", c.name);
            let name = format!("embedding.{}.scale_bias", c.name);
            // One pair for the table: 8-bit codes only ([1, 2] with more than one row).
            let per_table =
                bits == EmbeddingBits::Eight && rows > 1 && st.tensor(&name).is_ok_and(|t| t.shape() == [1, 2]);
            let layout = match (bits, per_table) {
                (EmbeddingBits::Four, _) => TableLayout::Int4,
                (EmbeddingBits::Eight, true) => TableLayout::Int8Table,
                (EmbeddingBits::Eight, false) => TableLayout::Int8,
            };
            let scale_offset = if names.contains(&legacy) {
                f32s(&legacy, &[rows, 2])?
            } else {
                f16s(&name, &[if per_table { 1 } else { rows }, 2])?
            };
            let codes = raw(&format!("embedding.{}.{suffix}", c.name), Dtype::U8, &[rows, width])?;
            embeddings.push(RowwiseTable { codes, scale_offset, rows, dim, layout });
        }
        let mut layers = Vec::new();
        for (i, (input, output)) in arch.layer_shapes(spec).into_iter().enumerate() {
            if names.contains(&format!("dense.{i}.weight_q")) {
                let weight = raw(&format!("dense.{i}.weight_q"), Dtype::I8, &[output, input])?
                    .into_iter()
                    .map(|b| b as i8)
                    .collect();
                let weight_scale = half_or_f32s(&format!("dense.{i}.weight_scale"), &[output])?;
                let (static_input, bias) = if names.contains(&format!("dense.{i}.bias_q")) {
                    let bias_q = raw(&format!("dense.{i}.bias_q"), Dtype::I32, &[output])?
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let scale = f32s(&format!("dense.{i}.input_scale"), &[1])?[0];
                    let zp = raw(&format!("dense.{i}.input_zero_point"), Dtype::U8, &[1])?[0];
                    if !(scale > 0.0 && scale.is_finite()) {
                        return Err(Error::new(
                            ErrorKind::ShapeMismatch,
                            format!("{}: dense.{i}.input_scale is {scale}", path.display()),
                        ));
                    }
                    (Some((bias_q, QParams { scale, zero_point: i32::from(zp) })), Vec::new())
                } else {
                    (None, f32s(&format!("dense.{i}.bias"), &[output])?)
                };
                layers.push(QLayer::Int8 { weight, weight_scale, static_input, bias, input, output });
            } else {
                layers.push(QLayer::Float(Dense {
                    weight: half_or_f32s(&format!("dense.{i}.weight"), &[output, input])?,
                    bias: f32s(&format!("dense.{i}.bias"), &[output])?,
                    input,
                    output,
                }));
            }
        }
        Ok(Self { embeddings, layers })
    }

    /// True when the file holds an INT8 model (row-wise embedding codes).
    pub fn is_quantized(path: &Path) -> Result<bool> {
        let bytes = std::fs::read(path).at(path)?;
        let st = super::weights::parse_safetensors(&bytes, path)?;
        Ok(st.names().iter().any(|n| n.ends_with(".codes") || n.ends_with(".codes4")))
    }

    /// `self`, once its tables' layouts agree with what the manifest records of them
    /// (`quantization.embedding_precision`, present in artifacts with per-table precision):
    /// a table stored otherwise, or one the record leaves out, is an error naming it.
    pub fn matching(self, manifest: &super::Manifest, path: &Path) -> Result<Self> {
        let recorded = manifest.quantization.as_ref().map(|q| &q.embedding_precision).filter(|r| !r.is_empty());
        let Some(recorded) = recorded else { return Ok(self) };
        for (c, t) in manifest.feature_spec.categorical.iter().zip(&self.embeddings) {
            let says = recorded.get(&c.name).map_or("nothing", |l| l.name());
            if says != t.layout.name() {
                return Err(Error::new(
                    ErrorKind::ShapeMismatch,
                    format!(
                        "{}: table `{}` is stored as {}, but the manifest's quantization.embedding_precision says {says}",
                        path.display(),
                        c.name,
                        t.layout.name()
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// Each embedding table's layout, in column order.
    pub fn embedding_layouts(&self) -> Vec<TableLayout> {
        self.embeddings.iter().map(|t| t.layout).collect()
    }
}

/// The codes tensor's name suffix and width for a table of `dim` at `bits`.
fn codes_tensor(bits: EmbeddingBits, dim: usize) -> (&'static str, usize) {
    (bits.codes_suffix(), bits.row_bytes(dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::manifest::{Activation, Interaction};
    use crate::artifact::spec::{CategoricalSpec, NumericSpec};
    use crate::quant::{quantize_weights, to_f16};
    use safetensors::SafeTensors;

    /// One table, an integer layer 0 and a float layer 1 with weights `w1`, through bytes and back.
    fn round_trip(w1: Vec<f32>) -> (QuantWeights, QuantWeights, Vec<u8>) {
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("c", vec![1])],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "y".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![2],
            activation: Activation::Relu,
            interaction: Interaction::None,
        };
        let (weight, weight_scale) = quantize_weights(&[0.3, -0.7, 0.1, 0.05, 1e-9, 0.2], 2, 3, 7, true);
        let table = RowwiseTable {
            codes: vec![0; 4],
            scale_offset: vec![1.0, 0.0, 1.0, 0.0],
            rows: 2,
            dim: 2,
            layout: TableLayout::Int8,
        };
        let q = QuantWeights {
            embeddings: vec![table],
            layers: vec![
                QLayer::Int8 { weight, weight_scale, static_input: None, bias: vec![0.5, -0.5], input: 3, output: 2 },
                QLayer::Float(Dense { weight: w1, bias: vec![0.1], input: 2, output: 1 }),
            ],
        };
        let bytes = q.to_bytes(&spec).unwrap();
        let back = QuantWeights::from_bytes(&bytes, Path::new("m.safetensors"), &spec, &arch).unwrap();
        (q, back, bytes)
    }

    #[test]
    fn fp16_scales_and_float_weights_round_trip_exactly_and_others_stay_f32() {
        let dtypes = |bytes: &[u8]| -> Vec<(String, Dtype)> {
            let st = SafeTensors::deserialize(bytes).unwrap();
            let mut v: Vec<(String, Dtype)> = st.tensors().into_iter().map(|(n, t)| (n, t.dtype())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter().filter(|(n, _)| n.ends_with("weight_scale") || n.ends_with(".weight")).collect()
        };
        let (q, back, bytes) = round_trip(vec![to_f16(0.3), to_f16(-1.7)]);
        assert_eq!(back, q);
        assert_eq!(
            dtypes(&bytes),
            vec![("dense.0.weight_scale".into(), Dtype::F16), ("dense.1.weight".into(), Dtype::F16)]
        );
        // Weights fp16 cannot hold exactly (a float model's layer) are written as F32.
        let (q, back, bytes) = round_trip(vec![0.3, -1.7]);
        assert_eq!(back, q);
        assert_eq!(dtypes(&bytes)[1], ("dense.1.weight".into(), Dtype::F32));
    }
}
