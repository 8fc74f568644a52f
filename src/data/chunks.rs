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

use crate::artifact::spec::FeatureSpec;
use crate::data::features::{DISTANCE, FeatureFrame, POPULARITY};
use crate::data::table::{Table, list_files};
use crate::error::{Error, Result, catch_panic, one_line};
use crate::runtime::Columns;

/// Columns a chunk reads besides the spec's inputs and label, when the file has them.
const EXTRA: [&str; 4] = ["oracle_p", "query_id", POPULARITY, DISTANCE];

/// One row group of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The Parquet file.
    pub file: PathBuf,
    /// First row of the row group in its file.
    pub offset: usize,
    /// Rows in the row group.
    pub rows: usize,
    /// Index of its first row in the whole split.
    pub first: usize,
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
    /// Columns each chunk reads (those of the spec, label and [`EXTRA`] that the files have).
    columns: Vec<String>,
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
        let (mut chunks, mut rows, mut present) = (Vec::new(), 0usize, Vec::new());
        for (file, hive) in list_files(location)? {
            let parquet =
                file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
            if !parquet || hive.iter().any(|(k, _)| wanted.contains(k)) {
                return Ok(None);
            }
            let (groups, names) = row_groups(&file)?;
            for n in names {
                if wanted.contains(&n) && !present.contains(&n) {
                    present.push(n);
                }
            }
            let mut offset = 0;
            for g in groups.into_iter().filter(|&g| g > 0) {
                chunks.push(Chunk { file: file.clone(), offset, rows: g, first: rows });
                (offset, rows) = (offset + g, rows + g);
            }
        }
        if rows == 0 {
            return Err(Error::input(format!("{}: table is empty, expected at least one row", location.display())));
        }
        // Model order, so that a missing column is reported the way the whole-table reader does.
        let columns = wanted.into_iter().filter(|w| present.contains(w)).collect();
        Ok(Some(Self { location: location.to_path_buf(), chunks, rows, columns, need_label }))
    }

    /// Reads chunk `i`.
    pub fn read(&self, i: usize, spec: &FeatureSpec) -> Result<FeatureFrame> {
        let c = &self.chunks[i];
        let t = Table::parquet_rows(&c.file, c.offset, c.rows, self.columns.clone())?;
        FeatureFrame::from_table(&t, &c.file, spec, self.need_label)
    }
}

/// Rows per row group of a Parquet file and its top-level column names, from its footer.
pub(crate) fn row_groups(file: &Path) -> Result<(Vec<usize>, Vec<String>)> {
    use parquet::file::reader::FileReader;
    let bad = |detail: String| Error::input(format!("{}: not a readable Parquet file ({detail})", file.display()));
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
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
            let rest = FeatureFrame {
                columns: Columns { rows: frame.columns.rows, ..Columns::default() },
                ..frame.clone_rest()
            };
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

    /// Rows `idx` (ascending split indices) as columns.
    pub fn take(&self, spec: &FeatureSpec, idx: &[usize]) -> Result<Columns> {
        let mut out: Option<Columns> = None;
        self.for_each(spec, |frame, first| {
            let end = first + frame.columns.rows;
            let local: Vec<usize> = idx.iter().filter(|&&i| i >= first && i < end).map(|&i| i - first).collect();
            let part = frame.columns.take(&local);
            match &mut out {
                None => out = Some(part),
                Some(o) => o.append(&part)?,
            }
            Ok(())
        })?;
        out.ok_or_else(|| Error::Internal("take: a split without chunks".into()))
    }
}
