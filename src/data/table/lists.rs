//! Multi-valued columns: a list of ids per row, from a Parquet list column (integers or
//! strings) or a text column whose values a separator splits (`Animation|Children|Drama`).
//! Kept sparse as ids plus row offsets ([`IdLists`]), never one-hot, and written back to a
//! feature file as a polars list column.

use polars::prelude::*;

use super::Table;
use reco_runtime::artifact::spec::Ids;
use reco_runtime::error::{Error, Result};

/// The lists of one column: row `r` holds `ids[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdLists {
    /// `rows + 1` ascending offsets from 0.
    pub offsets: Vec<usize>,
    /// Every row's ids, in order.
    pub ids: Ids,
}

impl IdLists {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The first row holding more than `max` ids, with its length.
    pub fn longer_than(&self, max: usize) -> Option<(usize, usize)> {
        self.offsets.windows(2).enumerate().map(|(r, w)| (r, w[1] - w[0])).find(|&(_, n)| n > max)
    }

    /// The lists as a polars list column named `name` (`list[i64]` or `list[str]`).
    pub fn to_column(&self, name: &str) -> Column {
        let (rows, values) = (self.rows(), self.ids.len());
        let ca = match &self.ids {
            Ids::Int(v) => {
                let mut b = ListPrimitiveChunkedBuilder::<Int64Type>::new(name.into(), rows, values, DataType::Int64);
                for w in self.offsets.windows(2) {
                    b.append_slice(&v[w[0]..w[1]]);
                }
                b.finish()
            }
            Ids::Str(v) => {
                let mut b = ListStringChunkedBuilder::new(name.into(), rows, values);
                for w in self.offsets.windows(2) {
                    b.append_values_iter(v[w[0]..w[1]].iter().map(String::as_str));
                }
                b.finish()
            }
        };
        ca.into_series().into_column()
    }
}

impl Table {
    /// Column `name` as lists of ids. A list column (Parquet) gives its lists: a null list or
    /// a null id is an error, `[]` an empty list. With a `separator` (a raw table, as the
    /// recipe maps it), a text column is split at it, each piece trimmed of spaces, empty
    /// pieces dropped: a null or empty value is an empty list (how a CSV writes one); and an
    /// integer column gives one-id lists. Without one (a feature file, written by `prepare`
    /// with list columns), anything but a list column is an error.
    pub fn id_lists(&self, name: &str, separator: Option<char>) -> Result<IdLists> {
        let col = self.column(name)?;
        let Some(separator) = separator else {
            return match col.dtype() {
                DataType::List(inner) => self.list_column(name, col, inner),
                dt => Err(Error::input(format!(
                    "{}: column `{name}` has type {dt}, expected a list column (the model's input is multi-valued; `prepare` writes it as a Parquet list)",
                    self.name
                ))),
            };
        };
        match col.dtype() {
            DataType::List(inner) => self.list_column(name, col, inner),
            dt if dt.is_integer() => {
                let v = self.ints(name)?;
                Ok(IdLists { offsets: (0..=v.len()).collect(), ids: Ids::Int(v) })
            }
            dt if dt.is_string() || dt.is_categorical() || dt.is_enum() => {
                let s = col.cast(&DataType::String).map_err(|e| self.cast_error(name, &e))?;
                let ca = s.str().map_err(|e| Error::Internal(e.to_string()))?;
                let (mut offsets, mut ids) = (vec![0], Vec::new());
                for v in ca.iter() {
                    let pieces = v.unwrap_or("").split(separator).map(str::trim).filter(|p| !p.is_empty());
                    ids.extend(pieces.map(String::from));
                    offsets.push(ids.len());
                }
                Ok(IdLists { offsets, ids: Ids::Str(ids) })
            }
            dt => Err(self.wrong_type(name, dt, &format!("lists of ids or text separated by {separator:?}"))),
        }
    }

