//! The inference runtime serving systems link: load and verify an artifact, turn raw feature
//! rows into model inputs exactly as the manifest's feature spec says, and score them.
//!
//! No burn and no polars: dense layers run on our float kernels ([`kernels::float`]: weights
//! packed at load, bias and ReLU fused, a block of rows through every layer while it is in
//! cache), preprocessing is plain loops over columns. Scoring borrows its input ([`ColumnsRef`]: no copies per
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
use crate::kernels::float::{PackedF32, Rows, RowsMut};
use crate::kernels::{self, Kernel};

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
    /// Tensors as loaded (what the artifact holds). Scoring uses the packed copy of the dense
    /// layers made at construction: changing these afterwards changes no score; build a new
    /// model instead.
    pub weights: FloatWeights,
    /// The dense layers packed for the kernels.
    layers: Vec<PackedF32>,
    kernel: Kernel,
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
            return Err(Error::input(format!("dense input holds {} values, expected {rows} x {width}", x.len())));
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
            Self::Float(m) => {
                let w = &m.weights;
                4 * (w.embeddings.iter().map(|t| t.data.len()).sum::<usize>()
                    + w.dense.iter().map(|d| d.weight.len() + d.bias.len()).sum::<usize>())
                    + m.layers.iter().map(PackedF32::bytes).sum::<usize>()
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
        let model = Self::new(manifest.feature_spec.clone(), manifest.architecture.clone(), weights)?;
        Ok((manifest, model))
    }

    /// A model from its tensors, with the kernel [`Kernel::detect`] picks (`RECO_KERNEL`).
    pub fn new(spec: FeatureSpec, arch: Architecture, weights: FloatWeights) -> Result<Self> {
        Ok(Self::with_kernel(spec, arch, weights, Kernel::detect()?))
    }

    /// Same, with an explicit kernel (tests, benchmarks). Every kernel gives the same bits.
    pub fn with_kernel(spec: FeatureSpec, arch: Architecture, weights: FloatWeights, kernel: Kernel) -> Self {
        let layers = weights.dense.iter().map(pack).collect();
        Self { spec, arch, weights, layers, kernel }
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
        self.dense(&self.input_matrix(enc), enc.rows)
    }

    /// The dense layers alone on `m` rows of the MLP input ([`FloatModel::input_matrix`]):
    /// what a benchmark of the layers times.
    ///
    /// # Panics
    /// When `x` holds fewer than `m` rows of the input width.
    pub fn dense(&self, x: &[f32], m: usize) -> Vec<f32> {
        mlp(self.kernel, &self.layers, x, m)
    }
}

/// A layer packed for [`kernels::float`].
pub fn pack(d: &crate::artifact::weights::Dense) -> PackedF32 {
    PackedF32::new(&d.weight, &d.bias, d.output, d.input)
}

/// Rows per block in [`mlp`]: a block's activations (two buffers of 64 rows of the widest
/// layer: 64 KB at 128 channels) stay in L1/L2 between layers.
const MLP_BLOCK: usize = 64;

thread_local! {
    /// Reused activation buffers of [`mlp`] (two blocks of the widest layer).
    static MLP_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `layers` (ReLU between them, none after the last) on `m` rows of `x`, a block of
/// [`MLP_BLOCK`] rows at a time through every layer; returns `[m, n_last]`.
///
/// # Panics
/// When `layers` is empty or `x` holds fewer than `m` rows of the first layer's input width.
pub fn mlp(kernel: Kernel, layers: &[PackedF32], x: &[f32], m: usize) -> Vec<f32> {
    run_layers(kernel, layers, x, m, false)
}

/// [`mlp`], with a ReLU after the last layer too when `relu_last`.
pub(crate) fn run_layers(kernel: Kernel, layers: &[PackedF32], x: &[f32], m: usize, relu_last: bool) -> Vec<f32> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        panic!("mlp: no layers");
    };
    let k0 = first.k();
    assert!(x.len() >= m * k0, "mlp: input holds {} values, expected {m} x {k0}", x.len());
    let width = layers.iter().map(PackedF32::np).max().unwrap_or(0);
    let (n_out, np) = (last.n(), last.np());
    let mut out = Vec::with_capacity(m * n_out);
    let mut scratch = MLP_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.resize(2 * MLP_BLOCK * width, 0.0);
    let (a, b) = scratch.split_at_mut(MLP_BLOCK * width);
    for start in (0..m).step_by(MLP_BLOCK) {
        let rows = MLP_BLOCK.min(m - start);
        let (mut src, mut dst) = (&mut *a, &mut *b);
        for (i, layer) in layers.iter().enumerate() {
            let relu = i + 1 < layers.len() || relu_last;
            let input = if i == 0 {
                Rows { data: &x[start * k0..(start + rows) * k0], stride: k0, rows }
            } else {
                Rows { data: src, stride: layers[i - 1].np(), rows }
            };
            kernels::float::dense_f32(kernel, input, layer, relu, RowsMut { data: dst, stride: layer.np() });
            std::mem::swap(&mut src, &mut dst);
        }
        for r in 0..rows {
            out.extend_from_slice(&src[r * np..r * np + n_out]);
        }
    }
    MLP_SCRATCH.with(|s| *s.borrow_mut() = scratch);
    out
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

