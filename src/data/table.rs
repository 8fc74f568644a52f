//! Tables as teams have them: one file, a glob, or a directory of Parquet/CSV files
//! (hive-partitioned `key=value/` folders add their keys as columns), UTF-8 or Latin-1 text,
//! with typed column accessors whose errors name the file, column, row and value.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use polars::prelude::*;

use crate::artifact::spec::Ids;
use crate::artifact::{sha256_bytes, sha256_file};
use crate::data::narrow;
use crate::data::schema::{Encoding, FileFormat, TableConfig, TimeUnit};
use crate::error::{Error, IoContext, Result, catch_panic, one_line};

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

/// How string timestamps that are not ISO-8601 are written.
const TIMESTAMP_FORMATS: &str = "unix seconds (or the recipe's timestamp_unit), ISO-8601 / RFC 3339 \
(2012-04-03T18:00:09Z, 2012-04-03T14:00:09-04:00), `2012-04-03 18:00:09` (UTC), `2012-04-03`, \
a Parquet/Arrow timestamp or date, or the recipe's timestamp_format";

impl Table {
    /// Reads one feature file or single-file table (Parquet or CSV by extension).
    pub fn file(path: &Path) -> Result<Self> {
        Self::read(path, &TableConfig { path: Some(path.to_path_buf()), ..TableConfig::default() })
    }

    /// Reads every file of a table's location: `location` is a file, a glob or a directory.
    pub fn read(location: &Path, cfg: &TableConfig) -> Result<Self> {
        let table = Self::read_with(location, |file| read_file(file, cfg), true)?;
        if table.df.height() == 0 {
            return Err(Error::input(format!("{}: table is empty, expected at least one row", table.name)));
        }
        Ok(table)
    }

    /// The columns a Parquet location's files have together, as [`Table::read`] would stack
    /// them (the same checks and errors: one type per column in every file, the same columns,
    /// no column a folder shadows), as a table without rows and without hashing the files.
    pub fn schema_of(location: &Path) -> Result<Self> {
        Self::read_with(location, read_parquet_schema, false)
    }

    /// A copy of this table's columns without rows, named `name`.
    pub fn empty_copy(&self, name: &str) -> Self {
        let mut t = Self::frame(self.df.clear(), name);
        t.file_types = self.file_types.clone();
        t
    }

    /// [`Table::read`] with each file read by `read` (`hash`: hash the files).
    fn read_with(location: &Path, read: impl Fn(&Path) -> Result<PartRead>, hash: bool) -> Result<Self> {
        let files = list_files(location)?;
        let hive_ints = hive_int_keys(&files);
        let base = literal_prefix(location);
        let mut frames = Vec::with_capacity(files.len());
        let mut parts = Vec::with_capacity(files.len());
        let mut listing = String::new();
        let single = files.len() == 1 && files[0].0 == location;
        let mut sha256 = String::new();
        let mut file_types = BTreeMap::new();
        for (file, hive) in &files {
            let PartRead { mut df, first_line, widened } = read(file)?;
            for (c, t) in widened {
                file_types.entry(c).or_insert(t);
            }
            for (k, v) in hive {
                if df.column(k).is_ok() {
                    return Err(Error::input(format!(
                        "{}: has a column `{k}` and sits in a `{k}={v}` folder: rename one (the folder's value would replace the column)",
                        file.display()
                    )));
                }
                let col = match v.parse::<i64>() {
                    Ok(i) if hive_ints.contains(k) => Column::new(k.as_str().into(), vec![i; df.height()]),
                    _ => Column::new(k.as_str().into(), vec![v.as_str(); df.height()]),
                };
                df.with_column(col).map_err(|e| part_error(file, &e))?;
            }
            let h = if hash { sha256_file(file)? } else { String::new() };
            listing.push_str(&format!("{}\0{h}\n", file.strip_prefix(&base).unwrap_or(file).display()));
            sha256 = h;
            parts.push(Part { path: file.clone(), rows: df.height(), first_line });
            frames.push(df);
        }
        check_part_types(&frames, &parts)?;
        // A CSV part without rows has no types of its own (every column reads as text):
        // stacked, it would turn the others' numbers into text.
        let typed: Vec<bool> = frames.iter().zip(&parts).map(|(f, p)| has_types(f, p)).collect();
        if typed.contains(&true) {
            frames = frames.into_iter().zip(typed).filter_map(|(f, t)| t.then_some(f)).collect();
        }
        let df = if frames.len() == 1 {
            frames.pop().unwrap_or_default()
        } else {
            let args = UnionArgs { to_supertypes: true, ..UnionArgs::default() };
            let lazy: Vec<LazyFrame> = frames.into_iter().map(IntoLazy::lazy).collect();
            concat(lazy, args).and_then(LazyFrame::collect).map_err(|e| {
                Error::input(format!(
                    "{}: its files do not share one schema ({})",
                    location.display(),
                    one_line(&e.to_string())
                ))
            })?
        };
        let name = location.display().to_string();
        let sha256 = if single { sha256 } else { sha256_bytes(listing.as_bytes()) };
        Ok(Self { df, parts, sha256, name, origin: None, file_types })
    }