    /// A list column's lists (integers or strings inside).
    fn list_column(&self, name: &str, col: &Column, inner: &DataType) -> Result<IdLists> {
        let ints = inner.is_integer();
        if !(ints || inner.is_string() || inner.is_categorical() || inner.is_enum()) {
            return Err(Error::input(format!(
                "{}: column `{name}` holds lists of {inner}, expected lists of integer or string ids",
                self.name
            )));
        }
        let ca = col.list().map_err(|e| Error::Internal(e.to_string()))?;
        let (mut offsets, mut int_ids, mut str_ids) = (vec![0], Vec::new(), Vec::new());
        for (row, list) in ca.amortized_iter().enumerate() {
            let list = list.ok_or_else(|| self.null_error(name, row, "a list of ids (empty for none)"))?;
            let s = list.as_ref();
            if s.null_count() > 0 {
                return Err(Error::input(format!("{} holds a null id in its list", self.at(name, row))));
            }
            if ints {
                let s = s.strict_cast(&DataType::Int64).map_err(|e| self.cast_error(name, &e))?;
                int_ids.extend(s.i64().map_err(|e| Error::Internal(e.to_string()))?.iter().flatten());
            } else {
                let s = s.cast(&DataType::String).map_err(|e| self.cast_error(name, &e))?;
                let ca = s.str().map_err(|e| Error::Internal(e.to_string()))?;
                str_ids.extend(ca.iter().flatten().map(String::from));
            }
            offsets.push(int_ids.len() + str_ids.len());
        }
        Ok(IdLists { offsets, ids: if ints { Ids::Int(int_ids) } else { Ids::Str(str_ids) } })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table(col: Column) -> Table {
        let n = col.len();
        Table::frame(DataFrame::new(n, vec![col]).unwrap(), "venues.csv")
    }

    #[test]
    fn text_splits_at_the_separator_trimmed_and_a_missing_value_is_an_empty_list() {
        let t = table(Column::new("tags".into(), [Some("a|b"), Some(" c | a "), Some(""), None, Some("x||y|")]));
        let l = t.id_lists("tags", Some('|')).unwrap();
        assert_eq!(l.offsets, vec![0, 2, 4, 4, 4, 6]);
        assert_eq!(l.ids, Ids::Str(["a", "b", "c", "a", "x", "y"].map(String::from).to_vec()));
        assert_eq!(l.longer_than(1), Some((0, 2)));
        assert_eq!(l.longer_than(2), None);
        // Written as a list column and read back: the same lists.
        let back = table(l.to_column("tags")).id_lists("tags", None).unwrap();
        assert_eq!(back, l);
        let ints = IdLists { offsets: vec![0, 0, 3], ids: Ids::Int(vec![7, -1, 7]) };
        assert_eq!(table(ints.to_column("t")).id_lists("t", None).unwrap(), ints);
        // A feature file's column must already hold lists: text is not split there.
        let e = t.id_lists("tags", None).unwrap_err().to_string();
        assert!(e.contains("column `tags` has type str, expected a list column"), "{e}");
    }

    #[test]
    fn a_null_list_or_a_null_id_inside_one_is_an_error_naming_the_row() {
        let mut b = ListPrimitiveChunkedBuilder::<Int64Type>::new("tags".into(), 3, 3, DataType::Int64);
        b.append_slice(&[1, 2]);
        b.append_null();
        let t = table(b.finish().into_series().into_column());
        let e = t.id_lists("tags", Some('|')).unwrap_err().to_string();
        assert!(
            e.contains("column `tags`") && e.contains("row 1") && e.contains("is null, expected a list of ids"),
            "{e}"
        );
        let mut b = ListPrimitiveChunkedBuilder::<Int64Type>::new("tags".into(), 2, 3, DataType::Int64);
        b.append_slice(&[1]);
        b.append_opt_slice(Some(&[2]));
        b.append_series(&Series::new("".into(), [Some(3i64), None])).unwrap();
        let t = table(b.finish().into_series().into_column());
        let e = t.id_lists("tags", Some('|')).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("holds a null id"), "{e}");
        let floats = table(Column::new("f".into(), [1.5f64]));
        assert!(floats.id_lists("f", Some('|')).is_err());
    }
}
