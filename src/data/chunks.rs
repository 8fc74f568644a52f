//! Feature splits read a row group at a time, so that memory does not grow with the data.
//!
//! A split (a Parquet file, or a directory or glob of parts, as `prepare` or the Spark job
//! writes it) is listed as row-group [`Chunk`]s from the files' footers. [`Split::for_each`]
//! hands its rows to a closure one chunk at a time, in file order; [`Chunks::read`] reads any
//! one chunk, which is what shuffled training needs. Errors name the file and the row within
//! it. A split that cannot be read this way (CSV, or a model input held in `key=value`
//! folders) is read whole, as are splits a caller wants whole ([`Split::open`]'s
//! `max_rows_in_memory`).

use std::path::{Path, PathBuf};

use crate::data::features::{DISTANCE, FeatureFrame, POPULARITY};
use crate::data::io::ROW_GROUP_ROWS;
use crate::data::table::{Table, list_files, parquet_footer};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::Columns;

/// Rows of a split held in memory whole by default (`train.max_rows_in_memory`; quantize,
/// which scores its test split once per fallback step).
pub const MAX_ROWS_IN_MEMORY: usize = 1_000_000;

/// Columns a chunk reads besides the spec's inputs and label, when the file has them.
const EXTRA: [&str; 4] = ["oracle_p", "query_id", POPULARITY, DISTANCE];

/// One row group of one file, or a piece of [`ROW_GROUP_ROWS`] rows of a larger one.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The Parquet file.
    pub file: PathBuf,
    /// First row of the chunk in its file.
    pub offset: usize,
    /// Rows in the chunk.
    pub rows: usize,
    /// Index of its first row in the whole split.
    pub first: usize,
    /// Columns to read (those of the spec, label and [`EXTRA`] that its file has).
    columns: Vec<String>,
}

/// A split listed as row groups.
#[derive(Debug, Clone)]
pub struct Chunks {
    /// The split as the user named it.
    pub location: PathBuf,
    /// Row groups in file order.
    pub chunks: Vec<Chunk>,
    /// Rows in all.
    pub rows: usize,
    /// Whether the label must be present.
    need_label: bool,
}

impl Chunks {
    /// Lists `location`'s row groups; `None` when the split must be read whole (a part that is
    /// not Parquet, or a model input or label held in a `key=value` folder).
    pub fn list(location: &Path, spec: &FeatureSpec, need_label: bool) -> Result<Option<Self>> {
        let mut wanted: Vec<String> = spec.input_names().iter().map(|s| s.to_string()).collect();
        wanted.push(spec.label.clone());
        for extra in EXTRA {
            if !wanted.iter().any(|w| w == extra) {
                wanted.push(extra.to_string());
            }
        }
        let (mut chunks, mut rows) = (Vec::new(), 0usize);
        for (file, hive) in list_files(location)? {
            let parquet =
                file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
            if !parquet || hive.iter().any(|(k, _)| wanted.contains(k)) {
                return Ok(None);
            }
            let (groups, names) = parquet_footer(&file)?;
            // This file's columns, in model order: one it lacks is reported as missing, naming it.
            let columns: Vec<String> = wanted.iter().filter(|w| names.contains(w)).cloned().collect();
            // Row groups written by bytes (Spark's) can hold a million rows: read in pieces
            // of about ROW_GROUP_ROWS.
            for (offset, n) in pieces(&groups, ROW_GROUP_ROWS) {
                let columns = columns.clone();
                chunks.push(Chunk { file: file.clone(), offset, rows: n, first: rows, columns });
                rows += n;
            }
        }
        if rows == 0 {
            return Err(Error::input(format!("{}: table is empty, expected at least one row", location.display())));
        }
        Ok(Some(Self { location: location.to_path_buf(), chunks, rows, need_label }))
    }

    /// Reads chunk `i`.
    pub fn read(&self, i: usize, spec: &FeatureSpec) -> Result<FeatureFrame> {
        let c = &self.chunks[i];
        let t = Table::parquet_rows(&c.file, c.offset, c.rows, c.columns.clone())?;
        FeatureFrame::from_table(&t, &c.file, spec, self.need_label)
    }
}

/// A file's row groups (`groups`: rows in each) as pieces of about `target` rows, never
/// across a group boundary: `(first row in the file, rows)`, in order.
pub fn pieces(groups: &[usize], target: usize) -> Vec<(usize, usize)> {
    let (mut out, mut offset) = (Vec::new(), 0);
    for &g in groups {
        let piece = g.div_ceil((g / target.max(1)).max(1)).max(1);
        for start in (0..g).step_by(piece) {
            out.push((offset + start, (g - start).min(piece)));
        }
        offset += g;
    }
    out
}

/// A feature split, whole in memory or as row groups on disk.
pub enum Split {
    /// Read whole.
    Whole(FeatureFrame),
    /// Read a row group at a time.
    Chunked(Chunks),
}

impl Split {
    /// Opens `location`: row groups when it has more than `max_rows_in_memory` rows and can be
    /// read that way, the whole table otherwise (`0`: always row groups when possible).
    pub fn open(location: &Path, spec: &FeatureSpec, need_label: bool, max_rows_in_memory: usize) -> Result<Self> {
        match Chunks::list(location, spec, need_label)? {
            Some(c) if c.rows > max_rows_in_memory => Ok(Self::Chunked(c)),
            _ => Ok(Self::Whole(FeatureFrame::read(location, spec, need_label)?)),
        }
    }

