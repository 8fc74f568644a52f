//! Reading a table: every part of a location (CSV in UTF-8 or Latin-1, Parquet, narrow Arrow
//! types widened), its parts checked against each other (the same columns, each of one kind),
//! concatenated in path order with where each row came from.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use polars::prelude::*;

use super::files::{format_of, hive_int_keys, list_files, literal_prefix};
use super::footer::parquet_footer;
use super::{Part, PartRead, Table};
use crate::data::narrow;
use crate::data::schema::{Encoding, FileFormat, TableConfig};
use reco_runtime::artifact::{sha256_bytes, sha256_file};
use reco_runtime::error::{Error, IoContext, Result, catch_panic, one_line};

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

pub(super) fn part_error(file: &Path, e: &PolarsError) -> Error {
    Error::input(format!("{}: {}", file.display(), one_line(&e.to_string())))
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

/// A Parquet file's columns without its rows (the same corrupt-file errors as a read).
fn read_parquet_schema(path: &Path) -> Result<PartRead> {
    parquet_footer(path)?;
    let read = narrow::read(path, Some((0, 0)), None)?;
    check_unique_names(&read.df, path)?;
    Ok(PartRead { df: read.df, first_line: None, widened: read.widened })
}
