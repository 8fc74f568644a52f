//! Candidate groups for ranking distillation: the training rows of one user at one moment (a
//! session's impressions, a visit and the negatives `prepare` sampled around it, or the movies
//! a user rated in the same second). [`Groups::read`] numbers them from a split's `user_id`
//! and `timestamp` columns, wherever the rows sit in the split; an epoch that distils over
//! groups visits whole groups in a shuffled order ([`Grouped`]), so that a batch holds every
//! row of most of its groups.

use std::collections::HashMap;
use std::path::Path;

use crate::data::chunks::Chunks;
use crate::data::table::{Table, parquet_footer};
use reco_runtime::artifact::spec::{FeatureSpec, Ids};
use reco_runtime::error::{Error, Result};
use reco_runtime::rng::Rng;

/// The column that dates a row.
pub const TIMESTAMP: &str = "timestamp";
/// The column that names a row's user.
pub const USER: &str = "user_id";

/// The group of every row of a split: its rows with one user and one timestamp, wherever they sit.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// Group number of every row, from 0 in row order.
    pub of_row: Vec<u32>,
    /// Number of groups.
    pub count: usize,
}

impl Groups {
    /// Numbers the distinct `(user, timestamp)` keys in order of first appearance (`users`
    /// absent: timestamps alone).
    pub fn from_keys(users: Option<&Ids>, ts: &[i64]) -> Self {
        // A string user becomes the number of its first appearance.
        let user: Vec<i64> = match users {
            None => vec![0; ts.len()],
            Some(Ids::Int(v)) => v.clone(),
            Some(Ids::Str(v)) => {
                let mut seen: HashMap<&str, i64> = HashMap::new();
                v.iter()
                    .map(|u| {
                        let n = seen.len() as i64;
                        *seen.entry(u.as_str()).or_insert(n)
                    })
                    .collect()
            }
        };
        let mut ids: HashMap<(i64, i64), u32> = HashMap::new();
        let of_row: Vec<u32> = user
            .iter()
            .zip(ts)
            .map(|(&u, &t)| {
                let n = ids.len() as u32;
                *ids.entry((u, t)).or_insert(n)
            })
            .collect();
        Self { of_row, count: ids.len() }
    }

    /// The groups of the split at `location` (its rows in the order training reads them), from
    /// its `timestamp` column and, when every file has one, its `user_id` column (a model input
    /// or not); `None` when a file of the split has no timestamps.
    pub fn read(location: &Path, spec: &FeatureSpec) -> Result<Option<Self>> {
        let Some(tables) = key_tables(location, spec)? else {
            return Ok(None);
        };
        let with_users = tables.iter().all(|t| t.has(USER));
        let (mut ts, mut users): (Vec<i64>, Option<Ids>) = (Vec::new(), None);
        for t in &tables {
            ts.extend(t.ints(TIMESTAMP)?);
            if with_users {
                match (&mut users, t.ids(USER)?) {
                    (None, u) => users = Some(u),
                    (Some(Ids::Int(a)), Ids::Int(b)) => a.extend(b),
                    (Some(Ids::Str(a)), Ids::Str(b)) => a.extend(b),
                    _ => {
                        return Err(Error::input(format!("{}: {USER} changes type between files", location.display())));
                    }
                }
            }
        }
        Ok(Some(Self::from_keys(users.as_ref(), &ts)))
    }

    /// Mean rows per group.
    pub fn mean_size(&self) -> f64 {
        self.of_row.len() as f64 / self.count.max(1) as f64
    }
}

