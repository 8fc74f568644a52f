//! Tensor naming and layout of INT8 artifacts (`<stage>-int8/model.safetensors`).
//!
//! | name                          | dtype | shape        | meaning                                   |
//! |-------------------------------|-------|--------------|-------------------------------------------|
//! | `embedding.<col>.codes`       | U8    | [rows, dim]  | row-wise codes, row 0 = OOV               |
//! | `embedding.<col>.scale_offset`| F32   | [rows, 2]    | value = code · scale + offset (per row)   |
//! | `dense.<i>.weight_q`          | I8    | [out, in]    | symmetric per output channel              |
//! | `dense.<i>.weight_scale`      | F32   | [out]        | real weight = weight_q · weight_scale     |
//! | `dense.<i>.bias_q`            | I32   | [out]        | at scale input_scale · weight_scale       |
//! | `dense.<i>.input_scale`       | F32   | [1]          | u8 input activations: real = s · (q - z)  |
//! | `dense.<i>.input_zero_point`  | U8    | [1]          |                                           |
//! | `dense.<i>.weight`, `.bias`   | F32   | [out, in], [out] | a layer kept in float by the accuracy gate |
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
use crate::quant::QParams;

/// Layout description stored in the manifest's `tensor_layout`.
pub const LAYOUT: &str = "embedding.<col>.codes U8 [rows, dim] + embedding.<col>.scale_offset F32 [rows, 2] (row-wise); dense.<i>.weight_q I8 [out, in] + weight_scale F32 [out] (per channel, symmetric) + bias_q I32 [out] + input_scale F32 [1] + input_zero_point U8 [1]; float-fallback layers dense.<i>.weight F32 [out, in] + bias F32 [out]";

/// A row-wise quantized embedding table.
#[derive(Debug, Clone, PartialEq)]
pub struct RowwiseTable {
    /// `[rows, dim]` codes.
    pub codes: Vec<u8>,
    /// `[rows, 2]` scale, offset.
    pub scale_offset: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Width.
    pub dim: usize,
}

impl RowwiseTable {
    /// Dequantized `[rows, dim]` values.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.dim);
        for r in 0..self.rows {
            let (s, o) = (self.scale_offset[2 * r], self.scale_offset[2 * r + 1]);
            out.extend(self.codes[r * self.dim..(r + 1) * self.dim].iter().map(|&q| f32::from(q) * s + o));
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

fn bytes_of<T: Copy>(v: &[T], f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

impl QuantWeights {
    /// Serializes to safetensors bytes with the names above.
    pub fn to_bytes(&self, spec: &FeatureSpec) -> Result<Vec<u8>> {
        let mut owned: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = Vec::new();
        for (c, t) in spec.categorical.iter().zip(&self.embeddings) {
            owned.push((format!("embedding.{}.codes", c.name), Dtype::U8, t.codes.clone(), vec![t.rows, t.dim]));
            owned.push((
                format!("embedding.{}.scale_offset", c.name),
                Dtype::F32,
                bytes_of(&t.scale_offset, |x: f32| x.to_le_bytes().to_vec()),
                vec![t.rows, 2],
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
                    owned.push((format!("dense.{i}.weight_scale"), Dtype::F32, f32b(weight_scale), vec![*output]));
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
                    owned.push((format!("dense.{i}.weight"), Dtype::F32, f32b(&d.weight), vec![d.output, d.input]));
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
        let mut embeddings = Vec::new();
        for (c, &dim) in spec.categorical.iter().zip(&arch.embedding_dims) {
            let rows = c.rows();
            embeddings.push(RowwiseTable {
                codes: raw(&format!("embedding.{}.codes", c.name), Dtype::U8, &[rows, dim])?,
                scale_offset: f32s(&format!("embedding.{}.scale_offset", c.name), &[rows, 2])?,
                rows,
                dim,
            });
        }
        let mut layers = Vec::new();
        for (i, (input, output)) in arch.layer_shapes(spec).into_iter().enumerate() {
            if names.contains(&format!("dense.{i}.weight_q")) {
                let weight = raw(&format!("dense.{i}.weight_q"), Dtype::I8, &[output, input])?
                    .into_iter()
                    .map(|b| b as i8)
                    .collect();
                let weight_scale = f32s(&format!("dense.{i}.weight_scale"), &[output])?;
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
                    weight: f32s(&format!("dense.{i}.weight"), &[output, input])?,
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
        Ok(st.names().iter().any(|n| n.ends_with(".codes")))
    }
}