    /// Rows `offset..offset + rows` of the Parquet file `path`, only `columns` (all present in
    /// the file): one row group of a split read a chunk at a time. Errors name the file's row.
    pub fn parquet_rows(path: &Path, offset: usize, rows: usize, columns: Vec<String>) -> Result<Self> {
        let read = narrow::read(path, Some((offset, rows)), Some(columns.as_slice()))?;
        let mut t = Self::frame(read.df, &path.display().to_string()).starting_at(offset);
        t.file_types = read.widened.into_iter().collect();
        Ok(t)
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

    /// The column is not of the expected kind: names the first value that is not (a text cell
    /// that does not parse as a number, a fraction where an integer goes), else the type.
    fn wrong_type(&self, name: &str, dt: &DataType, expected: &str) -> Error {
        match self.first_offender(name, expected == "an integer") {
            Some((row, v)) => Error::input(format!("{} is {v}, expected {expected}", self.at(name, row))),
            None => Error::input(format!("{}: column `{name}` has type {dt}, expected {expected}", self.name)),
        }
    }

    /// The first row whose value is not an integer (`integer`: one an int64 holds) or not a
    /// finite number (text such as `nan` or `inf` included).
    fn first_offender(&self, name: &str, integer: bool) -> Option<(usize, String)> {
        let col = self.df.column(name).ok()?;
        if col.dtype().is_string() {
            let ok = |v: &str| match integer {
                true => v.trim().parse::<i64>().is_ok(),
                false => v.trim().parse::<f64>().is_ok_and(f64::is_finite),
            };
            return col
                .str()
                .ok()?
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.filter(|v| !ok(v)).map(|v| (i, format!("{v:?}"))));
        }
        if col.dtype().is_float() && integer {
            let s = col.cast(&DataType::Float64).ok()?;
            return s
                .f64()
                .ok()?
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.filter(|&x| !is_int64(x)).map(|x| (i, x.to_string())));
        }
        None
    }

    fn null_error(&self, name: &str, row: usize, expected: &str) -> Error {
        Error::input(format!("{} is null, expected {expected}", self.at(name, row)))
    }

    /// An integer column as i64; nulls are an error.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        let col = self.column(name)?;
        // A float column whose every value is whole (ids exported as 5.0) reads as integers.
        let whole = col.dtype().is_float() && self.first_offender(name, true).is_none();
        if !col.dtype().is_integer() && !whole {
            return Err(self.wrong_type(name, col.dtype(), "an integer"));
        }
        if let Ok(ca) = col.as_materialized_series().u64()
            && let Some((i, v)) =
                ca.iter().enumerate().find_map(|(i, v)| v.filter(|&v| v > i64::MAX as u64).map(|v| (i, v)))
        {
            return Err(Error::input(format!(
                "{} is {v}, expected an integer of at most {} (ids and numbers are read as 64-bit signed integers)",
                self.at(name, i),
                i64::MAX
            )));
        }
        let s = col.strict_cast(&DataType::Int64).map_err(|e| {
            Error::input(format!(
                "{}: column `{name}` does not fit in an int64 ({})",
                self.name,
                one_line(&e.to_string())
            ))
        })?;
        let ca = s.i64().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter().enumerate().map(|(i, v)| v.ok_or_else(|| self.null_error(name, i, "an integer"))).collect()
    }

    fn cast_error(&self, name: &str, e: &PolarsError) -> Error {
        Error::input(format!("{}: column `{name}`: {}", self.name, one_line(&e.to_string())))
    }

    /// A numeric column as f64. Nulls are an error unless `allow_null` (then NaN); NaN and
    /// infinity are always an error.
    pub fn floats(&self, name: &str, allow_null: bool) -> Result<Vec<f64>> {
        let col = self.column(name)?;
        if !col.dtype().is_primitive_numeric() {
            let expected = if allow_null { "a number (or no value where it is unknown)" } else { "a number" };
            return Err(self.wrong_type(name, col.dtype(), expected));
        }
        let s = col.cast(&DataType::Float64).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.f64().map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = Vec::with_capacity(ca.len());
        for (i, v) in ca.iter().enumerate() {
            match v {
                Some(x) if x.is_finite() => out.push(x),
                Some(x) => {
                    let unknown = if allow_null { " (or no value where it is unknown)" } else { "" };
                    return Err(Error::input(format!(
                        "{} is {x}, expected a finite number{unknown}",
                        self.at(name, i)
                    )));
                }
                None if allow_null => out.push(f64::NAN),
                None => return Err(self.null_error(name, i, "a number")),
            }
        }
        Ok(out)
    }

    /// An id column in its own type: integers (any width) or strings (Utf8, categorical).
    pub fn ids(&self, name: &str) -> Result<Ids> {
        self.read_ids(name, false)
    }

    /// Like [`Table::ids`] for an attribute (category, segment, declared categorical): in a
    /// text column a missing value reads as the empty string, a category of its own.
    pub fn categories(&self, name: &str) -> Result<Ids> {
        self.read_ids(name, true)
    }

    fn read_ids(&self, name: &str, missing_as_empty: bool) -> Result<Ids> {
        let col = self.column(name)?;
        let dt = col.dtype();
        if dt.is_integer() || dt.is_float() {
            // Floats only when every value is whole (else `ints` names the first that is not).
            return self.ints(name).map(Ids::Int);
        }
        if !(dt.is_string() || dt.is_categorical() || dt.is_enum()) {
            return Err(self.wrong_type(name, dt, "integer or string ids"));
        }
        let s = col.cast(&DataType::String).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.str().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(v) => Ok(v.to_string()),
                None if missing_as_empty => Ok(String::new()),
                None => Err(self.null_error(name, i, "an id")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Ids::Str)
    }

    /// A timestamp column as unix seconds (floored), from integers or floats in `unit`,
    /// strings (ISO-8601 / RFC 3339, or `format`), or Parquet/Arrow datetimes and dates; with
    /// each row's UTC offset (seconds) when the column holds strings that carry offsets.
    pub fn timestamps(&self, name: &str, unit: TimeUnit, format: Option<&str>) -> Result<(Vec<i64>, Option<Vec<i32>>)> {
        let col = self.column(name)?;
        if let DataType::Datetime(_, Some(tz)) = col.dtype() {
            // A zoned datetime holds UTC instants; its zone gives the local offsets.
            let zone = tz.to_string().parse::<chrono_tz::Tz>().ok().filter(|z| *z != chrono_tz::UTC);
            let secs = self.numeric_timestamps(name, unit)?;
            let offsets = zone.map(|z| secs.iter().map(|&t| utc_offset_at(z, t)).collect());
            return Ok((secs, offsets));
        }
        if !col.dtype().is_string() {
            return self.numeric_timestamps(name, unit).map(|t| (t, None));
        }
        let ca = col.str().map_err(|e| Error::Internal(e.to_string()))?;
        let expected = match format {
            Some(f) => format!("a timestamp in the recipe's timestamp_format {f:?}"),
            None => format!("a timestamp: {TIMESTAMP_FORMATS}"),
        };
        let (mut secs, mut offsets, mut any_offset) =
            (Vec::with_capacity(ca.len()), Vec::with_capacity(ca.len()), false);
        for (i, v) in ca.iter().enumerate() {
            let v = v.ok_or_else(|| self.null_error(name, i, "a timestamp"))?;
            // A column mixing numbers and strings reads as strings: a number there is still
            // unix time in the recipe's unit.
            if format.is_none()
                && let Ok(n) = v.trim().parse::<i64>()
            {
                secs.push(n.div_euclid(unit.per_second()));
                offsets.push(0);
                continue;
            }
            let (t, off) = parse_timestamp(v, format)
                .ok_or_else(|| Error::input(format!("{} is {v:?}, expected {expected}", self.at(name, i))))?;
            secs.push(t);
            offsets.push(off.unwrap_or(0));
            any_offset |= off.is_some();
        }
        Ok((secs, any_offset.then_some(offsets)))
    }

    /// [`Table::timestamps`] of a numeric or temporal column.
    fn numeric_timestamps(&self, name: &str, unit: TimeUnit) -> Result<Vec<i64>> {
        let col = self.column(name)?;
        let per_unit = |tu: polars::prelude::TimeUnit| match tu {
            polars::prelude::TimeUnit::Nanoseconds => 1_000_000_000,
            polars::prelude::TimeUnit::Microseconds => 1_000_000,
            polars::prelude::TimeUnit::Milliseconds => 1_000,
        };
        match col.dtype().clone() {
            dt if dt.is_integer() => {
                let per = unit.per_second();
                Ok(self.ints(name)?.into_iter().map(|v| v.div_euclid(per)).collect())
            }
            dt if dt.is_float() => {
                let per = unit.per_second() as f64;
                Ok(self.floats(name, false)?.into_iter().map(|v| (v / per).floor() as i64).collect())
            }
            DataType::Datetime(tu, _) => {
                let per = per_unit(tu);
                let raw = self.physical_ints(name, col)?;
                Ok(raw.into_iter().map(|v| v.div_euclid(per)).collect())
            }
            DataType::Date => Ok(self.physical_ints(name, col)?.into_iter().map(|d| d * 86_400).collect()),
            dt => Err(self.wrong_type(name, &dt, "a timestamp (a number, a string or a datetime)")),
        }
    }

    /// The i64 physical values of a temporal column; nulls are an error.
    fn physical_ints(&self, name: &str, col: &Column) -> Result<Vec<i64>> {
        let s = col.to_physical_repr().cast(&DataType::Int64).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.i64().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter().enumerate().map(|(i, v)| v.ok_or_else(|| self.null_error(name, i, "a timestamp"))).collect()
    }
}

