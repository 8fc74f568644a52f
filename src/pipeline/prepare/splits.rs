//! Time splits (train, then valid, then test), the ranking set (sampled test visits, each with
//! `ranking_candidates` other places) and the samples drawn without replacement behind it and
//! behind the calibration rows.

use super::candidates::Candidates;
use super::context::Context;
use super::featurize::Rows;
use crate::recipe::PrepareConfig;
use reco_runtime::error::{Error, Result};
use reco_runtime::rng::Rng;

/// The earliest and latest of `ts`.
pub(crate) fn bounds(ts: &[i64]) -> (i64, i64) {
    ts.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)))
}

/// Where valid and test begin: the latest `valid_fraction + test_fraction` of the time range
/// `(t0, t1)` is held out.
pub(crate) fn time_cuts((t0, t1): (i64, i64), cfg: &PrepareConfig) -> [i64; 2] {
    let span = t1.saturating_sub(t0) as f64;
    let cut_valid = t0 + (span * (1.0 - cfg.valid_fraction - cfg.test_fraction)).round() as i64;
    let cut_test = t0 + (span * (1.0 - cfg.test_fraction)).round() as i64;
    [cut_valid, cut_test]
}

/// Which split a row at `t` falls in: 0 train, 1 valid, 2 test.
pub(crate) fn split_of(t: i64, [cut_valid, cut_test]: [i64; 2]) -> usize {
    if t < cut_valid {
        0
    } else if t < cut_test {
        1
    } else {
        2
    }
}

/// What the check of a split needs to know of it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SplitCounts {
    /// Rows.
    pub rows: usize,
    /// Rows labelled 1.
    pub positives: usize,
}

/// Each split needs both visits and non-visits; `span` is the rows' time range.
pub(crate) fn check_splits(table: &str, counts: &[SplitCounts; 3], span: (i64, i64), cuts: [i64; 2]) -> Result<()> {
    for (name, c) in ["train", "valid", "test"].iter().zip(counts) {
        if c.rows == 0 || c.positives == 0 || c.positives == c.rows {
            let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).map_or("-".into(), |d| d.to_rfc3339());
            return Err(Error::input(format!(
                "{table}: the {name} split has {} rows and needs both visits and non-visits (timestamps span {} to {}, split at {} and {}); give more days of interactions or change prepare.valid_fraction/test_fraction",
                c.rows,
                at(span.0),
                at(span.1),
                at(cuts[0]),
                at(cuts[1])
            )));
        }
    }
    Ok(())
}

/// Step 5: the time split. Returns train, valid, test and the two cut times.
pub(crate) fn split(rows: &Rows, cfg: &PrepareConfig, table: &str) -> Result<([Rows; 3], [i64; 2])> {
    let span = bounds(&rows.ts);
    let cuts = time_cuts(span, cfg);
    let mut splits = [rows.empty_like(), rows.empty_like(), rows.empty_like()];
    let mut counts = [SplitCounts::default(); 3];
    for i in 0..rows.len() {
        let s = split_of(rows.ts[i], cuts);
        splits[s].push(rows, i);
        counts[s].rows += 1;
        counts[s].positives += usize::from(rows.label[i] > 0.5);
    }
    check_splits(table, &counts, span, cuts)?;
    Ok((splits, cuts))
}

/// Step 6: ranking queries from sampled test positives, each with `ranking_candidates`
/// other places drawn like negatives.
pub(crate) fn ranking_set(
    test: &Rows,
    ctx: Option<&Context>,
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) -> Rows {
    let pos: Vec<usize> = (0..test.len()).filter(|&i| test.label[i] > 0.5).collect();
    let mut ranking = Rows::new(false, true);
    for (q, k) in ranking_picks(pos.len(), cfg, rng).into_iter().enumerate() {
        let i = pos[k];
        let src = test.src[i] as usize;
        let at = ctx.map_or((0.0, 0.0), |c| (c.lat[src], c.lon[src]));
        push_query(&mut ranking, q, (src, test.place[i], test.ts[i]), at, candidates, cfg, rng);
    }
    ranking
}

/// Which of `positives` test positives become ranking queries: their ranks among the
/// positives, ascending.
pub(crate) fn ranking_picks(positives: usize, cfg: &PrepareConfig, rng: &mut Rng) -> Vec<usize> {
    sample_sorted(positives, cfg.ranking_queries, rng)
}

/// `k` distinct numbers of `0..n` (all of them when `k >= n`), uniformly at random, ascending:
/// Floyd's algorithm, `k` draws and memory for `k` numbers whatever `n`.
pub(crate) fn sample_sorted(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut chosen = std::collections::BTreeSet::new();
    for j in n - k.min(n)..n {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// Pushes ranking query `q`: the visit `(src, place, ts)` at context `at`, then its drawn
/// candidates.
pub(crate) fn push_query(
    ranking: &mut Rows,
    q: usize,
    (src, place, ts): (usize, u32, i64),
    (lat, lon): (f64, f64),
    candidates: &Candidates,
    cfg: &PrepareConfig,
    rng: &mut Rng,
) {
    let cands = candidates.draw(lat, lon, place, cfg.ranking_candidates, rng);
    ranking.push_interaction(src, place, ts, 1.0);
    for &c in &cands {
        ranking.push_interaction(src, c, ts, 0.0);
    }
    if let Some(qv) = ranking.query.as_mut() {
        qv.extend(std::iter::repeat_n(q as i64, cands.len() + 1));
    }
}

/// Which `n` of `rows` training rows form the calibration sample (ascending).
pub(crate) fn calibration_rows(rows: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    sample_sorted(rows, n, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn floyd_samples_are_distinct_ascending_complete_when_asked_for_all_and_uniform() {
        let mut rng = Rng::new(3);
        assert_eq!(sample_sorted(5, 9, &mut rng), vec![0, 1, 2, 3, 4]);
        assert!(sample_sorted(0, 3, &mut rng).is_empty());
        let mut hits = [0u32; 10];
        for _ in 0..20_000 {
            let s = sample_sorted(10, 3, &mut rng);
            assert_eq!(s.len(), 3);
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
            for i in s {
                hits[i] += 1;
            }
        }
        // Each number is in a sample with probability 3/10: 6,000 of 20,000, sd ~65.
        assert!(hits.iter().all(|&h| (5_700..6_300).contains(&h)), "{hits:?}");
    }
}
