//! Tables as teams have them: one file, a glob, or a directory of Parquet/CSV files
//! (hive-partitioned `key=value/` folders add their keys as columns), UTF-8 or Latin-1 text,
//! with typed column accessors whose errors name the file, column, row and value.

mod files;
mod footer;
mod lists;
mod read;
mod time;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) use files::list_files;
pub use files::location_sha256;
pub(crate) use footer::parquet_footer;
pub use lists::IdLists;
use read::part_error;
pub use time::{parse_timestamp, utc_offset_at};

use polars::prelude::*;

use reco_runtime::error::{Error, Result, one_line};

/// A table read into memory, with where each of its rows came from.
pub struct Table {
    /// All parts, concatenated in path order.
    pub df: DataFrame,
    /// Each part's file and row count, in order.
    parts: Vec<Part>,
    /// sha256 of the file, or of the list of (path, sha256) of every part.
    pub sha256: String,
    /// The table as a user names it: its file, or its directory / glob.
    pub name: String,
    /// After [`Table::keep_rows`]: the original row of each remaining row.
    origin: Option<Vec<usize>>,
    /// Columns read as a wider type than their files hold (`i16`, `f16`, `u64`): that type.
    file_types: BTreeMap<String, String>,
}

/// One file of a table as read: its rows, the line of its first data row (CSV) and its columns
/// read as a wider type than the file holds (column, type in the file).
struct PartRead {
    df: DataFrame,
    first_line: Option<usize>,
    widened: Vec<(String, String)>,
}

/// One file of a table.
struct Part {
    path: PathBuf,
    rows: usize,
    /// Line number of the first data row (CSV), for error messages; `None`: Parquet.
    first_line: Option<usize>,
}

impl Table {
    /// A copy of this table's columns without rows, named `name`.
    pub fn empty_copy(&self, name: &str) -> Self {
        let mut t = Self::frame(self.df.clear(), name);
        t.file_types = self.file_types.clone();
        t
    }

    /// Rows gathered from the files `parts` (path, rows, in order) of the table `name`: row
    /// `i` of `df` is row `origin[i]` of the files concatenated (errors name its file and row).
    pub fn gathered(df: DataFrame, name: &str, parts: &[(PathBuf, usize)], origin: Vec<usize>, sha256: &str) -> Self {
        let parts =
            parts.iter().map(|(path, rows)| Part { path: path.clone(), rows: *rows, first_line: None }).collect();
        let (sha256, name, file_types) = (sha256.to_string(), name.to_string(), BTreeMap::new());
        Self { df, parts, sha256, name, origin: Some(origin), file_types }
    }

    /// This table with its columns cast to `schema`'s types where they differ (a part read
    /// alone, as the stacked table has it), named `name` in table-level errors.
    pub fn like(mut self, schema: &DataFrame, name: &str) -> Result<Self> {
        let mut cast = Vec::new();
        for c in self.df.columns() {
            if let Ok(want) = schema.column(c.name())
                && want.dtype() != c.dtype()
            {
                let path = self.parts.first().map_or(PathBuf::new(), |p| p.path.clone());
                if c.dtype() == &DataType::UInt64 {
                    // A uint64 beyond the int64s the other pieces hold: named, not cast to null.
                    self.ints(c.name())?;
                }
                cast.push(c.cast(want.dtype()).map_err(|e| part_error(&path, &e))?);
            }
        }
        for c in cast {
            self.df.with_column(c).map_err(|e| Error::Internal(e.to_string()))?;
        }
        self.name = name.to_string();
        Ok(self)
    }

    /// A frame already in memory (a split being fitted), named `name` in errors.
    pub fn frame(df: DataFrame, name: &str) -> Self {
        let parts = vec![Part { path: PathBuf::from(name), rows: df.height(), first_line: None }];
        Self { df, parts, sha256: String::new(), name: name.to_string(), origin: None, file_types: BTreeMap::new() }
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.df.height()
    }

    /// True when the table has a column of that name.
    pub fn has(&self, name: &str) -> bool {
        self.df.column(name).is_ok()
    }

