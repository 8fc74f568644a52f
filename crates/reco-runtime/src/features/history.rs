//! Point-in-time user history: what a user had done before a moment, at the place scored and
//! in its category. [`HistoryStats`] holds the counts (every visit strictly before the
//! moment, never the visit being scored), [`HistoryStats::values`] turns them into the
//! feature columns [`NAMES`] in that order.

/// The history feature columns, in model order (`user_category_share` only when places have
/// categories: [`names`]).
pub const NAMES: [&str; 7] = [
    "user_visits",
    "user_place_visits",
    "user_place_visits_w",
    "user_place_share",
    "user_place_days_since",
    "user_place_never",
    "user_category_share",
];

/// The column the history baseline ranks by: the user's past visits to the place.
pub const PLACE_VISITS: &str = "user_place_visits";

/// The history columns written for data with (`true`) or without place categories.
pub fn names(with_category: bool) -> &'static [&'static str] {
    if with_category { &NAMES } else { &NAMES[..6] }
}

/// Seconds in a day.
const DAY: f64 = 86_400.0;

/// A user's visits strictly before a moment `t`: in all, to the place scored (all time and in
/// the trailing window `[t - window, t)`), to the place's category, and the gap since the
/// last visit to the place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// The user's visits before `t`, anywhere.
    pub visits: u32,
    /// The user's visits to the place before `t`.
    pub place_visits: u32,
    /// The user's visits to the place in `[t - window, t)`.
    pub place_visits_w: u32,
    /// The user's visits before `t` to places of the place's category (0 without one).
    pub category_visits: u32,
    /// Seconds from the user's last visit to the place to `t`; `None`: never visited.
    pub since_last: Option<i64>,
}

impl HistoryStats {
    /// The feature values, in [`NAMES`] order (the first six, then the category share when
    /// `with_category`): visit counts as `ln(1 + n)`, shares of the user's past visits (0 with
    /// none), `ln(1 + days)` since the last visit to the place (0 and `never` = 1 when none).
    pub fn values(&self, with_category: bool) -> Vec<f64> {
        let share = |n: u32| if self.visits == 0 { 0.0 } else { f64::from(n) / f64::from(self.visits) };
        let mut v = vec![
            f64::from(self.visits).ln_1p(),
            f64::from(self.place_visits).ln_1p(),
            f64::from(self.place_visits_w).ln_1p(),
            share(self.place_visits),
            self.since_last.map_or(0.0, |s| (s as f64 / DAY).ln_1p()),
            if self.since_last.is_none() { 1.0 } else { 0.0 },
        ];
        if with_category {
            v.push(share(self.category_visits));
        }
        v
    }
}

/// Every visit of many users, indexed for [`HistoryStats`] at any moment (batch: built once
/// from a whole log, then queried for every row). Visits are `(user, place, category, time)`;
/// a category of `u32::MAX` is none.
#[derive(Debug, Clone, Default)]
pub struct HistoryIndex {
    by_place: Vec<(u32, u32, i64)>,
    by_category: Vec<(u32, u32, i64)>,
    by_user: Vec<(u32, i64)>,
}

/// No category.
pub const NO_CATEGORY: u32 = u32::MAX;

impl HistoryIndex {
    /// Indexes `visits` (any order).
    pub fn new(visits: impl Iterator<Item = (u32, u32, u32, i64)>) -> Self {
        let mut s = Self::default();
        for (u, p, c, t) in visits {
            s.by_place.push((u, p, t));
            if c != NO_CATEGORY {
                s.by_category.push((u, c, t));
            }
            s.by_user.push((u, t));
        }
        s.by_place.sort_unstable();
        s.by_category.sort_unstable();
        s.by_user.sort_unstable();
        s
    }

    /// The statistics of `user` at `place` (of `category`, `NO_CATEGORY`: none) at `t`.
    pub fn at(&self, user: u32, place: u32, category: u32, t: i64, window: i64) -> HistoryStats {
        let count = |v: &[(u32, u32, i64)], k: u32, from: i64| {
            v.partition_point(|&e| e < (user, k, t)) - v.partition_point(|&e| e < (user, k, from))
        };
        let hi = self.by_place.partition_point(|&e| e < (user, place, t));
        let lo = self.by_place.partition_point(|&e| e < (user, place, i64::MIN));
        let since_last = (hi > lo).then(|| t - self.by_place[hi - 1].2);
        let visits =
            self.by_user.partition_point(|&e| e < (user, t)) - self.by_user.partition_point(|&e| e < (user, i64::MIN));
        HistoryStats {
            visits: visits as u32,
            place_visits: (hi - lo) as u32,
            place_visits_w: count(&self.by_place, place, t.saturating_sub(window)) as u32,
            category_visits: if category == NO_CATEGORY {
                0
            } else {
                count(&self.by_category, category, i64::MIN) as u32
            },
            since_last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_visits_strictly_before_t() {
        // User 1: place 5 (category 2) at 10 and 30, place 6 (category 2) at 20, place 7 (no
        // category) at 30; user 2: place 5 at 5.
        let idx = HistoryIndex::new(
            [(1, 5, 2, 30), (1, 6, 2, 20), (1, 5, 2, 10), (1, 7, NO_CATEGORY, 30), (2, 5, 2, 5)].into_iter(),
        );
        let s = idx.at(1, 5, 2, 30, 100);
        // The visit at 30 is the row's own moment: not counted.
        assert_eq!(
            s,
            HistoryStats { visits: 2, place_visits: 1, place_visits_w: 1, category_visits: 2, since_last: Some(20) }
        );
        let s = idx.at(1, 5, 2, 31, 5);
        assert_eq!(
            s,
            HistoryStats { visits: 4, place_visits: 2, place_visits_w: 1, category_visits: 3, since_last: Some(1) }
        );
        let s = idx.at(1, 8, NO_CATEGORY, 31, 100);
        assert_eq!(
            s,
            HistoryStats { visits: 4, place_visits: 0, place_visits_w: 0, category_visits: 0, since_last: None }
        );
        assert_eq!(idx.at(3, 5, 2, 100, 100), HistoryStats::default());
    }

    #[test]
    fn values_follow_the_documented_formulas() {
        let s = HistoryStats {
            visits: 4,
            place_visits: 2,
            place_visits_w: 1,
            category_visits: 3,
            since_last: Some(86_400),
        };
        let v = s.values(true);
        let want = [5f64.ln(), 3f64.ln(), 2f64.ln(), 0.5, 2f64.ln(), 0.0, 0.75];
        assert_eq!(v.len(), want.len());
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        let never = HistoryStats::default().values(false);
        assert_eq!(never, vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
