//! Evaluation metrics: AUC, logloss, ECE and reliability bins, ranking HR@k / NDCG@k per
//! query, top-k agreement of two models, and bootstrap 95% intervals for AUC and NDCG.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Area under the ROC curve (Mann-Whitney, ties count one half). `None` (not measurable)
/// with one class only or any non-finite score.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    // Row numbers as u32 (half the memory of usize); past 2^32 rows the AUC is not computed.
    let mut idx: Vec<u32> = (0..u32::try_from(scores.len()).ok()?).collect();
    // Unstable: ties are taken as a group, so their order does not matter (and no scratch).
    idx.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    let (mut rank_sum, mut pos) = (0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1] as usize] == scores[idx[i] as usize] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k as usize] > 0.5 {
                rank_sum += avg_rank;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Mean binary cross-entropy of probabilities, clipped to [1e-7, 1 - 1e-7].
pub fn logloss(probs: &[f32], labels: &[f32]) -> f64 {
    let n = probs.len().max(1) as f64;
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = f64::from(p).clamp(1e-7, 1.0 - 1e-7);
            if y > 0.5 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n
}

/// Expected calibration error over `bins` equal-width probability bins.
pub fn ece(probs: &[f32], labels: &[f32], bins: usize) -> f64 {
    let mut sum_p = vec![0f64; bins];
    let mut sum_y = vec![0f64; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        sum_p[b] += f64::from(p);
        sum_y[b] += f64::from(y);
        count[b] += 1;
    }
    let n = probs.len().max(1) as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (sum_p[b] - sum_y[b]).abs() / n).sum()
}

/// HR@k and NDCG@k over queries with exactly one positive each (other queries are skipped).
/// A negative scoring equal to the positive ranks ahead of it (pessimistic ties). With any
/// non-finite score nothing is measurable: 0 queries.
pub fn ranking(query: &[i64], scores: &[f32], labels: &[f32], k: usize) -> (f64, f64, usize) {
    let per = ranking_per_query(query, scores, labels, k);
    if per.is_empty() {
        return (f64::NAN, f64::NAN, 0);
    }
    let n = per.len() as f64;
    (per.iter().map(|q| q.0).sum::<f64>() / n, per.iter().map(|q| q.1).sum::<f64>() / n, per.len())
}

/// (HR@k, NDCG@k) of every query that counts for [`ranking`], in query-id order.
pub fn ranking_per_query(query: &[i64], scores: &[f32], labels: &[f32], k: usize) -> Vec<(f64, f64)> {
    if scores.iter().any(|s| !s.is_finite()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for rows in groups(query).values() {
        let pos: Vec<usize> = rows.iter().copied().filter(|&i| labels[i] > 0.5).collect();
        // One positive and at least one candidate: a query without candidates ranks its
        // positive first whatever the scores, and measures nothing.
        if pos.len() != 1 || rows.len() < 2 {
            continue;
        }
        let s = scores[pos[0]];
        let rank = 1 + rows.iter().filter(|&&i| i != pos[0] && scores[i] >= s).count();
        out.push(if rank <= k { (1.0, 1.0 / ((rank + 1) as f64).log2()) } else { (0.0, 0.0) });
    }
    out
}

/// Rows of each query id. Ordered: sums over queries run in one order, so results are the
/// same bits every run.
fn groups(query: &[i64]) -> BTreeMap<i64, Vec<usize>> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &q) in query.iter().enumerate() {
        groups.entry(q).or_default().push(i);
    }
    groups
}

/// Mean Jaccard similarity of the top-`k` rows of each query under two scorings (ties broken
/// by row order): how much two models agree on what to show. `None` without queries or with
/// a non-finite score.
pub fn topk_jaccard(query: &[i64], a: &[f32], b: &[f32], k: usize) -> Option<f64> {
    if a.iter().chain(b).any(|s| !s.is_finite()) || k == 0 {
        return None;
    }
    let top = |rows: &[usize], s: &[f32]| {
        let mut r = rows.to_vec();
        r.sort_by(|&x, &y| s[y].total_cmp(&s[x]).then(x.cmp(&y)));
        r.truncate(k);
        r.sort_unstable();
        r
    };
    let (mut sum, mut n) = (0f64, 0usize);
    for rows in groups(query).values() {
        let (ta, tb) = (top(rows, a), top(rows, b));
        let both = ta.iter().filter(|i| tb.binary_search(i).is_ok()).count();
        sum += both as f64 / (ta.len() + tb.len() - both) as f64;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// One bin of a reliability diagram: predictions in `[lo, hi)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Their mean predicted probability (`None` for an empty bin).
    pub mean_predicted: Option<f64>,
    /// The fraction of them that were positive (`None` for an empty bin).
    pub observed_rate: Option<f64>,
}

/// A reliability diagram over `bins` equal-width probability bins (the bins [`ece`] uses).
pub fn calibration_bins(probs: &[f32], labels: &[f32], bins: usize) -> Vec<CalibrationBin> {
    let mut acc = vec![(0f64, 0f64, 0usize); bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        acc[b].0 += f64::from(p);
        acc[b].1 += f64::from(y);
        acc[b].2 += 1;
    }
    acc.iter()
        .enumerate()
        .map(|(b, &(sp, sy, n))| CalibrationBin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            count: n,
            mean_predicted: (n > 0).then(|| sp / n as f64),
            observed_rate: (n > 0).then(|| sy / n as f64),
        })
        .collect()
}

