//! Tensor naming and layout in `model.safetensors` (float models, format version 1).
//!
//! | name                      | dtype | shape             |
//! |---------------------------|-------|-------------------|
//! | `embedding.<column>`      | F32   | [vocab + 1, dim]  | row 0 = out-of-vocabulary
//! | `dense.<i>.weight`        | F32   | [out, in]         | PyTorch `nn.Linear` layout
//! | `dense.<i>.bias`          | F32   | [out]             |
//!
//! Dense layers are numbered from 0 (first hidden) to `hidden.len()` (the output layer).

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::manifest::Architecture;
use super::spec::FeatureSpec;
use crate::error::{Error, ErrorKind, IoContext, Result};

/// Layout description stored in the manifest's `tensor_layout`.
pub const LAYOUT: &str = "embedding.<column>: F32 [vocab+1, dim], row 0 = OOV; dense.<i>.weight: F32 [out, in] (PyTorch Linear); dense.<i>.bias: F32 [out]";

/// A dense layer in PyTorch layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Row-major [out, in].
    pub weight: Vec<f32>,
    /// [out].
    pub bias: Vec<f32>,
    /// Input width.
    pub input: usize,
    /// Output width.
    pub output: usize,
}

/// An embedding table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Row-major [rows, dim].
    pub data: Vec<f32>,
    /// Number of rows (vocabulary + 1).
    pub rows: usize,
    /// Embedding width.
    pub dim: usize,
}

/// All float tensors of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatWeights {
    /// One table per categorical column, in spec order.
    pub embeddings: Vec<Table>,
    /// Dense layers, the output layer last.
    pub dense: Vec<Dense>,
}

/// `safetensors::serialize` with the JSON header's keys sorted: the crate writes its
/// metadata from a `HashMap`, so its key order (and every hash over the file) changed from run
/// to run. The data offsets are explicit in the header, so reordering its keys leaves the
/// tensor bytes and the header's length as they are.
pub fn serialize_ordered(views: Vec<(String, TensorView<'_>)>, meta: HashMap<String, String>) -> Result<Vec<u8>> {
    let mut bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Internal(e.to_string()))?;
    let bad = || Error::Internal("safetensors header".into());
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?))
        .map_err(|_| bad())?;
    let header = bytes.get(8..8 + len).ok_or_else(bad)?;
    // serde_json's Value keeps object keys in a BTreeMap: sorted.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| Error::Internal(e.to_string()))?;
    let mut sorted = serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))?;
    if sorted.len() > len {
        return Err(bad());
    }
    sorted.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&sorted);
    Ok(bytes)
}

impl FloatWeights {
    /// True when every embedding, weight and bias is finite.
    pub fn is_finite(&self) -> bool {
        self.embeddings.iter().all(|t| t.data.iter().all(|v| v.is_finite()))
            && self.dense.iter().all(|d| d.weight.iter().chain(&d.bias).all(|v| v.is_finite()))
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl FloatWeights {
    /// Serializes to safetensors bytes with the names above.
    pub fn to_bytes(&self, spec: &FeatureSpec) -> Result<Vec<u8>> {
        let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (c, t) in spec.categorical.iter().zip(&self.embeddings) {
            owned.push((format!("embedding.{}", c.name), f32_bytes(&t.data), vec![t.rows, t.dim]));
        }
        for (i, d) in self.dense.iter().enumerate() {
            owned.push((format!("dense.{i}.weight"), f32_bytes(&d.weight), vec![d.output, d.input]));
            owned.push((format!("dense.{i}.bias"), f32_bytes(&d.bias), vec![d.output]));
        }
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .map(|(n, b, s)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::Internal(format!("tensor {n}: {e}")))
            })
            .collect::<Result<_>>()?;
        let meta: HashMap<String, String> =
            [("format".to_string(), "reco-cli".to_string()), ("layout".to_string(), "pytorch-linear".to_string())]
                .into();
        serialize_ordered(views, meta)
    }

    /// Reads and shape-checks the tensors of `arch` from a safetensors file.
    pub fn load(path: &Path, spec: &FeatureSpec, arch: &Architecture) -> Result<Self> {
        Self::from_bytes(&std::fs::read(path).at(path)?, path, spec, arch)
    }

    /// Same, from the file's bytes (`path` names them in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path, spec: &FeatureSpec, arch: &Architecture) -> Result<Self> {
        let st = parse_safetensors(bytes, path)?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            finite_f32(path, name, tensor(&st, path, name, Dtype::F32, shape)?)
        };
        let embeddings = spec
            .categorical
            .iter()
            .zip(&arch.embedding_dims)
            .map(|(c, &dim)| {
                let rows = c.rows();
                Ok(Table { data: get(&format!("embedding.{}", c.name), &[rows, dim])?, rows, dim })
            })
            .collect::<Result<_>>()?;
        let dense = arch
            .layer_shapes(spec)
            .into_iter()
            .enumerate()
            .map(|(i, (input, output))| {
                Ok(Dense {
                    weight: get(&format!("dense.{i}.weight"), &[output, input])?,
                    bias: get(&format!("dense.{i}.bias"), &[output])?,
                    input,
                    output,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, dense })
    }
}

/// The tensors of a safetensors file's `bytes` (`path` names them in errors); bytes that are
/// not one are [`ErrorKind::NotAnArtifact`].
pub(crate) fn parse_safetensors<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        Error::new(ErrorKind::NotAnArtifact, format!("{}: not a valid safetensors file ({e})", path.display()))
    })
}

/// The bytes of tensor `name`, which must be `dtype` of `shape`: a tensor missing or of another
/// dtype or shape is an [`ErrorKind::ShapeMismatch`] naming it.
pub(crate) fn tensor<'a>(
    st: &SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8]> {
    let shape_error = |msg: String| Error::new(ErrorKind::ShapeMismatch, msg);
    let t = st.tensor(name).map_err(|_| shape_error(format!("{}: missing tensor `{name}`", path.display())))?;
    if t.dtype() != dtype || t.shape() != shape {
        return Err(shape_error(format!(
            "{}: tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
            path.display(),
            t.dtype(),
            t.shape()
        )));
    }
    Ok(t.data())
}

/// The little-endian f32 values of tensor `name`; a NaN or infinity is an error
/// ([`ErrorKind::ShapeMismatch`]) naming the tensor and position (a model holding one scores
/// garbage).
pub(crate) fn finite_f32(path: &Path, name: &str, data: &[u8]) -> Result<Vec<f32>> {
    let v: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::new(
            ErrorKind::ShapeMismatch,
            format!(
                "{}: tensor `{name}` holds {} at position {i}; the model is corrupt or its training diverged",
                path.display(),
                v[i]
            ),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_bytes_are_the_same_every_time_and_still_load() {
        let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
        let bytes_of = || {
            let views = vec![
                ("b".to_string(), TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap()),
                ("a".to_string(), TensorView::new(Dtype::F32, vec![4], &data).unwrap()),
            ];
            let meta: HashMap<String, String> = (0..6).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
            serialize_ordered(views, meta).unwrap()
        };
        // Each HashMap gets its own random order: 20 serializations agree only when ordered.
        let first = bytes_of();
        for _ in 0..20 {
            assert_eq!(bytes_of(), first);
        }
        let st = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("b").unwrap().shape(), [2, 2]);
        assert_eq!(st.tensor("a").unwrap().data(), data.as_slice());
        let (_, meta) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(meta.metadata().as_ref().map(|m| m.len()), Some(6));
    }
}
