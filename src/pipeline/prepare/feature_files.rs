//! `prepare`'s writing step, a chunk of rows at a time, so that memory holds one chunk of
//! features rather than a split: each split is featurized [`CHUNK_ROWS`] rows at a time and
//! appended to its Parquet file ([`write_split`]), and the feature spec is fitted from running
//! counts and sums, with a second pass over the written training file for the variance
//! ([`SpecFitter`]), in row order: the same spec, to the bit, as fitting the whole split.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use super::featurize::{self, FeatureContext, Layout, RowValues, Rows};
use crate::data::features::LABEL;
use crate::data::io::{ROW_GROUP_ROWS, write_error};
use crate::data::table::{Table, parquet_footer};
use reco_runtime::artifact::spec::{Bag, CategoricalSpec, FeatureSpec, Ids, NumericSpec, Vocabulary};
use reco_runtime::error::{Error, IoContext, Result};

/// Rows featurized at once.
pub const CHUNK_ROWS: usize = 8 * ROW_GROUP_ROWS;

/// Featurizes `rows` [`CHUNK_ROWS`] at a time (each chunk's [`RowValues`] from `values`, given
/// the chunk and the index of its first row)
/// into the Parquet file `path`; `each` sees every chunk's features with the index of its
/// first row. Returns the rows written.
pub fn write_split(
    rows: &Rows,
    fctx: &FeatureContext<'_>,
    path: &Path,
    values: impl Fn(&Rows, usize) -> Result<RowValues>,
    mut each: impl FnMut(&DataFrame, usize) -> Result<()>,
) -> Result<usize> {
    let mut out = SplitWriter::create(path)?;
    let mut start = 0;
    while start < rows.len() {
        let end = (start + CHUNK_ROWS).min(rows.len());
        let chunk = rows.slice(start..end);
        let df = featurize::features(&chunk, &values(&chunk, start)?, fctx)?;
        each(&df, start)?;
        out.push(&df)?;
        start = end;
    }
    out.finish(&rows.empty_like(), fctx)
}

/// One feature file written a chunk of features at a time, in row groups of
/// [`ROW_GROUP_ROWS`]; the file is created at once, its schema comes from the first chunk.
pub struct SplitWriter {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    writer: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    rows: usize,
}

impl SplitWriter {
    /// Creates `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = Some(std::fs::File::create(path).at(path)?);
        Ok(Self { path: path.to_path_buf(), file, writer: None, rows: 0 })
    }

    /// Appends `df`'s rows.
    pub fn push(&mut self, df: &DataFrame) -> Result<()> {
        let path = &self.path;
        if self.writer.is_none()
            && let Some(f) = self.file.take()
        {
            let w = ParquetWriter::new(f).with_row_group_size(Some(ROW_GROUP_ROWS));
            self.writer = Some(w.batched(df.schema()).map_err(|e| write_error(path, e))?);
        }
        if let Some(w) = self.writer.as_mut() {
            for off in (0..df.height()).step_by(ROW_GROUP_ROWS) {
                let mut group = df.slice(off as i64, ROW_GROUP_ROWS);
                group.rechunk_mut();
                w.write_batch(&group).map_err(|e| write_error(path, e))?;
            }
        }
        self.rows += df.height();
        Ok(())
    }

    /// Finishes a file that has rows; returns the rows written.
    pub fn close(self) -> Result<usize> {
        let Some(w) = self.writer else {
            return Err(Error::Internal(format!("{}: no rows to write", self.path.display())));
        };
        w.finish().map_err(|e| write_error(&self.path, e))?;
        Ok(self.rows)
    }

    /// Finishes the file (one without rows gets the schema of `empty`'s features). Returns
    /// the rows written.
    pub fn finish(mut self, empty: &Rows, fctx: &FeatureContext<'_>) -> Result<usize> {
        if self.writer.is_none() {
            let df = featurize::features(empty, &RowValues::empty(fctx)?, fctx)?;
            self.push(&df)?;
        }
        if let Some(w) = self.writer {
            w.finish().map_err(|e| write_error(&self.path, e))?;
        }
        Ok(self.rows)
    }
}

