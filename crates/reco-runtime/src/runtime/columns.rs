//! Raw input columns in the feature spec's order: owned ([`Columns`]: a parsed request, a
//! file read) or borrowed ([`ColumnsRef`]: what every scoring function takes, so slicing rows
//! never copies), and the check that they fit a spec (an [`ErrorKind::InputColumn`] error
//! naming what differs).
//!
//! A multi-valued column is kept sparse, as ids plus row offsets (CSR): its `categorical` entry
//! holds every row's ids one after another and its `lists` entry the offsets, row `r` owning
//! ids `offsets[r]..offsets[r + 1]`.

use std::ops::Range;

use crate::artifact::spec::{FeatureSpec, Ids, IdsRef};
use crate::error::{Error, ErrorKind, Result};

/// Raw input columns in the feature spec's order (categorical ids in their original type,
/// unnormalized numbers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// Number of rows.
    pub rows: usize,
    /// One column per categorical column of the spec, integers or strings as its `dtype` says
    /// (a multi-valued column: all its rows' ids in order).
    pub categorical: Vec<Ids>,
    /// Per categorical column, the `rows + 1` offsets (from 0) of a multi-valued one, `None`
    /// for one id per row; may be empty when no column is multi-valued.
    pub lists: Vec<Option<Vec<usize>>>,
    /// One vector per numeric column of the spec.
    pub numeric: Vec<Vec<f32>>,
}

impl Columns {
    /// The offsets of categorical column `c` when it is multi-valued.
    pub fn list(&self, c: usize) -> Option<&[usize]> {
        self.lists.get(c).and_then(Option::as_deref)
    }

    /// Rows `start..end` as a new set of columns.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        let mut out = self.take_with(|c, o| match o {
            Some(o) => (c.slice(o[start]..o[end]), Some(o[start..=end].iter().map(|&x| x - o[start]).collect())),
            None => (c.slice(start..end), None),
        });
        out.rows = end - start;
        out.numeric = self.numeric.iter().map(|c| c[start..end].to_vec()).collect();
        out
    }

    /// Rows picked by index, in that order.
    pub fn take(&self, idx: &[usize]) -> Self {
        let mut out = self.take_with(|c, o| match o {
            Some(o) => {
                let (ids, offsets) = take_lists(c, o, idx.iter().map(|&i| Some(i)));
                (ids, Some(offsets))
            }
            None => (c.take(idx), None),
        });
        out.rows = idx.len();
        out.numeric = self.numeric.iter().map(|c| idx.iter().map(|&i| c[i]).collect()).collect();
        out
    }

    /// The categorical columns (and offsets) mapped by `f`; no rows, no numeric columns.
    fn take_with(&self, f: impl Fn(&Ids, Option<&[usize]>) -> (Ids, Option<Vec<usize>>)) -> Self {
        let (categorical, lists): (Vec<Ids>, Vec<Option<Vec<usize>>>) =
            self.categorical.iter().enumerate().map(|(i, c)| f(c, self.list(i))).unzip();
        Self { rows: 0, categorical, lists: lists_or_none(lists), numeric: Vec::new() }
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
        let lists = like.lists.iter().map(|l| l.as_ref().map(|_| vec![0])).collect();
        let numeric = like.numeric.iter().map(|_| Vec::with_capacity(capacity)).collect();
        Self { rows: 0, categorical, lists, numeric }
    }

    /// Appends the rows of `other`, which must have the same columns and id types (checked:
    /// an error names the first column that differs, and nothing is appended).
    pub fn append(&mut self, other: &Columns) -> Result<()> {
        let same = self.categorical.len() == other.categorical.len()
            && self.numeric.len() == other.numeric.len()
            && self.categorical.iter().zip(&other.categorical).all(|(a, b)| a.id_type() == b.id_type())
            && (0..self.categorical.len()).all(|c| self.list(c).is_some() == other.list(c).is_some());
        if !same {
            return Err(Error::new(ErrorKind::InputColumn, "appended columns differ in number or id type"));
        }
        for (c, (dst, src)) in self.categorical.iter_mut().zip(&other.categorical).enumerate() {
            // A list column: only the ids its offsets cover, the offsets rebased onto `dst`.
            let covered = match (self.lists.get_mut(c), other.list(c)) {
                (Some(Some(d)), Some(o)) if !o.is_empty() => {
                    let (first, base) = (o[0], dst.len());
                    d.extend(o[1..].iter().map(|&x| base + x - first));
                    first..o[o.len() - 1]
                }
                _ => 0..src.len(),
            };
            match (dst, src) {
                (Ids::Int(d), Ids::Int(v)) => d.extend_from_slice(&v[covered]),
                (Ids::Str(d), Ids::Str(v)) => d.extend_from_slice(&v[covered]),
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
            lists: self.lists.iter().map(Option::as_deref).collect(),
            numeric: self.numeric.iter().map(Vec::as_slice).collect(),
        }
    }

    /// Checks the column counts, lengths, id types and lists against a spec.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        self.view().check(spec)
    }
}

