//! Candidate groups for ranking distillation: the training rows of one user at one moment (a
//! session's impressions, or a visit and the negatives `prepare` sampled around it), which
//! `prepare` and the Spark job write next to each other. [`Groups::read`] numbers them from a
//! split's `user_id` and `timestamp` columns; an epoch that distils over groups shuffles whole
//! groups ([`shuffled_runs`]), so that a batch holds every row of most of its groups.

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

/// The group of every row of a split: adjacent rows with the same user and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// Group number of every row, from 0 in row order.
    pub of_row: Vec<u32>,
    /// Number of groups.
    pub count: usize,
}

impl Groups {
    /// Numbers runs of equal `(user, timestamp)` keys (`users` absent: timestamps alone).
    pub fn from_keys(users: Option<&Ids>, ts: &[i64]) -> Self {
        let same_user = |i: usize| match users {
            None => true,
            Some(Ids::Int(v)) => v[i] == v[i - 1],
            Some(Ids::Str(v)) => v[i] == v[i - 1],
        };
        let mut of_row = Vec::with_capacity(ts.len());
        let mut g = 0u32;
        for i in 0..ts.len() {
            if i > 0 && !(ts[i] == ts[i - 1] && same_user(i)) {
                g += 1;
            }
            of_row.push(g);
        }
        let count = if ts.is_empty() { 0 } else { g as usize + 1 };
        Self { of_row, count }
    }

    /// The groups of the split at `location` (its rows in the order training reads them), from
    /// its `timestamp` column and, when the model has one, its `user_id` column; `None` when a
    /// file of the split has no timestamps.
    pub fn read(location: &Path, spec: &FeatureSpec) -> Result<Option<Self>> {
        let mut columns = vec![TIMESTAMP.to_string()];
        if spec.categorical.iter().any(|c| c.name == USER) {
            columns.push(USER.to_string());
        }
        let tables: Vec<Table> = match Chunks::list(location, spec, true)? {
            Some(chunks) => {
                let mut tables = Vec::with_capacity(chunks.chunks.len());
                for c in &chunks.chunks {
                    // A file without timestamps (its first piece tells): no groups.
                    if c.offset == 0 && !parquet_footer(&c.file)?.1.iter().any(|n| n == TIMESTAMP) {
                        return Ok(None);
                    }
                    tables.push(Table::parquet_rows(&c.file, c.offset, c.rows, columns.clone())?);
                }
                tables
            }
            None => vec![Table::read(location, &Default::default())?],
        };
        let (mut ts, mut users): (Vec<i64>, Option<Ids>) = (Vec::new(), None);
        for t in &tables {
            if !t.has(TIMESTAMP) {
                return Ok(None);
            }
            ts.extend(t.ints(TIMESTAMP)?);
            if columns.len() > 1 {
                let u = t.ids(USER)?;
                match (&mut users, u) {
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

/// The runs of equal adjacent values of `of_row` as `(first row, rows)`, in row order.
pub fn runs(of_row: &[u32]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, g) in of_row.iter().enumerate() {
        match out.last_mut() {
            Some((start, n)) if of_row[*start] == *g => *n += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// Shuffles `runs` in place and returns their rows in the new order.
pub fn shuffled_runs(runs: &mut [(usize, usize)], rng: &mut Rng) -> Vec<usize> {
    rng.shuffle(runs);
    runs.iter().flat_map(|&(start, n)| start..start + n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_adjacent_rows_of_one_user_at_one_moment() {
        let users = Ids::Int(vec![1, 1, 1, 2, 2, 1, 1]);
        let ts = [10, 10, 11, 11, 11, 11, 11];
        let g = Groups::from_keys(Some(&users), &ts);
        assert_eq!(g.of_row, [0, 0, 1, 2, 2, 3, 3]);
        assert_eq!(g.count, 4);
        // Without users, timestamps alone: rows 2..7 share one.
        assert_eq!(Groups::from_keys(None, &ts).of_row, [0, 0, 1, 1, 1, 1, 1]);
        let s = Ids::Str(vec!["a".into(), "b".into()]);
        assert_eq!(Groups::from_keys(Some(&s), &[5, 5]).of_row, [0, 1]);
        assert_eq!(Groups::from_keys(None, &[]).count, 0);
    }

    #[test]
    fn shuffled_runs_keep_every_group_whole_and_visit_each_row_once() {
        let of_row = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4];
        let mut r = runs(&of_row);
        assert_eq!(r, [(0, 3), (3, 1), (4, 2), (6, 4), (10, 1)]);
        let mut rng = Rng::new(3);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let order = shuffled_runs(&mut r, &mut rng);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..of_row.len()).collect::<Vec<_>>());
            // Each group's rows stay adjacent.
            let groups: Vec<u32> = order.iter().map(|&i| of_row[i]).collect();
            assert_eq!(runs(&groups).len(), 5, "{groups:?}");
            seen.push(groups);
        }
        assert!(seen.windows(2).any(|w| w[0] != w[1]), "the group order changes between epochs");
    }
}