/// Whether a float is a whole number an int64 holds.
fn is_int64(x: f64) -> bool {
    // -2^63 ..= 2^63 - 1: the largest float below 2^63 is whole.
    x.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x)
}

/// The offset from UTC (seconds) of `tz` at unix second `t`.
pub fn utc_offset_at(tz: chrono_tz::Tz, t: i64) -> i32 {
    use chrono::{Offset, TimeZone};
    chrono::DateTime::from_timestamp(t, 0)
        .map_or(0, |d| tz.offset_from_utc_datetime(&d.naive_utc()).fix().local_minus_utc())
}

/// Unix seconds of a timestamp string, and its UTC offset in seconds when the string
/// carries one: `format` when given, else RFC 3339 / ISO-8601 with an offset, else a naive
/// `YYYY-MM-DD[ T]HH:MM:SS[.f]` or `YYYY-MM-DD` read as UTC.
pub fn parse_timestamp(v: &str, format: Option<&str>) -> Option<(i64, Option<i32>)> {
    let v = v.trim();
    let aware = |d: DateTime<chrono::FixedOffset>| (d.timestamp(), Some(d.offset().local_minus_utc()));
    let naive = |d: NaiveDateTime| (d.and_utc().timestamp(), None);
    let date = |d: NaiveDate| (d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp(), None);
    if let Some(f) = format {
        return DateTime::parse_from_str(v, f)
            .map(aware)
            .or_else(|_| NaiveDateTime::parse_from_str(v, f).map(naive))
            .or_else(|_| NaiveDate::parse_from_str(v, f).map(date))
            .ok();
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(v) {
        return Some(aware(d));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(d) = DateTime::parse_from_str(v, f) {
            return Some(aware(d));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(v, f) {
            return Some(naive(d));
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(date)
}

/// Hive keys whose every value is an integer (read as integers; the others as strings).
fn hive_int_keys(files: &[FileEntry]) -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeMap::<&str, bool>::new();
    for (_, keys) in files {
        for (k, v) in keys {
            let int = v.parse::<i64>().is_ok();
            all.entry(k).and_modify(|b| *b &= int).or_insert(int);
        }
    }
    all.into_iter().filter(|(_, int)| *int).map(|(k, _)| k.to_string()).collect()
}

/// The directory a location's files are named relative to in the table's hash: the location,
/// or a glob's leading components without wildcards.
fn literal_prefix(location: &Path) -> PathBuf {
    location.components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect()
}

/// What a column holds, as far as stacking the files of a table goes.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Strings, categoricals.
    Text,
    /// Integers and floats of any width.
    Number,
    /// Datetimes, dates, times, durations.
    Time,
    /// Anything else, by its type.
    Other(DataType),
}

impl Kind {
    /// The kind of a type; `None` for a column of nulls only (any kind).
    fn of(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Null => return None,
            dt if dt.is_string() || dt.is_categorical() || dt.is_enum() => Self::Text,
            dt if dt.is_primitive_numeric() => Self::Number,
            dt if dt.is_temporal() => Self::Time,
            dt => Self::Other(dt.clone()),
        })
    }
}