    /// Keeps only `rows` (in that order); error locations still name the original rows.
    pub fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|&i| i as IdxSize).collect());
        self.df = self.df.take(&idx).map_err(|e| Error::Internal(e.to_string()))?;
        let origin: Vec<usize> = rows.iter().map(|&r| self.origin.as_ref().map_or(r, |o| o[r])).collect();
        self.origin = Some(origin);
        Ok(())
    }

    /// This table as rows `first..` of a larger one (error messages name those rows).
    pub fn starting_at(mut self, first: usize) -> Self {
        let h = self.df.height();
        self.parts = vec![Part { path: PathBuf::from(&self.name), rows: first + h, first_line: None }];
        self.origin = Some((first..first + h).collect());
        self
    }

    /// Keeps only the columns `names` (each present), in that order.
    pub fn keep_columns(&mut self, names: &[&str]) -> Result<()> {
        self.df = self.df.select(names.iter().copied()).map_err(|e| Error::Internal(one_line(&e.to_string())))?;
        Ok(())
    }

    /// The file of table row `row` and where it is there: `line N` (CSV) or `row N`
    /// (Parquet, 0-based).
    pub fn locate(&self, row: usize) -> (&Path, String) {
        let row = self.origin.as_ref().map_or(row, |o| o[row]);
        let mut r = row;
        for p in &self.parts {
            if r < p.rows {
                let at = p.first_line.map_or_else(|| format!("row {r}"), |l| format!("line {}", l + r));
                return (&p.path, at);
            }
            r -= p.rows;
        }
        (Path::new(&self.name), format!("row {row}"))
    }

    /// `<file>: column `name` line <n>` (or `row <r>`) for table row `row`.
    pub fn at(&self, name: &str, row: usize) -> String {
        let (p, at) = self.locate(row);
        format!("{}: column `{name}` {at}", p.display())
    }

    /// The column, or an error naming the table and the columns it has.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.df
            .column(name)
            .map_err(|_| Error::input(format!("{}: missing column `{name}` (present: {})", self.name, self.present())))
    }

    /// The table's column names, comma-separated (for "missing column" messages).
    pub fn present(&self) -> String {
        self.df.get_column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The column's type as polars shows it (`i64`, `str`, `datetime[ms, UTC]`), or as its
    /// files hold it where it is read wider (`i16`, `u8`, `f16`).
    pub fn dtype(&self, name: &str) -> Result<String> {
        let read = self.column(name)?.dtype().to_string();
        Ok(self.file_types.get(name).cloned().unwrap_or(read))
    }
}

#[cfg(test)]
mod tests {
    use super::time::*;
    use super::*;
    use crate::data::schema::{TableConfig, TimeUnit};
    use reco_runtime::artifact::spec::Ids;