/// y = x · Wᵀ + b for x [m, in] row-major and W [out, in] row-major (the layer packed for
/// this call; a model packs its layers once at load).
///
/// Each output is the same sequential fused multiply-add sum for every batch size and kernel
/// ([`kernels::float`]): a row scores bit for bit the same alone, in a coalesced batch or in
/// a file.
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
    mlp(Kernel::best(), std::slice::from_ref(&pack(layer)), x, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::spec::Ids;
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

    /// A float model with random weights (two id columns, three numbers, hidden [70, 33]) and
    /// `rows` random input rows, some ids unknown.
    fn float_model(kernel: Kernel, rows: usize) -> (FloatModel, Columns) {
        use crate::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};
        let mut rng = crate::rng::Rng::new(17);
        let mut r = |n: usize, s: f64| -> Vec<f32> { (0..n).map(|_| (rng.normal() * s) as f32).collect() };
        let spec = FeatureSpec {
            categorical: (0..2)
                .map(|i| CategoricalSpec::with_vocabulary(format!("c{i}"), Vocabulary::Int((0..20).collect())))
                .collect(),
            numeric: (0..3).map(|i| NumericSpec { name: format!("n{i}"), mean: 0.5, std: 2.0 }).collect(),
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture { embedding_dims: vec![4, 8], hidden: vec![70, 33], activation: "relu".into() };
        let tables = [4usize, 8].map(|d| Table { data: r(21 * d, 1.0), rows: 21, dim: d }).to_vec();
        let dense = arch
            .layer_shapes(&spec)
            .iter()
            .map(|&(k, n)| Dense { weight: r(n * k, 0.4), bias: r(n, 0.2), input: k, output: n })
            .collect();
        let model = FloatModel::with_kernel(spec, arch, FloatWeights { embeddings: tables, dense }, kernel);
        let ids = |r: &mut dyn FnMut(usize, f64) -> Vec<f32>| {
            Ids::Int(r(rows, 1.0).iter().map(|v| (v.abs() * 12.0) as i64).collect())
        };
        let categorical = vec![ids(&mut r), ids(&mut r)];
        let numeric = (0..3).map(|_| r(rows, 3.0)).collect();
        (model, Columns { rows, categorical, numeric })
    }

    /// The float model's forward pass in f64, layer by layer (no blocks, no packing).
    fn forward_f64(model: &FloatModel, x: &[f32], rows: usize) -> Vec<f64> {
        let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let last = model.weights.dense.len() - 1;
        for (li, d) in model.weights.dense.iter().enumerate() {
            let mut y = vec![0f64; rows * d.output];
            for r in 0..rows {
                for c in 0..d.output {
                    let s: f64 = (0..d.input).map(|i| h[r * d.input + i] * f64::from(d.weight[c * d.input + i])).sum();
                    let v = s + f64::from(d.bias[c]);
                    y[r * d.output + c] = if li < last { v.max(0.0) } else { v };
                }
            }
            h = y;
        }
        h
    }

    #[test]
    fn float_models_give_the_same_bits_on_every_kernel_and_through_the_dense_entry() {
        let rows = 300; // several blocks of the layer-fused loop, and a partial one
        let (reference, cols) = float_model(Kernel::Scalar, rows);
        let want = reference.logits(&cols).unwrap();
        let x = reference.input_matrix(&encode(&reference.spec, &cols.view()));
        for (got, exact) in want.iter().zip(forward_f64(&reference, &x, rows)) {
            assert!((f64::from(*got) - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{got} vs {exact}");
        }
        assert!(want.iter().any(|&v| v != want[0]), "logits vary across rows");
        for kernel in Kernel::available() {
            let (model, _) = float_model(kernel, rows);
            assert_eq!(model.logits(&cols).unwrap(), want, "{}", kernel.name());
            assert_eq!(model.dense(&x, rows), want, "{} dense entry", kernel.name());
            let m = Model::Float(model);
            assert_eq!(m.dense(&m.input_matrix(&cols.view()).unwrap(), rows).unwrap(), want);
            assert!(m.dense(&x[1..], rows).is_err(), "a short input is an error, not a panic");
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
