//! Evaluation metrics: AUC, logloss, ECE, and ranking HR@k / NDCG@k per query.

use std::collections::BTreeMap;

/// Area under the ROC curve (Mann-Whitney, ties count one half). `None` (not measurable)
/// with one class only or any non-finite score.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    if scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] > 0.5 {
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
    if scores.iter().any(|s| !s.is_finite()) {
        return (f64::NAN, f64::NAN, 0);
    }
    // Ordered: the sums below run in one order, so the result is the same bits every run.
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &q) in query.iter().enumerate() {
        groups.entry(q).or_default().push(i);
    }
    let (mut hr, mut ndcg, mut n) = (0f64, 0f64, 0usize);
    for rows in groups.values() {
        let pos: Vec<usize> = rows.iter().copied().filter(|&i| labels[i] > 0.5).collect();
        // One positive and at least one candidate: a query without candidates ranks its
        // positive first whatever the scores, and measures nothing.
        if pos.len() != 1 || rows.len() < 2 {
            continue;
        }
        let s = scores[pos[0]];
        let rank = 1 + rows.iter().filter(|&&i| i != pos[0] && scores[i] >= s).count();
        n += 1;
        if rank <= k {
            hr += 1.0;
            ndcg += 1.0 / ((rank + 1) as f64).log2();
        }
    }
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    (hr / n as f64, ndcg / n as f64, n)
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
        let mut r = crate::rng::Rng::new(5);
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
}
