//! Reading and writing tables with polars, with one-line errors that name the file and column.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::artifact::tmp_path;
use crate::error::{Error, IoContext, Result, one_line};

/// The column types the pipeline distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any integer type, read as i64.
    Int,
    /// Any numeric type, read as f64; NaN and infinity are rejected.
    Float,
}

/// Finds `<dir>/<name>.parquet` or `<dir>/<name>.csv`.
pub fn find_table(dir: &Path, name: &str) -> Result<PathBuf> {
    for ext in ["parquet", "csv"] {
        let p = dir.join(format!("{name}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{}: no such directory (expected the raw tables users, places, interactions)",
            dir.display()
        )));
    }
    Err(Error::input(format!("{}: no table `{name}` (expected {name}.parquet or {name}.csv)", dir.display())))
}

/// Reads a whole Parquet or CSV file into a DataFrame; refuses an empty table.
pub fn read_table(path: &Path) -> Result<DataFrame> {
    if !path.exists() {
        return Err(Error::input(format!("{}: no such file", path.display())));
    }
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let df = if is_csv {
        CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| {
                Error::input(format!("{}: not a readable CSV file ({})", path.display(), one_line(&e.to_string())))
            })?
    } else {
        let file = File::open(path).at(path)?;
        ParquetReader::new(file).finish().map_err(|e| {
            Error::input(format!("{}: not a readable Parquet file ({})", path.display(), one_line(&e.to_string())))
        })?
    };
    if df.height() == 0 {
        return Err(Error::input(format!("{}: table is empty, expected at least one row", path.display())));
    }
    Ok(df)
}

/// Writes a DataFrame as Parquet (zstd) via a temporary file renamed into place.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).at(&tmp)?;
    ParquetWriter::new(file)
        .finish(df)
        .map_err(|e| Error::Internal(format!("writing {}: {}", path.display(), one_line(&e.to_string()))))?;
    std::fs::rename(&tmp, path).at(path)
}

/// True when the table has a column of that name.
pub fn has_column(df: &DataFrame, name: &str) -> bool {
    df.column(name).is_ok()
}

fn column<'a>(df: &'a DataFrame, path: &Path, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| {
        let present: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        Error::input(format!("{}: missing column `{name}` (present: {})", path.display(), present.join(", ")))
    })
}

fn check_kind(col: &Column, path: &Path, name: &str, kind: Kind) -> Result<()> {
    let dt = col.dtype();
    let ok = match kind {
        Kind::Int => dt.is_integer(),
        Kind::Float => dt.is_primitive_numeric(),
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Int => "an integer",
        Kind::Float => "a number",
    };
    Err(Error::input(format!("{}: column `{name}` has type {dt}, expected {expected}", path.display())))
}

/// Reads an integer column as i64; nulls are an error.
pub fn int_column(df: &DataFrame, path: &Path, name: &str) -> Result<Vec<i64>> {
    let col = column(df, path, name)?;
    check_kind(col, path, name, Kind::Int)?;
    let s = col
        .cast(&DataType::Int64)
        .map_err(|e| Error::input(format!("{}: column `{name}`: {}", path.display(), one_line(&e.to_string()))))?;
    let ca = s.i64().map_err(|e| Error::Internal(e.to_string()))?;
    ca.iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                Error::input(format!("{}: column `{name}` row {i} is null, expected an integer", path.display()))
            })
        })
        .collect()
}

/// Reads a numeric column as f64, rejecting nulls (unless `allow_null`, then NaN) and NaN/inf.
pub fn float_column(df: &DataFrame, path: &Path, name: &str, allow_null: bool) -> Result<Vec<f64>> {
    let col = column(df, path, name)?;
    check_kind(col, path, name, Kind::Float)?;
    let s = col
        .cast(&DataType::Float64)
        .map_err(|e| Error::input(format!("{}: column `{name}`: {}", path.display(), one_line(&e.to_string()))))?;
    let ca = s.f64().map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(ca.len());
    for (i, v) in ca.iter().enumerate() {
        match v {
            Some(x) if x.is_finite() => out.push(x),
            Some(x) => {
                return Err(Error::input(format!(
                    "{}: column `{name}` row {i} is {x}, expected a finite number",
                    path.display()
                )));
            }
            None if allow_null => out.push(f64::NAN),
            None => {
                return Err(Error::input(format!(
                    "{}: column `{name}` row {i} is null, expected a number",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Builds a DataFrame from named columns of equal length.
pub fn frame(height: usize, columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new(height, columns).map_err(|e| Error::Internal(one_line(&e.to_string())))
}

/// Converts a polars error inside a named stage into an internal error.
pub fn pl(stage: &str) -> impl Fn(PolarsError) -> Error + '_ {
    move |e| Error::Internal(format!("{stage}: {}", one_line(&e.to_string())))
}