/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 200;

/// How many times each item is drawn in one resample: `u16`s (half the memory of `u32`s),
/// or `u32`s in a resample where an item is drawn 65,536 times or more.
pub enum Draws {
    /// Every count below 65,536.
    Small(Vec<u16>),
    /// Some count above.
    Large(Vec<u32>),
}

impl Draws {
    /// `n` draws with replacement from `n` items (`counts.len()`, a buffer to reuse), from
    /// resample `r`'s random stream.
    fn resample(mut counts: Vec<u16>, seed: u64, r: usize) -> Self {
        let n = counts.len();
        counts.iter_mut().for_each(|c| *c = 0);
        let stream = || reco_runtime::rng::Rng::derive(seed, &format!("bootstrap-{r}"));
        let mut rng = stream();
        for _ in 0..n {
            let i = rng.below(n);
            match counts[i].checked_add(1) {
                Some(c) => counts[i] = c,
                None => {
                    // The same draws again, counted wider.
                    let (mut rng, mut wide) = (stream(), vec![0u32; n]);
                    for _ in 0..n {
                        wide[rng.below(n)] += 1;
                    }
                    return Self::Large(wide);
                }
            }
        }
        Self::Small(counts)
    }

    /// Item `i`'s multiplicity.
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Self::Small(c) => f64::from(c[i]),
            Self::Large(c) => f64::from(c[i]),
        }
    }
}

/// A statistic over the [`BOOTSTRAP_RESAMPLES`] resamples of one seed, in resample order
/// (`None` where a resample was not measurable). Two statistics on the same items and seed saw
/// the same draws: their resamples pair up (a ratio or difference per resample gives a paired
/// interval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resamples(pub Vec<Option<f64>>);

impl Resamples {
    /// The 2.5th and 97.5th percentiles; `None` when fewer than 90% of resamples are measurable.
    pub fn ci95(&self) -> Option<[f64; 2]> {
        let mut stats: Vec<f64> = self.0.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        if stats.len() * 10 < BOOTSTRAP_RESAMPLES * 9 {
            return None;
        }
        stats.sort_by(f64::total_cmp);
        let at = |q: f64| stats[((stats.len() - 1) as f64 * q).round() as usize];
        Some([at(0.025), at(0.975)])
    }

    /// `f(self, other)` resample by resample (the pair must come from the same items and seed).
    pub fn paired(&self, other: &Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self(self.0.iter().zip(&other.0).map(|(a, b)| a.zip(*b).map(|(a, b)| f(a, b))).collect())
    }
}

/// [`Resamples`] of a statistic: resample `r` draws `n` items from its own random stream.
fn bootstrap(n: usize, seed: u64, stat: impl Fn(&Draws) -> Option<f64> + Sync) -> Resamples {
    use rayon::prelude::*;
    if n == 0 {
        return Resamples(vec![None; BOOTSTRAP_RESAMPLES]);
    }
    // One random stream per resample: the same intervals whatever the thread count. Each
    // worker reuses one buffer, allocated here.
    let workers = rayon::current_num_threads().clamp(1, BOOTSTRAP_RESAMPLES);
    let buffers: Vec<Vec<u16>> = (0..workers).map(|_| vec![0u16; n]).collect();
    let mut stats: Vec<(usize, Option<f64>)> = buffers
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(w, mut buf)| {
            let stat = &stat;
            (w..BOOTSTRAP_RESAMPLES).step_by(workers).map(move |r| {
                let draws = Draws::resample(std::mem::take(&mut buf), seed, r);
                let v = stat(&draws).filter(|v| v.is_finite());
                buf = match draws {
                    Draws::Small(b) => b,
                    Draws::Large(_) => vec![0u16; n],
                };
                (r, v)
            })
        })
        .collect();
    stats.sort_by_key(|&(r, _)| r);
    Resamples(stats.into_iter().map(|(_, v)| v).collect())
}