/// Refuses files of one table that do not stack: a file without a column the first has (or
/// with one it lacks), or a column of one kind in one file and of another in the next (ids
/// with letters in some files only would split one id into two; a Parquet timestamp in one
/// file and epoch numbers in another would be read in two units). CSV files without rows
/// have no types of their own and are only checked for their columns.
fn check_part_types(frames: &[DataFrame], parts: &[Part]) -> Result<()> {
    let Some(first) = frames.first() else { return Ok(()) };
    // The parts are stacked: each must have the first one's columns, no more, no fewer.
    for (df, part) in frames.iter().zip(parts).skip(1) {
        let missing = |a: &DataFrame, b: &DataFrame| b.columns().iter().find(|c| a.column(c.name()).is_err()).cloned();
        let (without, with, c) = match (missing(df, first), missing(first, df)) {
            (Some(c), _) => (part, &parts[0], c),
            (None, Some(c)) => (&parts[0], part, c),
            (None, None) => continue,
        };
        return Err(Error::input(format!(
            "{}: no column `{}`, which {} has: every file of a table must have the same columns",
            without.path.display(),
            c.name(),
            with.path.display()
        )));
    }
    let mut typed = frames.iter().zip(parts).filter(|(df, p)| has_types(df, p));
    let Some((first, first_part)) = typed.next() else { return Ok(()) };
    for (df, part) in typed {
        for c in df.columns() {
            let Ok(f) = first.column(c.name()) else { continue };
            if let (Some(a), Some(b)) = (Kind::of(c.dtype()), Kind::of(f.dtype()))
                && a != b
            {
                return Err(Error::input(format!(
                    "{}: column `{}` reads as {} here but as {} in {}: one column must have one type in every file",
                    part.path.display(),
                    c.name(),
                    c.dtype(),
                    f.dtype(),
                    first_part.path.display()
                )));
            }
        }
    }
    Ok(())
}

