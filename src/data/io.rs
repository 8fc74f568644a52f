//! Writing tables with polars and finding the default table files; reading is
//! [`crate::data::table`].

use std::path::{Path, PathBuf};

use polars::prelude::*;

use reco_runtime::error::{Error, Result, one_line};

/// Finds `<dir>/<name>.parquet` or `<dir>/<name>.csv`: `None` when the directory has
/// neither; both is ambiguous (an error), and so is a missing directory.
pub fn find_table(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> =
        ["parquet", "csv"].iter().map(|ext| dir.join(format!("{name}.{ext}"))).filter(|p| p.exists()).collect();
    if let Some(d) = found.iter().find(|p| !p.is_file()) {
        return Err(Error::input(format!("{}: is a directory, expected the {name} table as a file", d.display())));
    }
    if found.len() > 1 {
        return Err(Error::input(format!(
            "{}: holds both {name}.parquet and {name}.csv; remove one or name the file with [data.{name}] path",
            dir.display()
        )));
    }
    if let Some(p) = found.into_iter().next() {
        return Ok(Some(p));
    }
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{}: no such directory (expected the raw tables users, places, interactions)",
            dir.display()
        )));
    }
    Ok(None)
}

/// A failed write: the operating system's error (a full disk, a read-only file system) is an
/// I/O error naming the destination; anything else is polars' fault. Polars passes the
/// Parquet writer's I/O errors on as text, so an `(os error N)` in the message counts too.
pub(crate) fn write_error(path: &Path, e: PolarsError) -> Error {
    if let PolarsError::IO { error, .. } = &e {
        return Error::io(path, std::io::Error::new(error.kind(), error.to_string()));
    }
    let msg = e.to_string();
    match os_error_code(&msg) {
        Some(code) => Error::io(path, std::io::Error::from_raw_os_error(code)),
        None => Error::Internal(format!("writing {}: {}", path.display(), one_line(&msg))),
    }
}

/// The `N` of the last `(os error N)` in a message.
fn os_error_code(msg: &str) -> Option<i32> {
    let (_, rest) = msg.rsplit_once("(os error ")?;
    rest.split_once(')')?.0.parse().ok()
}

/// Rows per Parquet row group: the unit that splits larger than memory are read and
/// shuffled in ([`crate::data::chunks`]).
pub const ROW_GROUP_ROWS: usize = 1 << 14;

/// Writes a DataFrame as Parquet (zstd, [`ROW_GROUP_ROWS`] per row group) via a temporary file
/// renamed into place.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    reco_runtime::artifact::write_atomic(path, |file| {
        ParquetWriter::new(file)
            .with_row_group_size(Some(ROW_GROUP_ROWS))
            .finish(df)
            .map(drop)
            .map_err(|e| write_error(path, e))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_while_writing_parquet_is_an_io_error_naming_the_destination() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let e = PolarsError::IO { error: std::sync::Arc::new(enospc), msg: None };
        let err = write_error(Path::new("/out/features/train.parquet"), e);
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("/out/features/train.parquet: ") && msg.contains("No space left"), "{msg}");
    }

    #[test]
    fn a_real_write_onto_a_full_device_says_so() {
        // /dev/full answers every write with ENOSPC.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut df = df!("a" => [1i64, 2, 3]).unwrap_or_default();
        let file = std::fs::File::options().write(true).open(full).unwrap_or_else(|e| panic!("{e}"));
        let err = ParquetWriter::new(file).finish(&mut df).map(drop).map_err(|e| write_error(full, e));
        assert!(matches!(err, Err(Error::Io { .. })), "{err:?}");
    }
}