/// The split's `timestamp` and `user_id` columns (those its files have), a table per row
/// group in order; `None` when a file has no timestamps.
fn key_tables(location: &Path, spec: &FeatureSpec) -> Result<Option<Vec<Table>>> {
    let Some(chunks) = Chunks::list(location, spec, true)? else {
        let t = Table::read(location, &Default::default())?;
        return Ok(t.has(TIMESTAMP).then(|| vec![t]));
    };
    let (mut tables, mut columns) = (Vec::with_capacity(chunks.chunks.len()), Vec::new());
    for c in &chunks.chunks {
        // A file's first piece: which of the columns it has.
        if c.offset == 0 {
            let names = parquet_footer(&c.file)?.1;
            if !names.iter().any(|n| n == TIMESTAMP) {
                return Ok(None);
            }
            columns =
                [TIMESTAMP, USER].into_iter().filter(|k| names.iter().any(|n| n == k)).map(String::from).collect();
        }
        tables.push(Table::parquet_rows(&c.file, c.offset, c.rows, columns.clone())?);
    }
    Ok(Some(tables))
}

/// Rows arranged group by group, to be visited whole groups at a time in a shuffled order.
#[derive(Debug, Clone)]
pub struct Grouped {
    /// Row indices sorted by group (stably: a group's rows keep their order).
    rows: Vec<usize>,
    /// Each group's `(first position in rows, rows)`, in the order of the last shuffle.
    units: Vec<(usize, usize)>,
}

impl Grouped {
    /// The rows `0..of_row.len()` by their groups (`of_row`: any group numbers).
    pub fn new(of_row: &[u32]) -> Self {
        let mut rows: Vec<usize> = (0..of_row.len()).collect();
        rows.sort_by_key(|&i| of_row[i]);
        let mut units: Vec<(usize, usize)> = Vec::new();
        for (k, &i) in rows.iter().enumerate() {
            match units.last_mut() {
                Some((start, n)) if of_row[rows[*start]] == of_row[i] => *n += 1,
                _ => units.push((k, 1)),
            }
        }
        Self { rows, units }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Shuffles the groups' order (a shuffle of the previous one) and returns every row in it.
    pub fn shuffled(&mut self, rng: &mut Rng) -> Vec<usize> {
        rng.shuffle(&mut self.units);
        self.units.iter().flat_map(|&(start, n)| self.rows[start..start + n].iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_one_user_at_one_moment_wherever_its_rows_sit() {
        let users = Ids::Int(vec![1, 1, 1, 2, 2, 1, 1]);
        let ts = [10, 10, 11, 11, 11, 10, 12];
        let g = Groups::from_keys(Some(&users), &ts);
        assert_eq!(g.of_row, [0, 0, 1, 2, 2, 0, 3]);
        assert_eq!(g.count, 4);
        assert!((g.mean_size() - 7.0 / 4.0).abs() < 1e-12);
        // Without users, timestamps alone.
        assert_eq!(Groups::from_keys(None, &ts).of_row, [0, 0, 1, 1, 1, 0, 2]);
        let s = Ids::Str(vec!["a".into(), "b".into(), "a".into()]);
        assert_eq!(Groups::from_keys(Some(&s), &[5, 5, 5]).of_row, [0, 1, 0]);
        assert_eq!(Groups::from_keys(None, &[]).count, 0);
    }

    #[test]
    fn a_shuffled_epoch_keeps_every_group_whole_and_visits_each_row_once() {
        let of_row = [4, 0, 0, 7, 2, 2, 0, 7, 7, 7, 9];
        let mut grouped = Grouped::new(&of_row);
        assert_eq!(grouped.len(), 5);
        let mut rng = Rng::new(3);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let order = grouped.shuffled(&mut rng);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..of_row.len()).collect::<Vec<_>>());
            // Each group's rows are adjacent, in their split order.
            let groups: Vec<u32> = order.iter().map(|&i| of_row[i]).collect();
            let changes = groups.windows(2).filter(|w| w[0] != w[1]).count();
            assert_eq!(changes, 4, "{groups:?}");
            assert!(order.windows(2).all(|w| of_row[w[0]] != of_row[w[1]] || w[0] < w[1]), "{order:?}");
            seen.push(groups);
        }
        assert!(seen.windows(2).any(|w| w[0] != w[1]), "the group order changes between epochs");
    }
}
