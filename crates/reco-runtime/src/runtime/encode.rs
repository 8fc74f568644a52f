//! Encoding: raw columns to model inputs exactly as the feature spec says (vocabulary lookup,
//! 0 for an unknown value; `(x - mean) / std`), and the float MLP input built from them (each
//! row's embedding rows, then its normalized numbers) for float and INT8 tables alike.

use super::ColumnsRef;
use crate::artifact::qweights::RowwiseTable;
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::Table;

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