/// Per-column offsets as [`Columns::lists`] holds them: empty when no column is multi-valued.
pub fn lists_or_none(lists: Vec<Option<Vec<usize>>>) -> Vec<Option<Vec<usize>>> {
    if lists.iter().all(Option::is_none) { Vec::new() } else { lists }
}

/// The lists of rows `rows` (`None`: an empty list) of a multi-valued column (`ids` with
/// `offsets`), in that order: their ids and offsets from 0.
pub fn take_lists(
    ids: &Ids,
    offsets: &[usize],
    rows: impl Iterator<Item = Option<usize>> + Clone,
) -> (Ids, Vec<usize>) {
    let span = |r: Option<usize>| r.map_or(0..0, |i| offsets[i]..offsets[i + 1]);
    let values: Vec<usize> = rows.clone().flat_map(span).collect();
    let mut out = vec![0];
    for r in rows {
        out.push(out[out.len() - 1] + span(r).len());
    }
    (ids.take(&values), out)
}

/// Raw input columns borrowed from the caller (a server's parsed request, a data frame):
/// what every scoring function takes, so slicing rows never copies.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnsRef<'a> {
    /// Number of rows.
    pub rows: usize,
    /// One column per categorical column of the spec (a multi-valued one: all the ids its
    /// offsets point into).
    pub categorical: Vec<IdsRef<'a>>,
    /// Per categorical column, the `rows + 1` offsets of a multi-valued one into its ids (not
    /// necessarily from 0: a slice keeps the whole id column), `None` otherwise; may be empty
    /// when no column is multi-valued.
    pub lists: Vec<Option<&'a [usize]>>,
    /// One slice per numeric column of the spec.
    pub numeric: Vec<&'a [f32]>,
}

impl<'a> ColumnsRef<'a> {
    /// The offsets of categorical column `c` when it is multi-valued.
    pub fn list(&self, c: usize) -> Option<&'a [usize]> {
        self.lists.get(c).copied().flatten()
    }

    /// Rows `range`, still borrowed.
    pub fn slice(&self, range: Range<usize>) -> ColumnsRef<'a> {
        ColumnsRef {
            rows: range.len(),
            categorical: (self.categorical.iter().enumerate())
                .map(|(i, c)| if self.list(i).is_some() { *c } else { c.slice(range.clone()) })
                .collect(),
            lists: self.lists.iter().map(|l| l.map(|o| &o[range.start..=range.end])).collect(),
            numeric: self.numeric.iter().map(|c| &c[range.clone()]).collect(),
        }
    }

    /// Checks the column counts, lengths, id types and lists against a spec: a multi-valued
    /// column of the spec needs offsets (ascending, within its ids, no list longer than its
    /// `max_values`), any other column none.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        let (categorical, numeric) = (self.categorical.len(), self.numeric.len());
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
        if self.lists.len() > categorical {
            return Err(Error::new(ErrorKind::InputColumn, "more list offsets than categorical columns"));
        }
        let scalar_lens = (self.categorical.iter().enumerate())
            .filter(|(i, _)| self.list(*i).is_none())
            .map(|(_, c)| c.len())
            .chain(self.numeric.iter().map(|c| c.len()));
        let list_lens = (0..categorical).filter_map(|i| self.list(i)).map(|o| o.len().checked_sub(1));
        if scalar_lens.map(Some).chain(list_lens).any(|l| l != Some(self.rows)) {
            return Err(Error::new(ErrorKind::InputColumn, "input columns have different lengths"));
        }
        for (i, (c, values)) in spec.categorical.iter().zip(&self.categorical).enumerate() {
            let t = values.id_type();
            if t != c.dtype() {
                return Err(Error::new(
                    ErrorKind::InputColumn,
                    format!("column `{}` holds {t} ids, the model expects {} ids", c.name, c.dtype()),
                ));
            }
            check_list(c, self.list(i), values.len())?;
        }
        Ok(())
    }
}