    #[test]
    fn text_columns_keep_ids_that_look_like_numbers_and_whole_floats_read_as_ints() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.csv");
        std::fs::write(&p, "place_id,user_id\n0012345,5.0\n0099,7.0\n").unwrap();
        let cfg = TableConfig { text_columns: vec!["place_id".into()], ..TableConfig::default() };
        let t = Table::read(&p, &cfg).unwrap();
        assert_eq!(t.ids("place_id").unwrap(), Ids::Str(vec!["0012345".into(), "0099".into()]));
        assert_eq!(t.ids("user_id").unwrap(), Ids::Int(vec![5, 7]));
        // Without the hint, inference makes them integers (leading zeros gone).
        assert_eq!(Table::file(&p).unwrap().ids("place_id").unwrap(), Ids::Int(vec![12345, 99]));
    }

    /// Writes `columns` as one Parquet file with arrow-rs (whose writer keeps every width).
    fn arrow_parquet(path: &Path, columns: Vec<(&str, arrow::array::ArrayRef)>) {
        let batch = arrow::array::RecordBatch::try_from_iter(columns).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn every_arrow_integer_width_and_float16_reads_whole_in_pieces_and_as_a_schema() {
        use arrow::array::{
            ArrayRef, Float32Array, Int8Array, Int16Array, Int32Array, Int64Array, StringArray, UInt8Array,
            UInt16Array, UInt32Array, UInt64Array,
        };
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let half = Float32Array::from(vec![Some(1.5f32), None, Some(-2.25)]);
        let half = arrow::compute::cast(&half, &arrow::datatypes::DataType::Float16).unwrap();
        arrow_parquet(
            &p,
            vec![
                ("i8", Arc::new(Int8Array::from(vec![-128i8, 0, 127])) as ArrayRef),
                ("i16", Arc::new(Int16Array::from(vec![-32768i16, 1, 32767]))),
                ("i32", Arc::new(Int32Array::from(vec![i32::MIN, 2, i32::MAX]))),
                ("i64", Arc::new(Int64Array::from(vec![i64::MIN, 3, i64::MAX]))),
                ("u8", Arc::new(UInt8Array::from(vec![0u8, 4, 255]))),
                ("u16", Arc::new(UInt16Array::from(vec![Some(0u16), None, Some(65535)]))),
                ("u32", Arc::new(UInt32Array::from(vec![0u32, 6, u32::MAX]))),
                ("u64", Arc::new(UInt64Array::from(vec![0u64, 7, i64::MAX as u64]))),
                ("f16", half),
                ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
            ],
        );
        let t = Table::file(&p).unwrap();
        assert_eq!(t.ints("i8").unwrap(), [-128, 0, 127]);
        assert_eq!(t.ints("i16").unwrap(), [-32768, 1, 32767]);
        assert_eq!(t.ints("i32").unwrap(), [i32::MIN.into(), 2, i32::MAX.into()]);
        assert_eq!(t.ints("i64").unwrap(), [i64::MIN, 3, i64::MAX]);
        assert_eq!(t.ids("u8").unwrap(), Ids::Int(vec![0, 4, 255]));
        assert_eq!(t.ints("u32").unwrap(), [0, 6, u32::MAX.into()]);
        assert_eq!(t.ints("u64").unwrap(), [0, 7, i64::MAX]);
        let f = t.floats("f16", true).unwrap();
        assert_eq!((f[0], f[1].is_nan(), f[2]), (1.5, true, -2.25));
        assert!(t.ints("u16").unwrap_err().to_string().contains("`u16` row 1 is null"));
        // The source types as the file has them; the columns in file order.
        assert_eq!(
            (t.dtype("i16").unwrap(), t.dtype("u64").unwrap(), t.dtype("f16").unwrap()),
            ("i16".into(), "u64".into(), "f16".into())
        );
        assert_eq!((t.dtype("i32").unwrap(), t.dtype("name").unwrap()), ("i32".into(), "str".into()));
        assert_eq!(t.present(), "i8, i16, i32, i64, u8, u16, u32, u64, f16, name");
        // A piece (the streamed path) and a schema read the same types.
        let cols: Vec<String> = ["name", "i16", "f16"].iter().map(|s| s.to_string()).collect();
        let piece = Table::parquet_rows(&p, 1, 2, cols).unwrap();
        assert_eq!(piece.present(), "name, i16, f16");
        assert_eq!(piece.ints("i16").unwrap(), [1, 32767]);
        assert!(piece.floats("f16", false).unwrap_err().to_string().contains("`f16` row 1 is null"));
        let schema = Table::schema_of(&p).unwrap();
        assert_eq!((schema.height(), schema.dtype("i8").unwrap()), (0, "i8".to_string()));
        assert_eq!(schema.df.column("i8").unwrap().dtype(), &DataType::Int64);
    }

    #[test]
    fn a_uint64_beyond_int64_and_floats_beyond_it_are_named_with_their_row() {
        use arrow::array::{ArrayRef, UInt64Array};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        arrow_parquet(&p, vec![("id", Arc::new(UInt64Array::from(vec![1u64, u64::MAX])) as ArrayRef)]);
        let e = Table::file(&p).unwrap().ids("id").unwrap_err().to_string();
        assert!(
            e.contains("t.parquet: column `id` row 1 is 18446744073709551615")
                && e.contains("at most 9223372036854775807"),
            "{e}"
        );
        let df = DataFrame::new(2, vec![Column::new("id".into(), vec![1.0f64, 1e20])]).unwrap();
        let e = Table::frame(df, "f").ints("id").unwrap_err().to_string();
        assert!(e.contains("column `id` row 1 is 100000000000000000000"), "{e}");
    }

    #[test]
    fn csv_parts_with_cr_line_endings_or_no_rows_read_as_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "user_id,name\r1,x\r2,y\r").unwrap();
        std::fs::write(dir.path().join("b.csv"), "user_id,name\n").unwrap();
        std::fs::write(dir.path().join("c.csv"), "user_id,name\n3,z\n").unwrap();
        let t = Table::read(dir.path(), &TableConfig::default()).unwrap();
        assert_eq!(t.ids("user_id").unwrap(), Ids::Int(vec![1, 2, 3]));
        // Rows are still located in their own file and line.
        assert!(t.at("name", 2).ends_with("c.csv: column `name` line 2"), "{}", t.at("name", 2));
        assert!(t.at("name", 1).ends_with("a.csv: column `name` line 3"), "{}", t.at("name", 1));
        // A header-only part still needs the others' columns.
        std::fs::write(dir.path().join("b.csv"), "user_id\n").unwrap();
        let e = Table::read(dir.path(), &TableConfig::default()).err().unwrap().to_string();
        assert!(e.contains("b.csv: no column `name`, which") && e.contains("a.csv has"), "{e}");
    }

    #[test]
    fn a_nul_byte_and_a_nan_cell_are_named_by_line_column_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "id,lat\n1,2.5\n2,x\0y\n").unwrap();
        let e = Table::file(&p).err().unwrap().to_string();
        assert!(e.contains("t.csv: line 3 column `lat` is \"x\\0y\"") && e.contains("NUL"), "{e}");
        std::fs::write(&p, "id,lat\n1,2.5\n2,nan\n3,1.0\n").unwrap();
        let e = Table::file(&p).unwrap().floats("lat", true).unwrap_err().to_string();
        assert!(e.contains("column `lat` line 3 is") && e.to_lowercase().contains("nan"), "{e}");
    }

    #[test]
    fn parts_of_different_kinds_name_both_files_and_types_and_missing_columns_the_right_file() {
        use arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let ts = |a: ArrayRef| vec![("user_id", Arc::new(Int64Array::from(vec![1i64])) as ArrayRef), ("ts", a)];
        arrow_parquet(&dir.path().join("a.parquet"), ts(Arc::new(Int64Array::from(vec![1_767_571_200i64]))));
        arrow_parquet(&dir.path().join("b.parquet"), ts(Arc::new(TimestampMillisecondArray::from(vec![1i64]))));
        let e = Table::read(dir.path(), &TableConfig::default()).err().unwrap().to_string();
        assert!(
            e.contains("b.parquet: column `ts` reads as datetime[ms] here but as i64 in") && e.contains("a.parquet"),
            "{e}"
        );
        // The first file has a column the second lacks, and the second one the first lacks.
        arrow_parquet(
            &dir.path().join("b.parquet"),
            vec![("other", Arc::new(Int64Array::from(vec![1i64])) as ArrayRef)],
        );
        let e = Table::read(dir.path(), &TableConfig::default()).err().unwrap().to_string();
        assert!(e.contains("b.parquet: no column `user_id`, which") && e.contains("a.parquet has"), "{e}");
    }

    #[test]
    fn timestamp_strings_in_every_accepted_shape() {
        // 2012-04-03T18:00:09Z = 1333476009.
        let t = 1_333_476_009;
        for v in [
            "2012-04-03T18:00:09Z",
            "2012-04-03T18:00:09.000Z",
            "2012-04-03T14:00:09-04:00",
            "2012-04-03 18:00:09",
            "2012-04-03T18:00:09",
            " 2012-04-03 18:00:09+00:00 ",
        ] {
            assert_eq!(parse_timestamp(v, None).map(|p| p.0), Some(t), "{v}");
        }
        assert_eq!(parse_timestamp("2012-04-03", None), Some((t - 18 * 3600 - 9, None)));
        // The offset a string carries is its local time's.
        assert_eq!(parse_timestamp("2012-04-03T14:00:09-04:00", None), Some((t, Some(-4 * 3600))));
        assert_eq!(parse_timestamp("2012-04-03 18:00:09", None), Some((t, None)));
        // Foursquare's published format, with its own offset.
        let f = Some("%a %b %d %H:%M:%S %z %Y");
        assert_eq!(parse_timestamp("Tue Apr 03 18:00:09 +0000 2012", f), Some((t, Some(0))));
        for bad in ["2012-13-03T18:00:09Z", "yesterday", "", "1333476009"] {
            assert_eq!(parse_timestamp(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn numeric_and_temporal_timestamp_columns_become_unix_seconds() {
        let t = 1_333_476_009i64;
        let ms = Column::new("ms".into(), vec![t * 1000 + 999, -1]);
        let dt = ms
            .cast(&DataType::Datetime(polars::prelude::TimeUnit::Milliseconds, Some(TimeZone::UTC)))
            .unwrap()
            .with_name("dt".into());
        let naive = ms
            .cast(&DataType::Datetime(polars::prelude::TimeUnit::Milliseconds, None))
            .unwrap()
            .with_name("naive".into());
        let days = Column::new("days".into(), vec![15_433i32, 0]).cast(&DataType::Date).unwrap();
        let secs = Column::new("secs".into(), vec![t as f64 + 0.5, -0.5]);
        let df = DataFrame::new(2, vec![ms, dt, naive, days, secs]).unwrap();
        let table = Table::frame(df, "t");
        let read = |c: &str, unit| table.timestamps(c, unit, None).unwrap();
        // Floored, also below zero: -1 ms is the last second of 1969.
        assert_eq!(read("ms", TimeUnit::Milliseconds), (vec![t, -1], None));
        assert_eq!(read("dt", TimeUnit::Seconds), (vec![t, -1], None));
        assert_eq!(read("naive", TimeUnit::Seconds), (vec![t, -1], None));
        assert_eq!(read("days", TimeUnit::Seconds), (vec![15_433 * 86_400, 0], None));
        assert_eq!(read("secs", TimeUnit::Seconds), (vec![t, -1], None));
        let strings = Column::new("s".into(), vec!["2012-04-03T14:00:09-04:00", "2012-04-03 18:00:09"]);
        let table = Table::frame(DataFrame::new(2, vec![strings]).unwrap(), "t");
        // Per-row offsets where the strings carry one (0 where they do not).
        assert_eq!(table.timestamps("s", TimeUnit::Seconds, None).unwrap(), (vec![t, t], Some(vec![-4 * 3600, 0])));
    }
}