    /// Rows in the split.
    pub fn rows(&self) -> usize {
        match self {
            Self::Whole(f) => f.columns.rows,
            Self::Chunked(c) => c.rows,
        }
    }

    /// Calls `f` on every chunk in order with the split index of its first row (a whole split
    /// is one chunk).
    pub fn for_each(&self, spec: &FeatureSpec, mut f: impl FnMut(&FeatureFrame, usize) -> Result<()>) -> Result<()> {
        match self {
            Self::Whole(frame) => f(frame, 0),
            Self::Chunked(c) => (0..c.chunks.len()).try_for_each(|i| f(&c.read(i, spec)?, c.chunks[i].first)),
        }
    }

    /// The labels of every row, in order (an error naming the split when it has none).
    pub fn labels(&self, spec: &FeatureSpec, path: &Path) -> Result<Vec<f32>> {
        let mut y = Vec::with_capacity(self.rows());
        self.for_each(spec, |frame, _| {
            y.extend_from_slice(frame.labels(path)?);
            Ok(())
        })?;
        Ok(y)
    }

    /// `score`'s values for every row, in order (one call per chunk).
    pub fn map_rows(
        &self,
        spec: &FeatureSpec,
        mut score: impl FnMut(&Columns) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.rows());
        self.for_each(spec, |frame, _| {
            out.extend(score(&frame.columns)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` on the model inputs of every chunk in order, and returns everything else of
    /// the split (labels, oracle, query ids, baseline columns) with no model inputs: what a
    /// scoring pass keeps of its rows.
    pub fn without_inputs(
        &self,
        spec: &FeatureSpec,
        mut f: impl FnMut(&Columns) -> Result<()>,
    ) -> Result<FeatureFrame> {
        let mut out: Option<FeatureFrame> = None;
        self.for_each(spec, |frame, _| {
            f(&frame.columns)?;
            let rest = frame.clone_rest();
            match &mut out {
                None => {
                    let mut first = rest;
                    first.reserve_rest(self.rows() - first.columns.rows);
                    out = Some(first);
                }
                Some(o) => o.append_rest(rest),
            }
            Ok(())
        })?;
        out.ok_or_else(|| Error::Internal("a split without chunks".into()))
    }

    /// Rows `idx` (ascending split indices) as columns; only the chunks holding one are read.
    pub fn take(&self, spec: &FeatureSpec, idx: &[usize]) -> Result<Columns> {
        let mut out: Option<Columns> = None;
        let mut add = |frame: &FeatureFrame, first: usize| -> Result<()> {
            let part = frame.columns.take(&local_rows(idx, first, frame.columns.rows));
            match &mut out {
                None => out = Some(part),
                Some(o) => o.append(&part)?,
            }
            Ok(())
        };
        match self {
            Self::Whole(frame) => add(frame, 0)?,
            Self::Chunked(c) => {
                for (i, chunk) in c.chunks.iter().enumerate() {
                    if !local_rows(idx, chunk.first, chunk.rows).is_empty() {
                        add(&c.read(i, spec)?, chunk.first)?;
                    }
                }
            }
        }
        out.ok_or_else(|| Error::Internal("take: no row asked for".into()))
    }
}

/// The indices of `idx` in `first..first + rows`, shifted to start at 0.
pub fn local_rows(idx: &[usize], first: usize, rows: usize) -> Vec<usize> {
    idx.iter().filter(|&&i| i >= first && i < first + rows).map(|&i| i - first).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use polars::prelude::*;

    use super::*;
    use reco_runtime::artifact::spec::{CategoricalSpec, Ids, NumericSpec};

    #[test]
    fn a_large_row_group_is_read_in_pieces_that_cover_it_in_order_and_name_their_rows() {
        let n = 3 * ROW_GROUP_ROWS + 5;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        let mut label: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let bad_row = 2 * ROW_GROUP_ROWS + 7;
        let write = |label: &[f32]| {
            let user: Vec<i64> = (0..n as i64).collect();
            let mut df = df!("user_id" => user, "x" => vec![1f32; n], "label" => label).unwrap();
            // One row group of every row, as a writer sizing groups by bytes makes them.
            let file = std::fs::File::create(&path).unwrap();
            ParquetWriter::new(file).with_row_group_size(Some(n)).finish(&mut df).unwrap();
        };
        write(&label);
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", vec![1, 2])],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        let chunks = Chunks::list(&path, &spec, true).unwrap().unwrap();
        assert_eq!(chunks.chunks.len(), 3, "{:?}", chunks.chunks);
        assert_eq!(chunks.rows, n);
        let mut users = Vec::new();
        for (i, c) in chunks.chunks.iter().enumerate() {
            assert_eq!((c.first, c.offset), (users.len(), users.len()));
            let frame = chunks.read(i, &spec).unwrap();
            assert_eq!(frame.columns.rows, c.rows);
            let Ids::Int(u) = &frame.columns.categorical[0] else { panic!("ids") };
            users.extend_from_slice(u);
        }
        assert_eq!(users, (0..n as i64).collect::<Vec<_>>(), "every row once, in file order");

        label[bad_row] = 2.0;
        write(&label);
        let e = chunks.read(2, &spec).unwrap_err().to_string();
        assert!(e.contains("part.parquet") && e.contains(&format!("`label` row {bad_row}")), "{e}");
    }
}