fn part_error(file: &Path, e: &PolarsError) -> Error {
    Error::input(format!("{}: {}", file.display(), one_line(&e.to_string())))
}

/// Rows per row group of a Parquet file and its top-level column names, from its footer as
/// arrow-rs decodes it (polars' decoder trusts list lengths in a corrupt footer and aborts the
/// process allocating tens of gigabytes; found by fuzzing).
pub(crate) fn parquet_footer(file: &Path) -> Result<(Vec<usize>, Vec<String>)> {
    use parquet::file::reader::FileReader;
    let bad = |detail: String| Error::input(format!("{}: not a readable Parquet file ({detail})", file.display()));
    let f = std::fs::File::open(file).at(file)?;
    catch_panic(
        || {
            let r = parquet::file::serialized_reader::SerializedFileReader::new(f)
                .map_err(|e| bad(one_line(&e.to_string())))?;
            let md = r.metadata();
            let groups = md.row_groups().iter().map(|g| usize::try_from(g.num_rows()).unwrap_or(0)).collect();
            let names = md
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            Ok((groups, names))
        },
        |panic| bad(format!("the reader failed: {panic}")),
    )
}

/// The content hash of a table location as [`Table::read`] computes it: a file's sha256, or
/// for a directory or glob the sha256 of the list of (path below it, sha256) of every part.
pub fn location_sha256(location: &Path) -> Result<String> {
    if location.is_file() {
        return sha256_file(location);
    }
    let base = literal_prefix(location);
    let mut listing = String::new();
    for (file, _) in list_files(location)? {
        let h = sha256_file(&file)?;
        listing.push_str(&format!("{}\0{h}\n", file.strip_prefix(&base).unwrap_or(&file).display()));
    }
    Ok(sha256_bytes(listing.as_bytes()))
}

