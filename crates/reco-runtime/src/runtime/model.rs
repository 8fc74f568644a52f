//! [`Model`]: any artifact the runtime scores, float or INT8, opened from a directory or from
//! memory (hashes verified), with what a server asks of it (logits, the dense layers alone,
//! the memory it holds); and [`sigmoid`], logits to probabilities.

use std::path::Path;

use super::{Columns, ColumnsRef, FloatModel, encode, int8};
use crate::artifact::manifest::{Architecture, Manifest};
use crate::artifact::qweights::QuantWeights;
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::FloatWeights;
use crate::artifact::{self, WEIGHTS};
use crate::error::{Error, ErrorKind, Result};

/// Logistic function, stable for large |z|.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The arithmetic a model scores with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Float32 throughout.
    Float,
    /// Integer kernels (u8 x s8 -> i32).
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Float => "float",
            Self::Int8 => "int8",
        })
    }
}

/// Any artifact the runtime can score: float or INT8.
#[derive(Debug, Clone)]
pub enum Model {
    /// Float weights.
    Float(FloatModel),
    /// INT8 weights and kernels.
    Int8(int8::Int8Model),
}

impl Model {
    /// Opens an artifact (hashes verified), float or INT8 by its manifest.
    pub fn open(dir: &Path) -> Result<(Manifest, Self)> {
        let manifest = artifact::open(dir)?;
        let path = dir.join(WEIGHTS);
        let (spec, arch) = (manifest.feature_spec.clone(), manifest.architecture.clone());
        let model = if manifest.kind.is_int8() {
            let w = QuantWeights::load(&path, &spec, &arch)?.matching(&manifest, &path)?;
            Self::Int8(int8::Int8Model::new(spec, arch, w)?)
        } else {
            let weights = FloatWeights::load(&path, &spec, &arch)?;
            Self::Float(FloatModel::new(spec, arch, weights)?)
        };
        Ok((manifest, model))
    }

    /// The input encoding.
    pub fn spec(&self) -> &FeatureSpec {
        match self {
            Self::Float(m) => &m.spec,
            Self::Int8(m) => &m.spec,
        }
    }

    /// Float or INT8 arithmetic.
    pub fn precision(&self) -> Precision {
        match self {
            Self::Float(_) => Precision::Float,
            Self::Int8(_) => Precision::Int8,
        }
    }

    /// Logits for every row, on the calling thread.
    pub fn logits(&self, cols: &Columns) -> Result<Vec<f32>> {
        self.score(&cols.view())
    }

    /// Logits for borrowed columns, on the calling thread.
    pub fn score(&self, cols: &ColumnsRef<'_>) -> Result<Vec<f32>> {
        match self {
            Self::Float(m) => m.score(cols),
            Self::Int8(m) => m.logits(cols),
        }
    }

    /// Opens an artifact from memory: the manifest's JSON and the weights file's bytes, the
    /// weights checked against the manifest's size and sha256 (for servers that fetch
    /// artifacts from a store instead of a directory). `name` labels error messages.
    pub fn from_bytes(name: &str, manifest_json: &[u8], weights: &[u8]) -> Result<(Manifest, Self)> {
        let manifest = artifact::manifest_from_bytes(name, manifest_json)?;
        artifact::verify_bytes(name, &manifest, WEIGHTS, weights)?;
        let label = Path::new(name).join(WEIGHTS);
        let (spec, arch) = (manifest.feature_spec.clone(), manifest.architecture.clone());
        let model = if manifest.kind.is_int8() {
            let w = QuantWeights::from_bytes(weights, &label, &spec, &arch)?.matching(&manifest, &label)?;
            Self::Int8(int8::Int8Model::new(spec, arch, w)?)
        } else {
            let weights = FloatWeights::from_bytes(weights, &label, &spec, &arch)?;
            Self::Float(FloatModel::new(spec, arch, weights)?)
        };
        Ok((manifest, model))
    }

    /// The float MLP input `[rows, input width]` of `cols`: what [`Model::dense`] takes.
    pub fn input_matrix(&self, cols: &ColumnsRef<'_>) -> Result<Vec<f32>> {
        cols.check(self.spec())?;
        let enc = encode(self.spec(), cols);
        Ok(match self {
            Self::Float(m) => m.input_matrix(&enc),
            Self::Int8(m) => m.input_matrix(&enc),
        })
    }

    /// Logits of the dense layers alone on `rows` rows of [`Model::input_matrix`] (every
    /// layer, the INT8 input quantization included; no encoding, no embedding lookups).
    pub fn dense(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let width = self.arch().input_dim(self.spec());
        if rows.checked_mul(width) != Some(x.len()) {
            return Err(Error::new(
                ErrorKind::InputColumn,
                format!("dense input holds {} values, expected {rows} x {width}", x.len()),
            ));
        }
        Ok(match self {
            Self::Float(m) => m.dense(x, rows),
            Self::Int8(m) => m.dense(x, rows),
        })
    }

    /// Layer sizes.
    pub fn arch(&self) -> &Architecture {
        match self {
            Self::Float(m) => &m.arch,
            Self::Int8(m) => &m.arch,
        }
    }

    /// Bytes of tensors the loaded model holds.
    pub fn resident_bytes(&self) -> usize {
        match self {
            Self::Float(m) => m.resident_bytes(),
            Self::Int8(m) => m.resident_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert!((sigmoid(2.0) - 0.880_797).abs() < 1e-6);
    }
}
