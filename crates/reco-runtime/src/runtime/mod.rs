//! The inference runtime serving systems link: load and verify an artifact, turn raw feature
//! rows into model inputs exactly as the manifest's feature spec says, and score them.
//!
//! No burn and no polars: dense layers run on `matrixmultiply`'s packed SGEMM, preprocessing
//! is plain loops over columns. Scoring borrows its input ([`ColumnsRef`]: no copies per
//! chunk) and runs on the calling thread, or on exactly as many threads as
//! [`Model::logits_threads`] is given. Arrow `RecordBatch` input is in [`arrow_io`] (feature
//! `arrow`); request coalescing in [`coalesce`].

#[cfg(feature = "arrow")]
pub mod arrow_io;
pub mod coalesce;
pub mod int8;
pub mod json;

use std::path::Path;

use crate::artifact::manifest::{Architecture, Manifest};
use crate::artifact::qweights::RowwiseTable;
use crate::artifact::spec::{FeatureSpec, Ids, IdsRef};
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

    /// No rows, with the columns (and id types) of `like`, with room for `capacity` rows.
    pub fn empty_like(like: &Columns, capacity: usize) -> Self {
        let categorical = like
            .categorical
            .iter()
            .map(|c| match c {
                Ids::Int(_) => Ids::Int(Vec::with_capacity(capacity)),
                Ids::Str(_) => Ids::Str(Vec::with_capacity(capacity)),
            })
            .collect();
        let numeric = like.numeric.iter().map(|_| Vec::with_capacity(capacity)).collect();
        Self { rows: 0, categorical, numeric }
    }

    /// Appends the rows of `other`, which must have the same columns and id types (checked:
    /// an error names the first column that differs, and nothing is appended).
    pub fn append(&mut self, other: &Columns) -> Result<()> {
        let same = self.categorical.len() == other.categorical.len()
            && self.numeric.len() == other.numeric.len()
            && self.categorical.iter().zip(&other.categorical).all(|(a, b)| a.id_type() == b.id_type());
        if !same {
            return Err(Error::input("appended columns differ in number or id type"));
        }
        for (dst, src) in self.categorical.iter_mut().zip(&other.categorical) {
            match (dst, src) {
                (Ids::Int(d), Ids::Int(v)) => d.extend_from_slice(v),
                (Ids::Str(d), Ids::Str(v)) => d.extend_from_slice(v),
                _ => {}
            }
        }
        for (dst, src) in self.numeric.iter_mut().zip(&other.numeric) {
            dst.extend_from_slice(src);
        }
        self.rows += other.rows;
        Ok(())
    }

    /// The columns, borrowed.
    pub fn view(&self) -> ColumnsRef<'_> {
        ColumnsRef {
            rows: self.rows,
            categorical: self.categorical.iter().map(Ids::view).collect(),
            numeric: self.numeric.iter().map(Vec::as_slice).collect(),
        }
    }

    /// Checks the column counts and lengths against a spec.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        let lens = self.categorical.iter().map(Ids::len).chain(self.numeric.iter().map(Vec::len));
        check_shape(spec, self.rows, self.categorical.iter().map(Ids::id_type), self.numeric.len(), lens)
    }
}

/// Raw input columns borrowed from the caller (a server's parsed request, a data frame):
/// what every scoring function takes, so slicing rows never copies.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnsRef<'a> {
    /// Number of rows.
    pub rows: usize,
    /// One column per categorical column of the spec.
    pub categorical: Vec<IdsRef<'a>>,
    /// One slice per numeric column of the spec.
    pub numeric: Vec<&'a [f32]>,
}

impl<'a> ColumnsRef<'a> {
    /// Rows `range`, still borrowed.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ColumnsRef<'a> {
        ColumnsRef {
            rows: range.len(),
            categorical: self.categorical.iter().map(|c| c.slice(range.clone())).collect(),
            numeric: self.numeric.iter().map(|c| &c[range.clone()]).collect(),
        }
    }

    /// Checks the column counts, lengths and id types against a spec.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        let lens = self.categorical.iter().map(IdsRef::len).chain(self.numeric.iter().map(|c| c.len()));
        check_shape(spec, self.rows, self.categorical.iter().map(IdsRef::id_type), self.numeric.len(), lens)
    }
}

