//! Point-in-time place statistics: each place's events sorted by time with prefix sums (of
//! ratings in fixed point, exact), so a trailing window strictly before any moment is two
//! binary searches.

use crate::recipe::PrepareConfig;
pub use reco_runtime::features::window::WindowStats;
use reco_runtime::features::window::{mean_rating, rating_fixed};

/// Per-place event history, sorted by time, with prefix sums for O(log n) window queries.
pub struct PlaceEvents {
    times: Vec<Vec<i64>>,
    visits: Vec<Vec<u32>>,
    rating_sum: Vec<Vec<i128>>,
    rating_n: Vec<Vec<u32>>,
}

impl PlaceEvents {
    /// Indexes events `(place row, timestamp, visited, rating)`.
    pub fn new(n_places: usize, events: impl Iterator<Item = (usize, i64, bool, Option<f64>)>) -> Self {
        let mut per: Vec<Vec<(i64, bool, Option<f64>)>> = vec![Vec::new(); n_places];
        for (p, t, v, r) in events {
            per[p].push((t, v, r));
        }
        let mut s = Self { times: vec![], visits: vec![], rating_sum: vec![], rating_n: vec![] };
        for mut ev in per {
            ev.sort_by_key(|e| e.0);
            let mut times = Vec::with_capacity(ev.len());
            let (mut v, mut rs, mut rn) = (vec![0u32], vec![0i128], vec![0u32]);
            for (t, visit, rating) in ev {
                times.push(t);
                v.push(v[v.len() - 1] + u32::from(visit));
                let r = rating.and_then(rating_fixed);
                rs.push(rs[rs.len() - 1] + r.unwrap_or(0));
                rn.push(rn[rn.len() - 1] + u32::from(r.is_some()));
            }
            s.times.push(times);
            s.visits.push(v);
            s.rating_sum.push(rs);
            s.rating_n.push(rn);
        }
        s
    }

    /// Statistics over events with `t - window <= time < t` (strictly before `t`).
    pub fn window(&self, place: usize, t: i64, window: i64) -> WindowStats {
        let times = &self.times[place];
        let lo = times.partition_point(|&x| x < t.saturating_sub(window));
        let hi = times.partition_point(|&x| x < t);
        let n = self.rating_n[place][hi] - self.rating_n[place][lo];
        WindowStats {
            impressions: (hi - lo) as u32,
            visits: self.visits[place][hi] - self.visits[place][lo],
            mean_rating: mean_rating(self.rating_sum[place][hi] - self.rating_sum[place][lo], n),
        }
    }
}

/// The trailing window of the place statistics, seconds.
pub(crate) fn window_seconds(cfg: &PrepareConfig) -> i64 {
    (cfg.window_days * 86_400.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn window_stats_use_only_events_strictly_before_t() {
        // Place 0: visits at t=10 (rating 4), 20 (no visit), 30 (rating 2), 30 (visit, no rating).
        let ev = PlaceEvents::new(
            1,
            vec![(0, 30, true, Some(2.0)), (0, 10, true, Some(4.0)), (0, 20, false, None), (0, 30, true, None)]
                .into_iter(),
        );
        let s = ev.window(0, 30, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (2, 1, Some(4.0)));
        let s = ev.window(0, 31, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (4, 3, Some(3.0)));
        // Window [t - 15, t): only the events at 20 and 30 when t = 31.
        let s = ev.window(0, 31, 15);
        assert_eq!((s.impressions, s.visits), (3, 2));
        let s = ev.window(0, 10, 100);
        assert_eq!((s.impressions, s.visits, s.mean_rating), (0, 0, None));
    }
}