/// Bootstrap 95% interval of [`auc`] (rows resampled; the rows are sorted once and each
/// resample is one weighted pass).
pub fn auc_ci(scores: &[f32], labels: &[f32], seed: u64) -> Option<[f64; 2]> {
    auc_resamples(scores, labels, seed).ci95()
}

/// [`auc`] on each bootstrap resample of the rows (all `None` when the AUC is not measurable).
pub fn auc_resamples(scores: &[f32], labels: &[f32], seed: u64) -> Resamples {
    let none = || Resamples(vec![None; BOOTSTRAP_RESAMPLES]);
    if auc(scores, labels).is_none() {
        return none();
    }
    let Ok(n) = u32::try_from(scores.len()) else { return none() };
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    bootstrap(scores.len(), seed, |w| {
        let (mut num, mut neg_below, mut pos, mut i) = (0f64, 0f64, 0f64, 0);
        while i < order.len() {
            let (mut wp, mut wn, mut j) = (0f64, 0f64, i);
            while j < order.len() && scores[order[j] as usize] == scores[order[i] as usize] {
                let (r, c) = (order[j] as usize, w.get(order[j] as usize));
                if labels[r] > 0.5 {
                    wp += c
                } else {
                    wn += c
                }
                j += 1;
            }
            num += wp * (neg_below + wn / 2.0);
            (neg_below, pos, i) = (neg_below + wn, pos + wp, j);
        }
        (pos > 0.0 && neg_below > 0.0).then(|| num / (pos * neg_below))
    })
}

/// Bootstrap 95% interval of NDCG@k (queries resampled).
pub fn ndcg_ci(query: &[i64], scores: &[f32], labels: &[f32], k: usize, seed: u64) -> Option<[f64; 2]> {
    ndcg_resamples(query, scores, labels, k, seed).ci95()
}