/// A column's offsets against its spec: present exactly when the spec's column is
/// multi-valued, ascending, within the `ids` values, no list longer than `max_values`.
fn check_list(c: &crate::artifact::spec::CategoricalSpec, offsets: Option<&[usize]>, ids: usize) -> Result<()> {
    let fail = |why: String| Err(Error::new(ErrorKind::InputColumn, format!("column `{}`: {why}", c.name)));
    match (c.bag, offsets) {
        (None, None) => Ok(()),
        (Some(_), None) => fail("the model expects a list of ids per row".into()),
        (None, Some(_)) => fail("holds lists of ids, the model expects one id per row".into()),
        (Some(bag), Some(o)) => {
            if let Some(r) = o.windows(2).position(|w| w[1] < w[0]) {
                return fail(format!("list offsets decrease at row {r}"));
            }
            if o.last().is_some_and(|&l| l > ids) {
                return fail(format!("list offsets run past its {ids} ids"));
            }
            match o.windows(2).position(|w| w[1] - w[0] > bag.max_values) {
                Some(r) => fail(format!(
                    "row {r} holds {} ids, more than the model's max_values {}",
                    o[r + 1] - o[r],
                    bag.max_values
                )),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_concatenates_rows_and_refuses_other_columns() {
        let a = Columns { rows: 1, categorical: vec![Ids::Int(vec![1])], lists: Vec::new(), numeric: vec![vec![0.5]] };
        let b = Columns {
            rows: 2,
            categorical: vec![Ids::Int(vec![2, 3])],
            lists: Vec::new(),
            numeric: vec![vec![1.5, 2.5]],
        };
        let mut all = Columns::empty_like(&a, 3);
        all.append(&a).unwrap();
        all.append(&b).unwrap();
        assert_eq!(
            all,
            Columns {
                rows: 3,
                categorical: vec![Ids::Int(vec![1, 2, 3])],
                lists: Vec::new(),
                numeric: vec![vec![0.5, 1.5, 2.5]]
            }
        );
        let strings = Columns {
            rows: 1,
            categorical: vec![Ids::Str(vec!["x".into()])],
            lists: Vec::new(),
            numeric: vec![vec![0.0]],
        };
        let e = all.append(&strings).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (ErrorKind::InputColumn, "appended columns differ in number or id type".into())
        );
        assert_eq!(all.rows, 3, "nothing appended");
    }

    #[test]
    fn lists_append_take_and_check_against_the_spec() {
        use crate::artifact::spec::{Bag, CategoricalSpec, Pooling};
        let bag = Bag { max_values: 2, pooling: Pooling::Sum };
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("tags", vec![1, 2, 3]).with_bag(bag)],
            numeric: vec![],
            label: "y".into(),
            sources: vec![],
        };
        let lists = |ids: Vec<i64>, offsets: Vec<usize>| Columns {
            rows: offsets.len() - 1,
            categorical: vec![Ids::Int(ids)],
            lists: vec![Some(offsets)],
            numeric: vec![],
        };
        let mut all = lists(vec![1, 2], vec![0, 2, 2]);
        all.append(&lists(vec![3], vec![0, 0, 1])).unwrap();
        assert_eq!(all, lists(vec![1, 2, 3], vec![0, 2, 2, 2, 3]));
        // Offsets that start past 0 or end before the last id: only the ids they cover.
        let mut part = lists(vec![1], vec![0, 1]);
        part.append(&lists(vec![9, 2, 3, 9], vec![1, 3])).unwrap();
        assert_eq!(part, lists(vec![1, 2, 3], vec![0, 1, 3]));
        assert_eq!(all.take(&[3, 0]), lists(vec![3, 1, 2], vec![0, 1, 3]));
        assert_eq!(all.slice(1, 4), lists(vec![3], vec![0, 0, 0, 1]));
        all.check(&spec).unwrap();
        let fail = |c: &Columns| c.check(&spec).unwrap_err().to_string();
        assert_eq!(
            fail(&lists(vec![1, 2, 3], vec![0, 3])),
            "column `tags`: row 0 holds 3 ids, more than the model's max_values 2"
        );
        assert_eq!(fail(&lists(vec![1, 2], vec![0, 2, 1])), "column `tags`: list offsets decrease at row 1");
        assert_eq!(fail(&lists(vec![1], vec![0, 2])), "column `tags`: list offsets run past its 1 ids");
        let no_offsets =
            Columns { rows: 0, categorical: vec![Ids::Int(vec![])], lists: vec![Some(vec![])], numeric: vec![] };
        assert_eq!(fail(&no_offsets), "input columns have different lengths");
        let flat = Columns { rows: 1, categorical: vec![Ids::Int(vec![1])], lists: vec![], numeric: vec![] };
        assert_eq!(fail(&flat), "column `tags`: the model expects a list of ids per row");
        let e = flat.clone().append(&all).unwrap_err();
        assert_eq!(e.to_string(), "appended columns differ in number or id type");
    }
}
