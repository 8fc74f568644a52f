//! The inference runtime serving systems link: load and verify an artifact, turn raw feature
//! rows into model inputs exactly as the manifest's feature spec says, and score them.
//!
//! No burn and no polars: dense layers run on `matrixmultiply`'s packed SGEMM (single
//! thread), preprocessing is plain loops over columns. Arrow `RecordBatch` input is in
//! [`arrow_io`].

pub mod arrow_io;
pub mod int8;

use std::path::Path;

use crate::artifact::manifest::{Architecture, Manifest};
use crate::artifact::spec::{FeatureSpec, Ids};
use crate::artifact::weights::{FloatWeights, Table};
use crate::artifact::{self, WEIGHTS};
use crate::error::{Error, Result};

/// Raw input columns in the feature spec's order (categorical ids in their original type,
/// unnormalized numbers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// Number of rows.
    pub rows: usize,
    /// One column per categorical column of the spec, integers or strings as its `dtype` says.
    pub categorical: Vec<Ids>,
    /// One vector per numeric column of the spec.
    pub numeric: Vec<Vec<f32>>,
}

impl Columns {
    /// Rows `start..end` as a new set of columns.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            rows: end - start,
            categorical: self.categorical.iter().map(|c| c.slice(start..end)).collect(),
            numeric: self.numeric.iter().map(|c| c[start..end].to_vec()).collect(),
        }
    }

    /// Rows picked by index, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        Self {
            rows: idx.len(),
            categorical: self.categorical.iter().map(|c| c.take(idx)).collect(),
            numeric: self.numeric.iter().map(|c| idx.iter().map(|&i| c[i]).collect()).collect(),
        }
    }

    /// Checks the column counts and lengths against a spec.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        if self.categorical.len() != spec.categorical.len() || self.numeric.len() != spec.numeric.len() {
            return Err(Error::input(format!(
                "got {} categorical and {} numeric columns, the model expects {} and {}",
                self.categorical.len(),
                self.numeric.len(),
                spec.categorical.len(),
                spec.numeric.len()
            )));
        }
        if self.categorical.iter().map(Ids::len).chain(self.numeric.iter().map(Vec::len)).any(|l| l != self.rows) {
            return Err(Error::input("input columns have different lengths"));
        }
        for (c, ids) in spec.categorical.iter().zip(&self.categorical) {
            if ids.id_type() != c.dtype() {
                return Err(Error::input(format!(
                    "column `{}` holds {} ids, the model expects {} ids",
                    c.name,
                    ids.id_type(),
                    c.dtype()
                )));
            }
        }
        Ok(())
    }
}

/// Model inputs after the spec's encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Number of rows.
    pub rows: usize,
    /// Embedding row of each categorical value, one vector per column.
    pub ids: Vec<Vec<u32>>,
    /// Normalized numeric features, row-major [rows, numeric columns].
    pub numeric: Vec<f32>,
}

/// Applies the feature spec: vocabulary lookup (0 = OOV) and (x - mean) / std.
pub fn encode(spec: &FeatureSpec, cols: &Columns) -> Encoded {
    let ids = spec.categorical.iter().zip(&cols.categorical).map(|(c, values)| c.rows_of(values)).collect();
    let k = spec.numeric.len();
    let mut numeric = vec![0f32; cols.rows * k];
    for (j, (n, values)) in spec.numeric.iter().zip(&cols.numeric).enumerate() {
        let normalize = n.normalizer();
        for (r, &v) in values.iter().enumerate() {
            numeric[r * k + j] = normalize(v);
        }
    }
    Encoded { rows: cols.rows, ids, numeric }
}

/// Logistic function, stable for large |z|.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// A float model ready to score.
#[derive(Debug, Clone)]
pub struct FloatModel {
    /// Input encoding.
    pub spec: FeatureSpec,
    /// Layer sizes.
    pub arch: Architecture,
    /// Tensors.
    pub weights: FloatWeights,
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
        let model = if manifest.quantization.is_some() {
            let w = crate::artifact::qweights::QuantWeights::load(&path, &spec, &arch)?;
            Self::Int8(int8::Int8Model::new(spec, arch, w))
        } else {
            let weights = FloatWeights::load(&path, &spec, &arch)?;
            Self::Float(FloatModel { spec, arch, weights })
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

    /// `float` or `int8`.
    pub fn precision(&self) -> &'static str {
        match self {
            Self::Float(_) => "float",
            Self::Int8(_) => "int8",
        }
    }

    /// Logits for every row.
    pub fn logits(&self, cols: &Columns) -> Result<Vec<f32>> {
        match self {
            Self::Float(m) => m.logits(cols),
            Self::Int8(m) => m.logits(cols),
        }
    }
}

/// Rows scored per chunk (bounds scratch memory).
pub const CHUNK: usize = 4096;

