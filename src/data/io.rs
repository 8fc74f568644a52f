//! Writing tables with polars and finding the default table files; reading is
//! [`crate::data::table`].

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::artifact::tmp_path;
use crate::error::{Error, IoContext, Result, one_line};

/// Finds `<dir>/<name>.parquet` or `<dir>/<name>.csv` (both is ambiguous: an error).
pub fn find_table(dir: &Path, name: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> =
        ["parquet", "csv"].iter().map(|ext| dir.join(format!("{name}.{ext}"))).filter(|p| p.is_file()).collect();
    if found.len() > 1 {
        return Err(Error::input(format!(
            "{}: holds both {name}.parquet and {name}.csv; remove one or name the file with [data.{name}] path",
            dir.display()
        )));
    }
    if let Some(p) = found.into_iter().next() {
        return Ok(p);
    }
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{}: no such directory (expected the raw tables users, places, interactions)",
            dir.display()
        )));
    }
    Err(Error::input(format!("{}: no table `{name}` (expected {name}.parquet or {name}.csv)", dir.display())))
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

/// Builds a DataFrame from named columns of equal length.
pub fn frame(height: usize, columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new(height, columns).map_err(|e| Error::Internal(one_line(&e.to_string())))
}

/// Converts a polars error inside a named stage into an internal error.
pub fn pl(stage: &str) -> impl Fn(PolarsError) -> Error + '_ {
    move |e| Error::Internal(format!("{stage}: {}", one_line(&e.to_string())))
}
