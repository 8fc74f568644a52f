//! Encoding: raw columns to model inputs exactly as the feature spec says (vocabulary lookup,
//! 0 for an unknown value; `(x - mean) / std`), and the float MLP input built from them (each
//! row's embedding rows — a multi-valued column's rows pooled — then its normalized numbers,
//! then the interaction term) for float and INT8 tables alike.

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
    /// Embedding row of each categorical value, one vector per column (a multi-valued
    /// column: all its rows' values, in order).
    pub ids: Vec<Vec<u32>>,
    /// Per categorical column, the `rows + 1` offsets (from 0) into `ids` of a multi-valued
    /// one, `None` otherwise; empty when no column is multi-valued.
    pub offsets: Vec<Option<Vec<usize>>>,
    /// Normalized numeric features, row-major [rows, numeric columns].
    pub numeric: Vec<f32>,
}

/// Applies the feature spec: vocabulary lookup (0 = OOV) and (x - mean) / std.
pub fn encode(spec: &FeatureSpec, cols: &ColumnsRef<'_>) -> Encoded {
    let ids = (spec.categorical.iter().zip(&cols.categorical).enumerate())
        .map(|(i, (c, values))| match cols.list(i) {
            Some(o) => c.rows_of_ref(values.slice(o[0]..o[o.len() - 1])),
            None => c.rows_of_ref(*values),
        })
        .collect();
    let offsets = if cols.lists.iter().any(Option::is_some) {
        (0..cols.categorical.len()).map(|i| cols.list(i).map(|o| o.iter().map(|&x| x - o[0]).collect())).collect()
    } else {
        Vec::new()
    };
    let k = spec.numeric.len();
    let mut numeric = vec![0f32; cols.rows * k];
    for (j, (n, values)) in spec.numeric.iter().zip(&cols.numeric).enumerate() {
        let normalize = n.normalizer();
        for (r, &v) in values.iter().enumerate() {
            numeric[r * k + j] = normalize(v);
        }
    }
    Encoded { rows: cols.rows, ids, offsets, numeric }
}

impl Encoded {
    /// The offsets of categorical column `c` when it is multi-valued.
    pub fn list(&self, c: usize) -> Option<&[usize]> {
        self.offsets.get(c).and_then(Option::as_deref)
    }

    /// How categorical column `c` pools, when it is multi-valued (its spec has a bag and these
    /// rows carry its lists).
    pub fn bag(&self, spec: &FeatureSpec, c: usize) -> Option<crate::artifact::spec::Bag> {
        spec.categorical.get(c).and_then(|s| s.bag).filter(|_| self.list(c).is_some())
    }