impl FloatModel {
    /// Opens a float artifact directory, verifying every file hash first; an INT8 artifact is
    /// an input error naming its float parent.
    pub fn open(dir: &Path) -> Result<(Manifest, Self)> {
        let manifest = artifact::open(dir)?;
        if manifest.quantization.is_some() {
            let parent = manifest
                .lineage
                .as_ref()
                .map_or_else(|| "-".into(), |l| dir.join(&l.parent_path).display().to_string());
            return Err(Error::input(format!(
                "{}: an INT8 artifact (kind {}), expected a float model such as its parent {parent}",
                dir.display(),
                manifest.kind
            )));
        }
        let weights = FloatWeights::load(&dir.join(WEIGHTS), &manifest.feature_spec, &manifest.architecture)?;
        let model = Self { spec: manifest.feature_spec.clone(), arch: manifest.architecture.clone(), weights };
        Ok((manifest, model))
    }

    /// Logits for every row.
    pub fn logits(&self, cols: &Columns) -> Result<Vec<f32>> {
        score_in_chunks(&self.spec, cols, |enc| self.logits_encoded(enc))
    }

    /// Builds the MLP input matrix [rows, input_dim] from encoded rows.
    pub fn input_matrix(&self, enc: &Encoded) -> Vec<f32> {
        input_matrix(&self.weights.embeddings, enc, self.spec.numeric.len())
    }

    /// Logits for already-encoded rows.
    pub fn logits_encoded(&self, enc: &Encoded) -> Vec<f32> {
        let mut x = self.input_matrix(enc);
        let last = self.weights.dense.len() - 1;
        for (li, layer) in self.weights.dense.iter().enumerate() {
            let mut y = dense_forward(&x, enc.rows, layer);
            if li < last {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            x = y;
        }
        x
    }
}

/// Row ranges of at most [`CHUNK`] rows covering `0..rows`: scoring memory stays bounded
/// whatever the batch size.
pub fn chunks(rows: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..rows).step_by(CHUNK).map(move |start| start..(start + CHUNK).min(rows))
}

/// Encodes and scores `cols` in [`chunks`] (one chunk without copying).
pub fn score_in_chunks(spec: &FeatureSpec, cols: &Columns, score: impl Fn(&Encoded) -> Vec<f32>) -> Result<Vec<f32>> {
    cols.check(spec)?;
    if cols.rows <= CHUNK {
        return Ok(score(&encode(spec, cols)));
    }
    let mut out = Vec::with_capacity(cols.rows);
    for r in chunks(cols.rows) {
        out.extend(score(&encode(spec, &cols.slice(r.start, r.end))));
    }
    Ok(out)
}

/// The float MLP input `[rows, Σ dims + numeric]`: each row's embedding rows, then its
/// normalized numeric features.
pub fn input_matrix(tables: &[Table], enc: &Encoded, numeric: usize) -> Vec<f32> {
    let d = tables.iter().map(|t| t.dim).sum::<usize>() + numeric;
    let mut x = vec![0f32; enc.rows * d];
    for r in 0..enc.rows {
        let row = &mut x[r * d..(r + 1) * d];
        let mut off = 0;
        for (t, ids) in tables.iter().zip(&enc.ids) {
            let i = ids[r] as usize;
            row[off..off + t.dim].copy_from_slice(&t.data[i * t.dim..(i + 1) * t.dim]);
            off += t.dim;
        }
        row[off..].copy_from_slice(&enc.numeric[r * numeric..(r + 1) * numeric]);
    }
    x
}

/// y = x · Wᵀ + b for x [m, in] row-major and W [out, in] row-major.
pub fn dense_forward(x: &[f32], m: usize, layer: &crate::artifact::weights::Dense) -> Vec<f32> {
    let (k, n) = (layer.input, layer.output);
    let mut y = Vec::with_capacity(m * n);
    for _ in 0..m {
        y.extend_from_slice(&layer.bias);
    }
    if m == 0 {
        return y;
    }
    if m < 8 {
        // Small batches: a direct dot product per output beats packing the whole weight matrix.
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            for (o, yv) in y[r * n..(r + 1) * n].iter_mut().enumerate() {
                *yv += dot(xr, &layer.weight[o * k..(o + 1) * k]);
            }
        }
        return y;
    }
    // SAFETY: the pointers cover m*k, n*k and m*n elements with the given strides, which
    // is exactly the extent sgemm reads and writes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            layer.weight.as_ptr(),
            1,
            k as isize,
            1.0,
            y.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    y
}

/// f32 dot product with 8 independent accumulators (vectorizes without reassociation flags).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::weights::Dense;

    #[test]
    fn dense_forward_matches_a_scalar_loop() {
        for (m, k, n) in [(5, 7, 3), (1, 35, 9), (12, 20, 17), (64, 3, 2)] {
            check_dense(m, k, n);
        }
    }

    fn check_dense(m: usize, k: usize, n: usize) {
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
        let layer = Dense { weight: w.clone(), bias: b.clone(), input: k, output: n };
        let y = dense_forward(&x, m, &layer);
        for r in 0..m {
            for o in 0..n {
                let want: f32 = b[o] + (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum::<f32>();
                assert!((y[r * n + o] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert!((sigmoid(2.0) - 0.880_797).abs() < 1e-6);
    }
}
