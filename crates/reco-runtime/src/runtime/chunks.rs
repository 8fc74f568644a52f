//! How the rows of a batch are cut: chunks of at most [`CHUNK`] rows that bound scoring memory
//! whatever the batch size ([`score_in_chunks`]), and the contiguous row ranges
//! [`Model::logits_threads`] scores on threads of its own.

use super::{ColumnsRef, Encoded, Model, encode};
use crate::artifact::spec::FeatureSpec;
use crate::error::{Error, Result};

/// Rows scored per chunk (bounds scratch memory).
pub const CHUNK: usize = 4096;

/// Row ranges of at most [`CHUNK`] rows covering `0..rows`: scoring memory stays bounded
/// whatever the batch size.
pub fn chunks(rows: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..rows).step_by(CHUNK).map(move |start| start..(start + CHUNK).min(rows))
}

/// Encodes and scores `cols` in [`chunks`] (borrowed slices: nothing is copied per chunk).
pub fn score_in_chunks(
    spec: &FeatureSpec,
    cols: &ColumnsRef<'_>,
    score: impl Fn(&Encoded) -> Vec<f32>,
) -> Result<Vec<f32>> {
    cols.check(spec)?;
    let mut out = Vec::with_capacity(cols.rows);
    for r in chunks(cols.rows) {
        out.extend(score(&encode(spec, &cols.slice(r))));
    }
    Ok(out)
}

/// Fewest rows worth a thread of their own in [`Model::logits_threads`].
const MIN_ROWS_PER_THREAD: usize = 256;

impl Model {
    /// Logits computed on `threads` threads (contiguous row ranges, results in row order);
    /// `threads` ≤ 1 is [`Model::score`] on the calling thread.
    pub fn logits_threads(&self, cols: &ColumnsRef<'_>, threads: usize) -> Result<Vec<f32>> {
        cols.check(self.spec())?;
        let parts = threads.min(cols.rows.div_ceil(MIN_ROWS_PER_THREAD)).max(1);
        if parts == 1 {
            return self.score(cols);
        }
        let per = cols.rows.div_ceil(parts);
        let ranges: Vec<_> = (0..cols.rows).step_by(per).map(|s| s..(s + per).min(cols.rows)).collect();
        let results: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges.iter().map(|r| scope.spawn(|| self.score(&cols.slice(r.clone())))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a scoring thread panicked".into()))))
                .collect()
        });
        let mut out = Vec::with_capacity(cols.rows);
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }
}
