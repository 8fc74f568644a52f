//! Where a table's parts are: a file, a glob, or a directory walked in path order
//! (hive-partitioned `key=value/` folders add their keys), and the content hash of them all.

use std::path::{Path, PathBuf};

use crate::data::schema::FileFormat;
use reco_runtime::artifact::{sha256_bytes, sha256_file};
use reco_runtime::error::{Error, IoContext, Result};

/// Hive keys whose every value is an integer (read as integers; the others as strings).
pub(super) fn hive_int_keys(files: &[FileEntry]) -> std::collections::BTreeSet<String> {
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
pub(super) fn literal_prefix(location: &Path) -> PathBuf {
    location.components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect()
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
pub(super) fn format_of(path: &Path) -> Option<FileFormat> {
    let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
    match ext.as_str() {
        "parquet" | "pq" => Some(FileFormat::Parquet),
        "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
        _ => None,
    }
}