/// A file of a table and its hive partition keys (`key=value` folders above it).
pub(crate) type FileEntry = (PathBuf, Vec<(String, String)>);

/// The files of a location with their hive partition keys (`key=value` folders below it),
/// sorted by path. Hidden files and `_`-prefixed ones (`_SUCCESS`) are skipped.
pub(crate) fn list_files(location: &Path) -> Result<Vec<FileEntry>> {
    let text = location.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        let mut files: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| Error::input(format!("{text}: not a valid glob ({e})")))?
            .filter_map(std::result::Result::ok)
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::input(format!("{text}: no file matches this glob")));
        }
        return Ok(files.into_iter().map(|f| (f, Vec::new())).collect());
    }
    if location.is_file() {
        return Ok(vec![(location.to_path_buf(), Vec::new())]);
    }
    if !location.is_dir() {
        return Err(Error::input(format!("{}: no such file or directory", location.display())));
    }
    let mut out = Vec::new();
    walk(location, &mut Vec::new(), &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() {
        return Err(Error::input(format!("{}: directory holds no .parquet or .csv file", location.display())));
    }
    Ok(out)
}

fn walk(dir: &Path, keys: &mut Vec<(String, String)>, out: &mut Vec<FileEntry>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).at(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let file_name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if file_name.starts_with(['.', '_']) {
            continue;
        }
        if p.is_dir() {
            let pushed = match file_name.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    keys.push((k.to_string(), v.to_string()));
                    true
                }
                _ => false,
            };
            walk(&p, keys, out)?;
            if pushed {
                keys.pop();
            }
        } else if format_of(&p).is_some() {
            out.push((p, keys.clone()));
        }
    }
    Ok(())
}

/// The format a file's extension implies.
fn format_of(path: &Path) -> Option<FileFormat> {
    let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
    match ext.as_str() {
        "parquet" | "pq" => Some(FileFormat::Parquet),
        "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
        _ => None,
    }
}

/// A Parquet file's columns without its rows (the same corrupt-file errors as a read).
fn read_parquet_schema(path: &Path) -> Result<PartRead> {
    parquet_footer(path)?;
    let read = narrow::read(path, Some((0, 0)), None)?;
    check_unique_names(&read.df, path)?;
    Ok(PartRead { df: read.df, first_line: None, widened: read.widened })
}

/// Whether a part's column types are its own: a Parquet file's always, a CSV file's when it
/// has rows (without any, every column reads as text).
fn has_types(df: &DataFrame, part: &Part) -> bool {
    part.first_line.is_none() || df.height() > 0
}

/// Reads one file of a table, with the line number of its first data row (CSV).
fn read_file(path: &Path, cfg: &TableConfig) -> Result<PartRead> {
    let format = cfg.format.or_else(|| format_of(path)).ok_or_else(|| {
        Error::input(format!("{}: unknown file type, expected .parquet or .csv (or set `format`)", path.display()))
    })?;
    let (df, first_line, widened) = match format {
        FileFormat::Parquet => {
            parquet_footer(path)?;
            let read = narrow::read(path, None, None)?;
            (read.df, None, read.widened)
        }
        FileFormat::Csv => {
            let header = cfg.header.unwrap_or(cfg.column_names.is_empty());
            let df = catch_panic(
                || read_csv(path, cfg, header),
                |panic| {
                    Error::input(format!("{}: not a readable CSV file (the reader failed: {panic})", path.display()))
                },
            )?;
            (df, Some(1 + usize::from(header)), Vec::new())
        }
    };
    check_unique_names(&df, path)?;
    Ok(PartRead { df, first_line, widened })
}