/// Value counts of one categorical column.
enum Counts {
    Int(BTreeMap<i64, usize>),
    Str(BTreeMap<String, usize>),
}

/// A numeric column's running sum (in row order, as `Iterator::sum` adds) and whether every
/// value so far equals the first.
struct Moments {
    name: String,
    sum: f64,
    n: usize,
    first: Option<f32>,
    constant: bool,
}

/// The feature spec of the training split, fitted a chunk at a time.
pub struct SpecFitter {
    categorical: Vec<(String, usize, Option<Bag>, Option<Counts>)>,
    /// Per categorical column, the shortest and longest list seen (multi-valued ones).
    list_lens: Vec<Option<(usize, usize)>>,
    numeric: Vec<Moments>,
}

impl SpecFitter {
    /// A fitter for the layout's columns.
    pub fn new(layout: &Layout) -> Self {
        Self {
            categorical: layout.categorical.iter().map(|(n, m, b)| (n.clone(), *m, *b, None)).collect(),
            list_lens: vec![None; layout.categorical.len()],
            numeric: layout
                .numeric
                .iter()
                .map(|n| Moments { name: n.clone(), sum: -0.0, n: 0, first: None, constant: true })
                .collect(),
        }
    }

    /// Adds a chunk of the training split's features, starting at its row `first`.
    pub fn add(&mut self, df: &DataFrame, first: usize) -> Result<()> {
        let t = Table::frame(df.clone(), "train split").starting_at(first);
        for ((name, _, bag, counts), lens) in self.categorical.iter_mut().zip(&mut self.list_lens) {
            let ids = if bag.is_some() {
                let l = t.id_lists(name, None)?;
                for w in l.offsets.windows(2) {
                    let n = w[1] - w[0];
                    *lens = Some(lens.map_or((n, n), |(a, b)| (a.min(n), b.max(n))));
                }
                l.ids
            } else {
                t.ids(name)?
            };
            match (ids, counts) {
                (Ids::Int(v), c @ None) => *c = Some(Counts::Int(count(v, BTreeMap::new()))),
                (Ids::Int(v), Some(Counts::Int(m))) => *m = count(v, std::mem::take(m)),
                (Ids::Str(v), c @ None) => *c = Some(Counts::Str(count(v, BTreeMap::new()))),
                (Ids::Str(v), Some(Counts::Str(m))) => *m = count(v, std::mem::take(m)),
                _ => return Err(Error::Internal(format!("{name}: id type changed between chunks"))),
            }
        }
        for m in &mut self.numeric {
            for v in t.floats(&m.name, false)? {
                let v = v as f32;
                m.sum += f64::from(v);
                m.n += 1;
                let first = *m.first.get_or_insert(v);
                m.constant &= v == first;
            }
        }
        Ok(())
    }

    /// Whether the column `name` holds at most one distinct value (`None`: not a column).
    pub fn constant(&self, name: &str) -> Option<bool> {
        if let Some(k) = self.categorical.iter().position(|c| c.0 == name) {
            let one_value = self.categorical[k].3.as_ref().is_none_or(|c| match c {
                Counts::Int(m) => m.len() <= 1,
                Counts::Str(m) => m.len() <= 1,
            });
            // Lists of one id and empty ones differ: the id's presence informs the model.
            let one_length = self.list_lens[k].is_none_or(|(a, b)| a == b);
            return Some(one_value && one_length);
        }
        self.numeric.iter().find(|m| m.name == name).map(|m| m.constant)
    }