    /// The embedding rows of row `r` in categorical column `c`: one, or a list's.
    pub fn rows_at(&self, c: usize, r: usize) -> &[u32] {
        match self.list(c) {
            Some(o) => &self.ids[c][o[r]..o[r + 1]],
            None => std::slice::from_ref(&self.ids[c][r]),
        }
    }
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
    spec: &FeatureSpec,
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
    let mut scratch = vec![0f32; tables.iter().map(EmbeddingRows::dim).max().unwrap_or(0)];
    for r in 0..enc.rows {
        let row = &mut x[r * d..(r + 1) * d];
        let mut off = 0;
        for (c, (t, ids)) in tables.iter().zip(&enc.ids).enumerate() {
            let out = &mut row[off..off + t.dim()];
            match enc.bag(spec, c) {
                Some(bag) => bag.pool(enc.rows_at(c, r), out, &mut scratch[..t.dim()], |i, o| t.row_into(i, o)),
                None => t.row_into(ids[r] as usize, out),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::spec::{Bag, CategoricalSpec, Ids, Pooling};
    use crate::runtime::Columns;

    /// Ids 10 and 20 (rows 1 and 2) with rows [1, 2] and [3, 4]; the OOV row is [0.5, -1].
    fn table() -> Table {
        Table { data: vec![0.5, -1.0, 1.0, 2.0, 3.0, 4.0], rows: 3, dim: 2 }
    }

    fn spec(pooling: Pooling) -> FeatureSpec {
        let bag = Bag { max_values: 3, pooling };
        FeatureSpec {
            categorical: vec![CategoricalSpec::new("tags", vec![10, 20]).with_bag(bag)],
            numeric: vec![],
            label: "y".into(),
            sources: vec![],
        }
    }

    /// Lists [10, 20], [], [99] (unknown), [20], [20, 10, 20].
    fn columns() -> Columns {
        Columns {
            rows: 5,
            categorical: vec![Ids::Int(vec![10, 20, 99, 20, 20, 10, 20])],
            lists: vec![Some(vec![0, 2, 2, 3, 4, 7])],
            numeric: vec![],
        }
    }

    #[test]
    fn a_bag_block_pools_its_rows_in_order_and_an_empty_list_gives_zeros() {
        let cols = columns();
        for (pooling, want) in [
            (Pooling::Sum, [4.0, 6.0, 0.0, 0.0, 0.5, -1.0, 3.0, 4.0, 7.0, 10.0]),
            (Pooling::Mean, [2.0, 3.0, 0.0, 0.0, 0.5, -1.0, 3.0, 4.0, 7.0 / 3.0, 10.0 / 3.0]),
        ] {
            let spec = spec(pooling);
            cols.check(&spec).unwrap();
            let enc = encode(&spec, &cols.view());
            assert_eq!(enc.ids[0], vec![1, 2, 0, 2, 2, 1, 2]);
            assert_eq!(input_matrix(&spec, &[table()], &enc, 0, Interaction::None), want.to_vec(), "{pooling:?}");
        }
    }

    #[test]
    fn a_slice_of_lists_encodes_as_the_same_rows_of_the_whole() {
        let (spec, cols) = (spec(Pooling::Mean), columns());
        let whole = input_matrix(&spec, &[table()], &encode(&spec, &cols.view()), 0, Interaction::None);
        for (a, b) in [(0, 5), (1, 4), (2, 3), (4, 5), (3, 3)] {
            let view = cols.view().slice(a..b);
            view.check(&spec).unwrap();
            let part = input_matrix(&spec, &[table()], &encode(&spec, &view), 0, Interaction::None);
            assert_eq!(part, whole[2 * a..2 * b].to_vec(), "rows {a}..{b}");
            let owned = cols.slice(a, b);
            owned.view().check(&spec).unwrap();
            assert_eq!(input_matrix(&spec, &[table()], &encode(&spec, &owned.view()), 0, Interaction::None), part);
        }
        let picked = cols.take(&[4, 1, 0]);
        let m = input_matrix(&spec, &[table()], &encode(&spec, &picked.view()), 0, Interaction::None);
        assert_eq!(m, [&whole[8..10], &whole[2..4], &whole[0..2]].concat());
    }
}

/// The inputs of a TFLite graph of the model (`reco-cli export --format tflite`), by input
/// name in the graph's order: each categorical column's embedding row indices (`int32`, 0 for
/// an id never seen in training) and each numeric column's raw values (`float32`, fed as
/// `[rows, 1]`: the graph normalizes them itself).
#[derive(Debug, Clone, PartialEq)]
pub struct TfliteInputs {
    /// `(column, row indices)` per categorical column, in spec order.
    pub categorical: Vec<(String, Vec<i32>)>,
    /// `(column, raw values)` per numeric column, in spec order.
    pub numeric: Vec<(String, Vec<f32>)>,
}

/// [`TfliteInputs`] of `cols` (checked against the spec); a multi-valued column has no TFLite
/// form and is refused.
pub fn tflite_inputs(spec: &FeatureSpec, cols: &ColumnsRef<'_>) -> crate::error::Result<TfliteInputs> {
    cols.check(spec)?;
    if let Some(c) = spec.categorical.iter().find(|c| c.bag.is_some()) {
        return Err(crate::error::Error::input(format!(
            "column {:?} is multi-valued: TFLite graphs take single-valued columns only",
            c.name
        )));
    }
    let categorical = (spec.categorical.iter().zip(&cols.categorical))
        .map(|(c, values)| (c.name.clone(), c.rows_of_ref(*values).into_iter().map(|r| r as i32).collect()))
        .collect();
    let numeric = (spec.numeric.iter().zip(&cols.numeric)).map(|(n, v)| (n.name.clone(), v.to_vec())).collect();
    Ok(TfliteInputs { categorical, numeric })
}