/// Two columns of one name are refused: which one a role maps to would be a guess. (Polars'
/// CSV reader renames the second `x` to `x_duplicated_0`.)
fn check_unique_names(df: &DataFrame, path: &Path) -> Result<()> {
    let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
    for n in &names {
        if let Some((base, k)) = n.rsplit_once("_duplicated_")
            && k.parse::<usize>().is_ok()
            && names.contains(&base)
        {
            return Err(Error::input(format!(
                "{}: has two columns named `{base}`; rename one (or map the one you mean with `columns`)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// A CSV file's text as UTF-8: decoded from Latin-1, or checked and without a byte-order mark.
fn csv_text(path: &Path, cfg: &TableConfig) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).at(path)?;
    Ok(match cfg.encoding {
        Encoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect::<String>().into_bytes(),
        Encoding::Utf8 => {
            // A byte-order mark would become part of the first column's name.
            let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
                Some(rest) => rest.to_vec(),
                None => bytes,
            };
            if let Err(e) = std::str::from_utf8(&bytes) {
                let at = e.valid_up_to();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(Error::input(format!(
                    "{}: line {line} is not valid UTF-8 (byte 0x{:02X}); set `encoding = \"latin-1\"` for this table in the recipe",
                    path.display(),
                    bytes[at]
                )));
            }
            bytes
        }
    })
}

/// Text whose lines end in a lone carriage return (classic Mac OS, some exports) with line
/// feeds instead: the CSV reader splits lines at line feeds only.
fn cr_to_lf(mut text: Vec<u8>) -> Vec<u8> {
    if text.contains(&b'\r') && !text.contains(&b'\n') {
        for b in &mut text {
            if *b == b'\r' {
                *b = b'\n';
            }
        }
    }
    text
}

/// Refuses a NUL byte (a binary or UTF-16 file, or a corrupt cell), naming its line, column and
/// cell: the CSV reader would cut the cell there.
fn refuse_nul(path: &Path, text: &[u8], sep: u8, names: &[String]) -> Result<()> {
    let Some(at) = text.iter().position(|&b| b == 0) else { return Ok(()) };
    let start = text[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = text[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let field = text[start..at].iter().filter(|&&b| b == sep).count();
    let from = text[..at].iter().rposition(|&b| b == sep || b == b'\n').map_or(0, |i| i + 1);
    let to = text[at..].iter().position(|&b| b == sep || b == b'\n' || b == b'\r').map_or(text.len(), |i| at + i);
    let cell = String::from_utf8_lossy(&text[from..to]);
    let column = names.get(field).map_or_else(|| format!("{}", field + 1), |n| format!("`{n}`"));
    Err(Error::input(format!(
        "{}: line {line} column {column} is {cell:?}, which holds a NUL byte: expected text (is the file UTF-16 or binary?)",
        path.display()
    )))
}

/// The column names of a CSV file as the reader names them: the first line (`header`) or
/// `column_names`.
fn csv_names(text: &[u8], sep: u8, header: bool, cfg: &TableConfig) -> Vec<String> {
    if !header {
        return cfg.column_names.clone();
    }
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    first.trim_end_matches('\r').split(char::from(sep)).map(|n| n.trim_matches('"').to_string()).collect()
}

fn read_csv(path: &Path, cfg: &TableConfig, header: bool) -> Result<DataFrame> {
    let text = cr_to_lf(csv_text(path, cfg)?);
    let tsv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    let sep = cfg.separator.as_deref().and_then(|s| s.bytes().next()).unwrap_or(if tsv { b'\t' } else { b',' });
    refuse_nul(path, &text, sep, &csv_names(&text, sep, header, cfg))?;
    let text_schema = (!cfg.text_columns.is_empty() && header).then(|| {
        Arc::new(Schema::from_iter(cfg.text_columns.iter().map(|n| Field::new(n.as_str().into(), DataType::String))))
    });
    let mut df = CsvReadOptions::default()
        .with_has_header(header)
        .with_infer_schema_length(None)
        .with_schema_overwrite(text_schema)
        .map_parse_options(|o| o.with_separator(sep))
        .into_reader_with_file_handle(Cursor::new(text))
        .finish()
        .map_err(|e| {
            Error::input(format!("{}: not a readable CSV file ({})", path.display(), one_line(&e.to_string())))
        })?;
    if !cfg.column_names.is_empty() {
        if cfg.column_names.len() != df.width() {
            return Err(Error::input(format!(
                "{}: has {} columns but column_names lists {} (is `separator` {:?} the file's?)",
                path.display(),
                df.width(),
                cfg.column_names.len(),
                char::from(sep)
            )));
        }
        df.set_column_names(&cfg.column_names).map_err(|e| part_error(path, &e))?;
    }
    Ok(df)
}

#[cfg(test)]
mod tests {
    use super::*;

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
