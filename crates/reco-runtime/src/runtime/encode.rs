//! Encoding: raw columns to model inputs exactly as the feature spec says (vocabulary lookup,
//! 0 for an unknown value; `(x - mean) / std`), and the float MLP input built from them (each
//! row's embedding rows, then its normalized numbers, then the interaction term) for float and
//! INT8 tables alike.

use super::ColumnsRef;
use crate::artifact::manifest::Interaction;
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
    /// Dequantized on the fly: `code · scale + bias`, as [`RowwiseTable::dequantize`].
    fn row_into(&self, i: usize, out: &mut [f32]) {
        RowwiseTable::row_into(self, i, out);
    }
}

/// The float MLP input `[rows, Σ dims + numeric (+ 1)]`: each row's embedding rows, then its
/// normalized numeric features, then with [`Interaction::Dot`] the dot product of its first
/// two embedding rows ([`dot_f32`]).
pub fn input_matrix<T: EmbeddingRows>(
    tables: &[T],
    enc: &Encoded,
    numeric: usize,
    interaction: Interaction,
) -> Vec<f32> {
    let dot = match (interaction, tables) {
        (Interaction::Dot, [a, b, ..]) if a.dim() == b.dim() => Some(a.dim()),
        _ => None,
    };
    let d = tables.iter().map(EmbeddingRows::dim).sum::<usize>() + numeric + usize::from(dot.is_some());
    let mut x = vec![0f32; enc.rows * d];
    for r in 0..enc.rows {
        let row = &mut x[r * d..(r + 1) * d];
        let mut off = 0;
        for (t, ids) in tables.iter().zip(&enc.ids) {
            t.row_into(ids[r] as usize, &mut row[off..off + t.dim()]);
            off += t.dim();
        }
        row[off..off + numeric].copy_from_slice(&enc.numeric[r * numeric..(r + 1) * numeric]);
        if let Some(k) = dot {
            row[d - 1] = dot_f32(&row[..k], &row[k..2 * k]);
        }
    }
    x
}

/// `Σ a[i]·b[i]` in f32, one rounded product and one rounded sum at a time in index order,
/// starting from the first product (no fused multiply-add, no reassociation): what the ONNX
/// graph's `Mul`, `Split` and chain of `Add`s compute, to the bit. 0 for empty slices.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut products = a.iter().zip(b).map(|(&x, &y)| x * y);
    let first = products.next().unwrap_or(0.0);
    products.fold(first, |s, p| s + p)
}
