//! The training rows an epoch visits: a split of at most `train.max_rows_in_memory` rows held
//! whole and reshuffled every epoch; a larger one left on disk, its row groups read in a new
//! random order each epoch by a second thread into windows of `train.shuffle_buffer_rows` rows
//! whose rows are shuffled before they are cut into batches (memory: a few windows). With
//! candidate groups (listwise distillation) whole groups are shuffled instead of rows.

use std::borrow::Cow;
use std::path::Path;
use std::sync::mpsc::SyncSender;

use crate::data::chunks::{Chunks, Split};
use crate::recipe::TrainConfig;
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::error::Result;
use reco_runtime::rng::Rng;
use reco_runtime::runtime::{Columns, Encoded, encode};

use super::groups::Grouped;

/// Where an epoch's rows come from.
pub(super) enum TrainRows<'a> {
    /// All encoded in memory, visited in `order` (reshuffled in place every epoch; with
    /// candidate groups, the order of whole groups is reshuffled and `order` follows).
    Whole { enc: Encoded, labels: &'a [f32], order: Vec<usize>, grouped: Option<Grouped>, rng: Rng },
    /// Row groups on disk, read into shuffled windows of `buffer` rows.
    Chunked { chunks: &'a Chunks, buffer: usize },
}

/// Rows in memory for part of an epoch, and the order to visit them in.
pub(super) struct Window<'a> {
    pub(super) enc: Cow<'a, Encoded>,
    pub(super) labels: Cow<'a, [f32]>,
    pub(super) teacher: Option<Cow<'a, [f32]>>,
    /// The candidate group of every row, for listwise distillation.
    pub(super) groups: Option<Cow<'a, [u32]>>,
    pub(super) order: Vec<usize>,
}

impl<'a> TrainRows<'a> {
    /// The rows of `split`; `groups` (the candidate group of every row): shuffled by group.
    pub(super) fn new(
        split: &'a Split,
        spec: &FeatureSpec,
        cfg: &TrainConfig,
        seed: u64,
        groups: Option<&[u32]>,
    ) -> Result<Self> {
        Ok(match split {
            Split::Whole(frame) => Self::Whole {
                enc: encode(spec, &frame.columns.view()),
                labels: frame.labels(Path::new("train.parquet"))?,
                order: (0..frame.columns.rows).collect(),
                grouped: groups.map(Grouped::new),
                rng: Rng::derive(seed, "train-shuffle"),
            },
            Split::Chunked(chunks) => Self::Chunked { chunks, buffer: cfg.shuffle_buffer_rows },
        })
    }

    /// A new order of the rows held in memory (nothing for rows on disk, which each window
    /// shuffles): each epoch reshuffles the previous epoch's order.
    pub(super) fn reshuffle(&mut self) {
        if let Self::Whole { order, grouped, rng, .. } = self {
            match grouped {
                Some(g) => *order = g.shuffled(rng),
                None => rng.shuffle(order),
            }
        }
    }
}

/// A window's visiting order: its rows shuffled, or with `groups`, its whole groups shuffled.
fn window_order(rows: usize, groups: Option<&[u32]>, rng: &mut Rng) -> Vec<usize> {
    match groups {
        Some(g) => Grouped::new(g).shuffled(rng),
        None => {
            let mut order: Vec<usize> = (0..rows).collect();
            rng.shuffle(&mut order);
            order
        }
    }
}

/// An owned window, as the borrowing ones an epoch also visits.
pub(super) fn shorten<'a>(w: Window<'static>) -> Window<'a> {
    w
}

/// Reads the row groups of `chunks` in a random order (by `seed` and `epoch`) into windows of
/// at least `buffer` rows each, shuffles each window and sends it; stops at the first error
/// (sent on) or when the receiver has gone.
pub(super) fn produce_windows(
    chunks: &Chunks,
    spec: &FeatureSpec,
    buffer: usize,
    (teacher, groups): (Option<&[f32]>, Option<&[u32]>),
    (seed, epoch): (u64, usize),
    tx: &SyncSender<Result<Window<'static>>>,
) {
    let mut rng = Rng::derive(seed, &format!("train-chunks-{epoch}"));
    let mut units: Vec<usize> = (0..chunks.chunks.len()).collect();
    rng.shuffle(&mut units);
    let mut acc: Option<Pending> = None;
    for (n, &u) in units.iter().enumerate() {
        let read = chunks.read(u, spec).and_then(|frame| {
            let labels = frame.labels(&chunks.chunks[u].file)?.to_vec();
            let rows = chunks.chunks[u].first..chunks.chunks[u].first + frame.columns.rows;
            let part = Pending {
                teacher: teacher.map_or_else(Vec::new, |t| t[rows.clone()].to_vec()),
                groups: groups.map_or_else(Vec::new, |g| g[rows].to_vec()),
                cols: frame.columns,
                labels,
            };
            match &mut acc {
                None => acc = Some(part),
                Some(a) => a.append(part)?,
            }
            Ok(())
        });
        if let Err(e) = read {
            let _ = tx.send(Err(e));
            return;
        }
        let full = acc.as_ref().is_some_and(|a| a.cols.rows >= buffer);
        if (full || n + 1 == units.len())
            && let Some(p) = acc.take()
        {
            let order = window_order(p.cols.rows, groups.map(|_| p.groups.as_slice()), &mut rng);
            let enc = Cow::Owned(encode(spec, &p.cols.view()));
            drop(p.cols); // only the encoded window waits in the channel
            let teacher = teacher.map(|_| Cow::Owned(p.teacher));
            let groups = groups.map(|_| Cow::Owned(p.groups));
            if tx.send(Ok(Window { enc, labels: Cow::Owned(p.labels), teacher, groups, order })).is_err() {
                return;
            }
        }
    }
}