    /// The spec: vocabularies from the counts, means from the sums, and the variance from a
    /// second pass over the training file `train` as written.
    pub fn finish(self, train: &Path) -> Result<FeatureSpec> {
        let means: Vec<f64> = self.numeric.iter().map(|m| m.sum / m.n.max(1) as f64).collect();
        let mut squares = vec![-0.0f64; self.numeric.len()];
        let names: Vec<String> = self.numeric.iter().map(|m| m.name.clone()).collect();
        let (groups, _) = parquet_footer(train)?;
        let mut offset = 0;
        for rows in groups {
            let t = Table::parquet_rows(train, offset, rows, names.clone())?;
            for ((name, mean), sq) in names.iter().zip(&means).zip(&mut squares) {
                for v in t.floats(name, false)? {
                    *sq += (f64::from(v as f32) - mean).powi(2);
                }
            }
            offset += rows;
        }
        let numeric = self
            .numeric
            .iter()
            .zip(means)
            .zip(squares)
            .map(|((m, mean), sq)| NumericSpec::from_moments(&m.name, mean, sq / m.n.max(1) as f64))
            .collect();
        let categorical = self
            .categorical
            .into_iter()
            .map(|(name, min_count, bag, counts)| {
                let keep = min_count.max(1);
                let vocabulary = match counts {
                    Some(Counts::Str(m)) => {
                        Vocabulary::Str(m.into_iter().filter(|e| e.1 >= keep).map(|e| e.0).collect())
                    }
                    Some(Counts::Int(m)) => {
                        Vocabulary::Int(m.into_iter().filter(|e| e.1 >= keep).map(|e| e.0).collect())
                    }
                    None => Vocabulary::Int(Vec::new()),
                };
                let spec = CategoricalSpec::with_vocabulary(name, vocabulary);
                match bag {
                    Some(b) => spec.with_bag(b),
                    None => spec,
                }
            })
            .collect();
        Ok(FeatureSpec { categorical, numeric, label: LABEL.to_string(), sources: Vec::new() })
    }
}

/// `counts` with every value of `values` counted once more.
fn count<T: Ord>(values: Vec<T>, mut counts: BTreeMap<T, usize>) -> BTreeMap<T, usize> {
    for v in values {
        *counts.entry(v).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::data::io::write_parquet;
    use reco_runtime::rng::Rng;

    #[test]
    fn the_spec_fitted_a_chunk_at_a_time_equals_the_whole_split_fit_to_the_bit() {
        let n = 3 * ROW_GROUP_ROWS + 77;
        let mut rng = Rng::new(3);
        let user: Vec<i64> = (0..n).map(|_| rng.below(40_000) as i64 - 20_000).collect();
        let cat: Vec<String> = (0..n).map(|_| format!("c{}", rng.below(7))).collect();
        let x: Vec<f32> = (0..n).map(|_| (rng.next_u64() % 10_000) as f32 * 0.37 - 1234.5).collect();
        let zero = vec![0f32; n];
        let mut df = df!("user_id" => &user, "category" => &cat, "x" => &x, "zero" => &zero).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train.parquet");
        write_parquet(&mut df, &train).unwrap();

        let layout = Layout {
            categorical: vec![("user_id".into(), 3, None), ("category".into(), 1, None)],
            numeric: vec!["x".into(), "zero".into()],
        };
        let mut fitter = SpecFitter::new(&layout);
        for (start, len) in [(0, 1000), (1000, 2 * ROW_GROUP_ROWS), (1000 + 2 * ROW_GROUP_ROWS, n)] {
            fitter.add(&df.slice(start as i64, len), start).unwrap();
        }
        assert_eq!(
            (fitter.constant("zero"), fitter.constant("x"), fitter.constant("nope")),
            (Some(true), Some(false), None)
        );
        let chunked = fitter.finish(&train).unwrap();
        let kept = chunked.categorical[0].vocabulary.len();
        assert!(kept > 100 && kept < 40_000, "min_count 3 keeps some users and drops others: {kept}");

        let (u, c) = (Ids::Int(user), Ids::Str(cat));
        let whole = FeatureSpec::fit(&[("user_id", &u, 3), ("category", &c, 1)], &[("x", &x), ("zero", &zero)], LABEL);
        assert_eq!(chunked, whole);
        for (a, b) in chunked.numeric.iter().zip(&whole.numeric) {
            assert_eq!((a.mean.to_bits(), a.std.to_bits()), (b.mean.to_bits(), b.std.to_bits()), "{}", a.name);
        }
    }
}
