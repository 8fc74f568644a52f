//! Raw input columns in the feature spec's order: owned ([`Columns`]: a parsed request, a
//! file read) or borrowed ([`ColumnsRef`]: what every scoring function takes, so slicing rows
//! never copies), and the check that they fit a spec (an [`ErrorKind::InputColumn`] error
//! naming what differs).

use crate::artifact::spec::{FeatureSpec, IdType, Ids, IdsRef};
use crate::error::{Error, ErrorKind, Result};

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
            return Err(Error::new(ErrorKind::InputColumn, "appended columns differ in number or id type"));
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
    id_types: impl ExactSizeIterator<Item = IdType>,
    numeric: usize,
    mut lens: impl Iterator<Item = usize>,
) -> Result<()> {
    let categorical = id_types.len();
    if categorical != spec.categorical.len() || numeric != spec.numeric.len() {
        return Err(Error::new(
            ErrorKind::InputColumn,
            format!(
                "got {categorical} categorical and {numeric} numeric columns, the model expects {} and {}",
                spec.categorical.len(),
                spec.numeric.len()
            ),
        ));
    }
    if lens.any(|l| l != rows) {
        return Err(Error::new(ErrorKind::InputColumn, "input columns have different lengths"));
    }
    for (c, t) in spec.categorical.iter().zip(id_types) {
        if t != c.dtype() {
            return Err(Error::new(
                ErrorKind::InputColumn,
                format!("column `{}` holds {t} ids, the model expects {} ids", c.name, c.dtype()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = all.append(&strings).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (ErrorKind::InputColumn, "appended columns differ in number or id type".into())
        );
        assert_eq!(all.rows, 3, "nothing appended");
    }
}