/// The checks of [`Columns::check`] and [`ColumnsRef::check`]: as many columns as the spec,
/// `rows` values in each, and each categorical column of the spec's id type.
fn check_shape(
    spec: &FeatureSpec,
    rows: usize,
    id_types: impl ExactSizeIterator<Item = crate::artifact::spec::IdType>,
    numeric: usize,
    mut lens: impl Iterator<Item = usize>,
) -> Result<()> {
    let categorical = id_types.len();
    if categorical != spec.categorical.len() || numeric != spec.numeric.len() {
        return Err(Error::input(format!(
            "got {categorical} categorical and {numeric} numeric columns, the model expects {} and {}",
            spec.categorical.len(),
            spec.numeric.len()
        )));
    }
    if lens.any(|l| l != rows) {
        return Err(Error::input("input columns have different lengths"));
    }
    for (c, t) in spec.categorical.iter().zip(id_types) {
        if t != c.dtype() {
            return Err(Error::input(format!(
                "column `{}` holds {t} ids, the model expects {} ids",
                c.name,
                c.dtype()
            )));
        }
    }
    Ok(())
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
pub fn encode(spec: &FeatureSpec, cols: &ColumnsRef<'_>) -> Encoded {
    let ids = spec.categorical.iter().zip(&cols.categorical).map(|(c, values)| c.rows_of_ref(*values)).collect();
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
            Self::Int8(int8::Int8Model::new(spec, arch, w)?)
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

    /// Logits computed on `threads` threads (contiguous row ranges, results in row order);
    /// `threads` ≤ 1 is [`Model::score`] on the calling thread.
    pub fn logits_threads(&self, cols: &ColumnsRef<'_>, threads: usize) -> Result<Vec<f32>> {
        cols.check(self.spec())?;
        let parts = threads.min(cols.rows.div_ceil(MIN_ROWS_PER_THREAD)).max(1);
        if parts == 1 {
            return self.score(cols);
        }
        let per = cols.rows.div_ceil(parts);
        let ranges: Vec<_> = (0..cols.rows).step_by(per).map(|s| s..(s + per).min(cols.rows)).collect();
        let results: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges.iter().map(|r| scope.spawn(|| self.score(&cols.slice(r.clone())))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a scoring thread panicked".into()))))
                .collect()
        });
        let mut out = Vec::with_capacity(cols.rows);
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Opens an artifact from memory: the manifest's JSON and the weights file's bytes, the
    /// weights checked against the manifest's size and sha256 (for servers that fetch
    /// artifacts from a store instead of a directory). `name` labels error messages.
    pub fn from_bytes(name: &str, manifest_json: &[u8], weights: &[u8]) -> Result<(Manifest, Self)> {
        let manifest = artifact::manifest_from_bytes(name, manifest_json)?;
        artifact::verify_bytes(name, &manifest, WEIGHTS, weights)?;
        let label = Path::new(name).join(WEIGHTS);
        let (spec, arch) = (manifest.feature_spec.clone(), manifest.architecture.clone());
        let model = if manifest.quantization.is_some() {
            let w = crate::artifact::qweights::QuantWeights::from_bytes(weights, &label, &spec, &arch)?;
            Self::Int8(int8::Int8Model::new(spec, arch, w)?)
        } else {
            let weights = FloatWeights::from_bytes(weights, &label, &spec, &arch)?;
            Self::Float(FloatModel { spec, arch, weights })
        };
        Ok((manifest, model))
    }

    /// Bytes of tensors the loaded model holds.
    pub fn resident_bytes(&self) -> usize {
        match self {
            Self::Float(m) => {
                let w = &m.weights;
                4 * (w.embeddings.iter().map(|t| t.data.len()).sum::<usize>()
                    + w.dense.iter().map(|d| d.weight.len() + d.bias.len()).sum::<usize>())
            }
            Self::Int8(m) => m.resident_bytes(),
        }
    }
}

/// Fewest rows worth a thread of their own in [`Model::logits_threads`].
const MIN_ROWS_PER_THREAD: usize = 256;

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
        self.score(&cols.view())
    }

    /// Logits for borrowed columns.
    pub fn score(&self, cols: &ColumnsRef<'_>) -> Result<Vec<f32>> {
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

/// Encodes and scores `cols` in [`chunks`] (borrowed slices: nothing is copied per chunk).
pub fn score_in_chunks(
    spec: &FeatureSpec,
    cols: &ColumnsRef<'_>,
    score: impl Fn(&Encoded) -> Vec<f32>,
) -> Result<Vec<f32>> {
    cols.check(spec)?;
    let mut out = Vec::with_capacity(cols.rows);
    for r in chunks(cols.rows) {
        out.extend(score(&encode(spec, &cols.slice(r))));
    }
    Ok(out)
}

/// An embedding table whose rows can be written out as floats.
pub trait EmbeddingRows {
    /// Width of a row.
    fn dim(&self) -> usize;
    /// Writes row `i` into `out` (`dim` values).
    fn row_into(&self, i: usize, out: &mut [f32]);
}

impl EmbeddingRows for Table {
    fn dim(&self) -> usize {
        self.dim
    }
    fn row_into(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[i * self.dim..(i + 1) * self.dim]);
    }
}