/// NDCG@k on each bootstrap resample of the queries.
pub fn ndcg_resamples(query: &[i64], scores: &[f32], labels: &[f32], k: usize, seed: u64) -> Resamples {
    let per = ranking_per_query(query, scores, labels, k);
    bootstrap(per.len(), seed, |w| {
        let n: f64 = (0..per.len()).map(|i| w.get(i)).sum();
        Some(per.iter().enumerate().map(|(i, q)| q.1 * w.get(i)).sum::<f64>() / n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_scores_make_auc_and_ranking_not_measurable() {
        let y = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(auc(&[0.9, 0.1, 0.8, 0.2], &y), Some(1.0));
        // `score >= NaN` is always false: NaN used to rank every positive first (HR = 1.0).
        assert_eq!(auc(&[f32::NAN, 0.1, 0.8, 0.2], &y), None);
        assert_eq!(auc(&[0.9, f32::INFINITY, 0.8, 0.2], &y), None);
        let q = [0, 0, 1, 1];
        assert_eq!(ranking(&q, &[0.9, 0.1, 0.8, 0.2], &y, 10).2, 2);
        assert_eq!(ranking(&q, &[f32::NAN; 4], &y, 10).2, 0);
        // Queries of the positive alone (no candidates) count for nothing.
        assert_eq!(ranking(&[0, 1], &[0.5, 0.5], &[1.0, 1.0], 10).2, 0);
    }

    fn brute_auc(s: &[f32], y: &[f32]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..s.len() {
            for j in 0..s.len() {
                if y[i] > 0.5 && y[j] < 0.5 {
                    den += 1.0;
                    num += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn auc_equals_pairwise_definition_with_ties() {
        let mut r = reco_runtime::rng::Rng::new(5);
        for _ in 0..20 {
            let n = 60;
            let s: Vec<f32> = (0..n).map(|_| (r.below(7) as f32) / 7.0).collect();
            let y: Vec<f32> = (0..n).map(|_| f32::from(u8::from(r.uniform() < 0.4))).collect();
            let got = auc(&s, &y).unwrap();
            assert!((got - brute_auc(&s, &y)).abs() < 1e-12);
        }
        assert_eq!(auc(&[0.1, 0.2], &[1.0, 1.0]), None);
        assert_eq!(auc(&[0.1, 0.9], &[0.0, 1.0]), Some(1.0));
    }

    #[test]
    fn logloss_and_ece_on_hand_computed_cases() {
        let ll = logloss(&[0.8, 0.3], &[1.0, 0.0]);
        let want = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
        assert!((ll - want).abs() < 1e-6);
        // Perfectly calibrated bins give 0; all-wrong confident predictions give ~1.
        assert!(ece(&[0.05, 0.05, 0.95, 0.95], &[0.0, 0.0, 1.0, 1.0], 10) < 0.051);
        assert!(ece(&[0.99, 0.99], &[0.0, 0.0], 10) > 0.98);
    }

    #[test]
    fn ranking_metrics_follow_the_rank_of_the_positive() {
        // Query 1: positive ranks 1st. Query 2: positive ranks 3rd of 3.
        let q = [1, 1, 1, 2, 2, 2];
        let s = [0.9, 0.1, 0.2, 0.1, 0.5, 0.6];
        let y = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let (hr, ndcg, n) = ranking(&q, &s, &y, 2);
        assert_eq!(n, 2);
        assert!((hr - 0.5).abs() < 1e-12);
        assert!((ndcg - 0.5).abs() < 1e-12);
        let (hr3, ndcg3, _) = ranking(&q, &s, &y, 3);
        assert!((hr3 - 1.0).abs() < 1e-12);
        assert!((ndcg3 - (1.0 + 1.0 / 4f64.log2()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_intervals_hold_the_estimate_and_narrow_with_more_data() {
        let mut r = reco_runtime::rng::Rng::new(9);
        let mut data = |n: usize| {
            let y: Vec<f32> = (0..n).map(|_| f32::from(u8::from(r.uniform() < 0.3))).collect();
            let s: Vec<f32> = y.iter().map(|&y| y * 0.5 + r.uniform() as f32).collect();
            (s, y)
        };
        let (s, y) = data(400);
        let [lo, hi] = auc_ci(&s, &y, 1).unwrap();
        let point = auc(&s, &y).unwrap();
        assert!(lo < point && point < hi, "{lo} < {point} < {hi}");
        let (s2, y2) = data(6400);
        let [lo2, hi2] = auc_ci(&s2, &y2, 1).unwrap();
        // 16x the rows: about a quarter of the width.
        assert!(hi2 - lo2 < (hi - lo) / 2.5, "{} vs {}", hi2 - lo2, hi - lo);
        // Separable: every resample has AUC 1. Four rows: too many resamples hold one class
        // only, so the interval is not measurable. One class: not measurable.
        let sep: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let lab: Vec<f32> = (0..40).map(|i| f32::from(u8::from(i >= 20))).collect();
        assert_eq!(auc_ci(&sep, &lab, 1), Some([1.0, 1.0]));
        assert_eq!(auc_ci(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0], 1), None);
        assert_eq!(auc_ci(&[0.1, 0.2], &[1.0, 1.0], 1), None);
        // Same seed, same interval.
        assert_eq!(auc_ci(&s, &y, 1), Some([lo, hi]));
        // NDCG: every query's positive first gives [1, 1].
        let q = [1, 1, 2, 2, 3, 3];
        assert_eq!(
            ndcg_ci(&q, &[0.9, 0.1, 0.8, 0.2, 0.7, 0.3], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 10, 3),
            Some([1.0, 1.0])
        );
        assert_eq!(ndcg_ci(&q, &[f32::NAN; 6], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 10, 3), None);
    }

    #[test]
    fn topk_jaccard_and_calibration_bins_on_hand_computed_cases() {
        // Query 1: top-2 {0, 1} vs {0, 2}: 1/3. Query 2: same top: 1.
        let q = [1, 1, 1, 2, 2];
        let a = [0.9, 0.8, 0.1, 0.5, 0.4];
        let b = [0.9, 0.1, 0.8, 0.6, 0.3];
        let j = topk_jaccard(&q, &a, &b, 2).unwrap();
        assert!((j - (1.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(topk_jaccard(&q, &a, &a, 2), Some(1.0));
        assert_eq!(topk_jaccard(&q, &a, &[f32::NAN; 5], 2), None);
        let bins = calibration_bins(&[0.05, 0.15, 0.15, 1.0], &[0.0, 1.0, 0.0, 1.0], 10);
        assert_eq!(bins.len(), 10);
        assert_eq!((bins[0].count, bins[1].count, bins[9].count), (1, 2, 1));
        assert_eq!(bins[1].observed_rate, Some(0.5));
        assert!((bins[1].mean_predicted.unwrap() - 0.15).abs() < 1e-7);
        assert_eq!((bins[5].count, bins[5].mean_predicted), (0, None));
    }
}