/// A window's rows as they are read: inputs, labels, and the teacher logits and candidate
/// groups (empty when training has none).
struct Pending {
    cols: Columns,
    labels: Vec<f32>,
    teacher: Vec<f32>,
    groups: Vec<u32>,
}

impl Pending {
    fn append(&mut self, other: Pending) -> Result<()> {
        self.cols.append(&other.cols)?;
        self.labels.extend(other.labels);
        self.teacher.extend(other.teacher);
        self.groups.extend(other.groups);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;
    use std::sync::mpsc::sync_channel;

    use polars::prelude::*;

    use super::*;
    use crate::data::io::{ROW_GROUP_ROWS, write_parquet};
    use reco_runtime::artifact::spec::{CategoricalSpec, Ids, NumericSpec};

    /// Every window of one epoch, from a channel large enough to hold them all.
    fn epoch(chunks: &Chunks, spec: &FeatureSpec, row_id: &[f32], e: usize) -> Vec<Window<'static>> {
        grouped_epoch(chunks, spec, (row_id, None), e)
    }

    /// [`epoch`] with candidate groups.
    fn grouped_epoch(
        chunks: &Chunks,
        spec: &FeatureSpec,
        (row_id, groups): (&[f32], Option<&[u32]>),
        e: usize,
    ) -> Vec<Window<'static>> {
        let (tx, rx) = sync_channel(64);
        produce_windows(chunks, spec, 2 * ROW_GROUP_ROWS, (Some(row_id), groups), (7, e), &tx);
        drop(tx);
        rx.into_iter().map(Result::unwrap).collect()
    }

    /// The split rows an epoch visits, in order (the teacher logit carries the row number).
    fn visits(windows: &[Window<'_>]) -> Vec<usize> {
        windows.iter().flat_map(|w| w.order.iter().map(|&i| w.teacher.as_ref().unwrap()[i] as usize)).collect()
    }

    #[test]
    fn each_epoch_visits_every_row_once_in_shuffled_windows_of_several_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * ROW_GROUP_ROWS + 100;
        let path = dir.path().join("train.parquet");
        let user: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
        let label: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let mut df = df!("user_id" => user, "x" => vec![0.5f32; n], "label" => label).unwrap();
        write_parquet(&mut df, &path).unwrap();
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", (0..10).collect())],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        let chunks = Chunks::list(&path, &spec, true).unwrap().unwrap();
        // polars evens out its row groups: about ROW_GROUP_ROWS rows each.
        assert!(chunks.chunks.len() >= 3, "{:?}", chunks.chunks);
        let mut next = 0;
        for c in &chunks.chunks {
            assert_eq!((c.first, c.offset), (next, next), "{c:?}");
            next += c.rows;
        }
        assert_eq!((next, chunks.rows), (n, n));
        let group_of =
            |row: usize| chunks.chunks.iter().position(|c| row >= c.first && row < c.first + c.rows).unwrap();
        let row_id: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let first = epoch(&chunks, &spec, &row_id, 1);
        let order = visits(&first);
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>().len(), n, "every row once");
        assert_eq!(order.len(), n);
        for w in &first {
            let t = w.teacher.as_ref().unwrap();
            for &i in &w.order {
                let row = t[i] as usize;
                assert_eq!(w.labels[i], (row % 2) as f32, "labels travel with their rows");
                let want = spec.categorical[0].rows_of(&Ids::Int(vec![(row % 10) as i64]))[0];
                assert_eq!(w.enc.ids[0][i], want, "inputs travel with their rows");
            }
        }
        let groups =
            |w: &Window<'_>| w.teacher.as_ref().unwrap().iter().map(|&r| group_of(r as usize)).collect::<BTreeSet<_>>();
        assert!(first[..first.len() - 1].iter().all(|w| groups(w).len() >= 2), "windows mix row groups");
        assert!(order.windows(2).filter(|p| p[1] == p[0] + 1).count() < n / 100, "rows shuffled within windows");
        assert_eq!(order, visits(&epoch(&chunks, &spec, &row_id, 1)), "same seed and epoch, same order");
        assert_ne!(order, visits(&epoch(&chunks, &spec, &row_id, 2)), "a new order every epoch");
        // With candidate groups of three rows, whole groups are shuffled.
        let groups: Vec<u32> = (0..n as u32).map(|i| i / 3).collect();
        let grouped = grouped_epoch(&chunks, &spec, (&row_id, Some(&groups)), 1);
        let mut order = visits(&grouped);
        for w in &grouped {
            let g = w.groups.as_ref().unwrap();
            let t = w.teacher.as_ref().unwrap();
            assert!(g.iter().zip(t.iter()).all(|(&g, &r)| g == groups[r as usize]), "groups travel with their rows");
            let visited: Vec<u32> = w.order.iter().map(|&i| g[i]).collect();
            let changes = visited.windows(2).filter(|p| p[0] != p[1]).count();
            assert_eq!(changes + 1, g.iter().collect::<BTreeSet<_>>().len(), "every group's rows stay together");
        }
        assert!(order.windows(2).filter(|p| p[1] != p[0] + 1).count() > n / 6, "groups shuffled");
        order.sort_unstable();
        assert_eq!(order, (0..n).collect::<Vec<_>>(), "every row once");
    }
}