impl EmbeddingRows for RowwiseTable {
    fn dim(&self) -> usize {
        self.dim
    }
    /// Dequantized on the fly: `code · scale + offset`, as [`RowwiseTable::dequantize`].
    fn row_into(&self, i: usize, out: &mut [f32]) {
        let (s, o) = (self.scale_offset[2 * i], self.scale_offset[2 * i + 1]);
        for (v, &q) in out.iter_mut().zip(&self.codes[i * self.dim..(i + 1) * self.dim]) {
            *v = f32::from(q) * s + o;
        }
    }
}

/// The float MLP input `[rows, Σ dims + numeric]`: each row's embedding rows, then its
/// normalized numeric features.
pub fn input_matrix<T: EmbeddingRows>(tables: &[T], enc: &Encoded, numeric: usize) -> Vec<f32> {
    let d = tables.iter().map(EmbeddingRows::dim).sum::<usize>() + numeric;
    let mut x = vec![0f32; enc.rows * d];
    for r in 0..enc.rows {
        let row = &mut x[r * d..(r + 1) * d];
        let mut off = 0;
        for (t, ids) in tables.iter().zip(&enc.ids) {
            t.row_into(ids[r] as usize, &mut row[off..off + t.dim()]);
            off += t.dim();
        }
        row[off..].copy_from_slice(&enc.numeric[r * numeric..(r + 1) * numeric]);
    }
    x
}

/// y = x · Wᵀ + b for x [m, in] row-major and W [out, in] row-major.
///
/// Every batch size takes the same SGEMM, whose sum for one output does not depend on the
/// other rows: a row scores bit for bit the same alone, in a coalesced batch or in a file
/// (a dot-product path for small batches was faster but summed in another order).
///
/// # Panics
/// When `x` holds fewer than `m · in` values or the layer's tensors do not match its shape.
pub fn dense_forward(x: &[f32], m: usize, layer: &crate::artifact::weights::Dense) -> Vec<f32> {
    let (k, n) = (layer.input, layer.output);
    assert!(x.len() >= m * k, "dense_forward: input holds {} values, expected {m} x {k}", x.len());
    assert!(
        layer.weight.len() == n * k && layer.bias.len() == n,
        "dense_forward: layer tensors do not match its shape {n} x {k}"
    );
    let mut y = Vec::with_capacity(m * n);
    for _ in 0..m {
        y.extend_from_slice(&layer.bias);
    }
    if m == 0 {
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

    #[test]
    fn append_concatenates_rows_and_refuses_other_columns() {
        let a = Columns { rows: 1, categorical: vec![Ids::Int(vec![1])], numeric: vec![vec![0.5]] };
        let b = Columns { rows: 2, categorical: vec![Ids::Int(vec![2, 3])], numeric: vec![vec![1.5, 2.5]] };
        let mut all = Columns::empty_like(&a, 3);
        all.append(&a).unwrap();
        all.append(&b).unwrap();
        assert_eq!(
            all,
            Columns { rows: 3, categorical: vec![Ids::Int(vec![1, 2, 3])], numeric: vec![vec![0.5, 1.5, 2.5]] }
        );
        let strings = Columns { rows: 1, categorical: vec![Ids::Str(vec!["x".into()])], numeric: vec![vec![0.0]] };
        assert!(all.append(&strings).is_err());
        assert_eq!(all.rows, 3, "nothing appended");
    }

    #[test]
    fn a_row_scores_the_same_alone_and_at_any_position_of_any_batch() {
        let (k, n) = (67, 37);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.53).sin()).collect();
        let layer = Dense { weight: w, bias: vec![0.125; n], input: k, output: n };
        let x: Vec<f32> = (0..300 * k).map(|i| (i as f32 * 0.29).cos() * 3.0).collect();
        let all = dense_forward(&x, 300, &layer);
        for (start, m) in [(0, 1), (17, 1), (5, 7), (100, 64), (250, 50)] {
            let part = dense_forward(&x[start * k..(start + m) * k], m, &layer);
            assert_eq!(part, all[start * n..(start + m) * n], "rows {start}..{}", start + m);
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
