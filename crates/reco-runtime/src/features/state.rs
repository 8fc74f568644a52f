//! The online state a server keeps to compute the point-in-time features of a raw request:
//! every place's recent events (its trailing-window statistics) and every user's visits
//! (their history), fed event by event ([`OnlineState::insert`]) in any order.
//!
//! Every event keeps its timestamp, and a query at `t` counts only events strictly before
//! `t`, exactly as `prepare` does: replaying a log into the state and asking at each row's
//! time gives `prepare`'s values, whatever order the events arrived in. Memory is bounded:
//! - a place keeps the events of the last `window + lateness` seconds before the newest event
//!   the state has seen (older ones can no longer fall in the window of a request that is not
//!   late); an event older than that is **late**: it still counts in its user's history, not
//!   in the place's window, and is counted ([`Counters::late_events`]);
//! - a user keeps their last `max_visits_per_user` visits with their times; older ones become
//!   per-place and per-category counts (and the place's last visit time), exact for requests
//!   later than them ([`Counters::folded_visits`]);
//! - at most `max_users` users: past that the users whose newest visit is oldest are dropped
//!   whole ([`Counters::evicted_users`]).
//!
//! A request at `t` more than `lateness` seconds before the newest event is **late**: its
//! window statistics may miss evicted events ([`Lookup::late`]).

use std::collections::HashMap;

use super::history::{HistoryStats, NO_CATEGORY};
use super::window::{WindowStats, mean_rating, rating_fixed};

/// A raw user or place id, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// One event: a user saw (`visit = false`, explicit data only) or visited a place at `ts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// User.
    pub user: Id,
    /// Place.
    pub place: Id,
    /// Unix seconds.
    pub ts: i64,
    /// Whether it was a visit (implicit data: every event).
    pub visit: bool,
    /// The visit's rating, when the data has ratings.
    pub rating: Option<f64>,
}

/// Bounds on the state's memory (module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seconds past the window a place keeps its events, and a request may lag the newest event.
    pub lateness: i64,
    /// Visits a user keeps with their times.
    pub max_visits_per_user: usize,
    /// Users kept.
    pub max_users: usize,
}

impl Limits {
    /// The defaults: a lateness of one window, 1,000 visits per user, 1,000,000 users.
    pub fn for_window(window: i64) -> Self {
        Self { lateness: window, max_visits_per_user: 1000, max_users: 1_000_000 }
    }
}

/// What the state has done, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events taken.
    pub events: u64,
    /// Events older than the places' horizon (in the users' history only).
    pub late_events: u64,
    /// Visits folded into counts by the per-user cap.
    pub folded_visits: u64,
    /// Users dropped by the user cap.
    pub evicted_users: u64,
    /// Users held.
    pub users: u64,
    /// Place events held.
    pub place_events: u64,
}

/// A place's events in the horizon, sorted by time: `(ts, visit, fixed-point rating)`.
#[derive(Debug, Default)]
struct PlaceLog {
    events: Vec<(i64, bool, Option<i128>)>,
}

/// A user's visits: the last ones with their times `(ts, place, category)` sorted, the older
/// ones as counts.
#[derive(Debug, Default)]
struct UserLog {
    visits: Vec<(i64, Id, u32)>,
    folded: u32,
    folded_place: HashMap<Id, (u32, i64)>,
    folded_category: HashMap<u32, u32>,
    newest: i64,
}

/// The features' state (module header).
#[derive(Debug)]
pub struct OnlineState {
    window: i64,
    limits: Limits,
    categories: HashMap<Id, u32>,
    places: HashMap<Id, PlaceLog>,
    users: HashMap<Id, UserLog>,
    newest: Option<i64>,
    /// The horizon at the last sweep of the places.
    swept: i64,
    counters: Counters,
}

/// A query's statistics and whether it was late.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lookup<T> {
    /// The statistics.
    pub stats: T,
    /// The request is older than the state's horizon: the statistics may miss events.
    pub late: bool,
}

impl OnlineState {
    /// An empty state for the trailing window `window` (seconds), places' categories
    /// `categories` (a place not in it has none) and `limits`.
    pub fn new(window: i64, categories: HashMap<Id, u32>, limits: Limits) -> Self {
        let (places, users) = (HashMap::new(), HashMap::new());
        Self { window, limits, categories, places, users, newest: None, swept: i64::MIN, counters: Counters::default() }
    }

    /// Takes one event (any order; see the module header for late ones).
    pub fn insert(&mut self, e: Event) {
        self.counters.events += 1;
        let horizon = self.horizon();
        self.newest = Some(self.newest.map_or(e.ts, |n| n.max(e.ts)));
        if e.ts < horizon {
            self.counters.late_events += 1;
        } else {
            let log = self.places.entry(e.place.clone()).or_default();
            let at = log.events.partition_point(|x| x.0 <= e.ts);
            log.events.insert(at, (e.ts, e.visit, e.rating.and_then(rating_fixed)));
            self.counters.place_events += 1;
        }
        if e.visit {
            self.add_visit(e.user, e.place, e.ts);
        }
        self.evict();
    }

    /// The trailing-window statistics of `place` strictly before `t`.
    pub fn window(&self, place: &Id, t: i64) -> Lookup<WindowStats> {
        let mut s = WindowStats::default();
        let (mut sum, mut n) = (0i128, 0u32);
        if let Some(log) = self.places.get(place) {
            let lo = log.events.partition_point(|x| x.0 < t.saturating_sub(self.window));
            let hi = log.events.partition_point(|x| x.0 < t);
            for &(_, visit, rating) in &log.events[lo..hi] {
                s.impressions += 1;
                s.visits += u32::from(visit);
                if let Some(r) = rating {
                    sum += r;
                    n += 1;
                }
            }
        }
        s.mean_rating = mean_rating(sum, n);
        Lookup { stats: s, late: t < self.horizon().saturating_add(self.window) }
    }

    /// `user`'s history at `place` strictly before `t`.
    pub fn history(&self, user: &Id, place: &Id, t: i64) -> HistoryStats {
        let Some(log) = self.users.get(user) else { return HistoryStats::default() };
        let category = self.category(place);
        let (count, last) = log.folded_place.get(place).copied().map_or((0, None), |(c, l)| (c, Some(l)));
        let mut h = HistoryStats {
            visits: log.folded,
            place_visits: count,
            place_visits_w: 0,
            category_visits: if category == NO_CATEGORY {
                0
            } else {
                log.folded_category.get(&category).copied().unwrap_or(0)
            },
            since_last: last.map(|l| t - l),
        };
        let from = t.saturating_sub(self.window);
        for (ts, p, c) in log.visits.iter().take_while(|v| v.0 < t) {
            h.visits += 1;
            if p == place {
                h.place_visits += 1;
                h.place_visits_w += u32::from(*ts >= from);
                h.since_last = Some(t - ts);
            }
            h.category_visits += u32::from(category != NO_CATEGORY && *c == category);
        }
        h
    }

    /// What the state has done and holds.
    pub fn counters(&self) -> Counters {
        Counters { users: self.users.len() as u64, ..self.counters }
    }

    /// The newest event's time.
    pub fn newest(&self) -> Option<i64> {
        self.newest
    }

    fn category(&self, place: &Id) -> u32 {
        self.categories.get(place).copied().unwrap_or(NO_CATEGORY)
    }

    /// Events before this are late for the places' windows.
    fn horizon(&self) -> i64 {
        self.newest.map_or(i64::MIN, |n| n.saturating_sub(self.window.saturating_add(self.limits.lateness)))
    }

    fn add_visit(&mut self, user: Id, place: Id, ts: i64) {
        let category = self.category(&place);
        let log = self.users.entry(user).or_default();
        log.newest = log.newest.max(ts);
        let at = log.visits.partition_point(|x| x.0 <= ts);
        log.visits.insert(at, (ts, place, category));
        if log.visits.len() > self.limits.max_visits_per_user {
            let (ts, place, category) = log.visits.remove(0);
            log.folded += 1;
            let e = log.folded_place.entry(place).or_insert((0, ts));
            *e = (e.0 + 1, e.1.max(ts));
            if category != NO_CATEGORY {
                *log.folded_category.entry(category).or_default() += 1;
            }
            self.counters.folded_visits += 1;
        }
    }

    /// Drops place events past the horizon, and the stalest users past the user cap.
    fn evict(&mut self) {
        let horizon = self.horizon();
        // Amortized: a sweep of every place once the horizon has moved a window since the
        // last (events older than the horizon are never read by a request that is not late).
        if horizon.saturating_sub(self.swept) >= self.window.max(1) {
            self.swept = horizon;
            let mut dropped = 0u64;
            for log in self.places.values_mut() {
                let k = log.events.partition_point(|e| e.0 < horizon);
                log.events.drain(..k);
                dropped += k as u64;
            }
            self.counters.place_events -= dropped;
            self.places.retain(|_, log| !log.events.is_empty());
        }
        if self.users.len() > self.limits.max_users {
            let mut by_age: Vec<(i64, Id)> = self.users.iter().map(|(k, v)| (v.newest, k.clone())).collect();
            by_age.sort();
            let excess = self.users.len() - self.limits.max_users * 9 / 10;
            for (_, k) in by_age.into_iter().take(excess) {
                self.users.remove(&k);
                self.counters.evicted_users += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn visit(user: i64, place: i64, ts: i64) -> Event {
        Event { user: Id::Int(user), place: Id::Int(place), ts, visit: true, rating: None }
    }

    fn state(limits: Limits) -> OnlineState {
        let categories = HashMap::from([(Id::Int(1), 7), (Id::Int(2), 7), (Id::Int(3), 8)]);
        OnlineState::new(7 * DAY, categories, limits)
    }

    fn log() -> Vec<Event> {
        vec![visit(1, 1, DAY), visit(1, 2, 2 * DAY), visit(1, 1, 9 * DAY), visit(2, 1, 10 * DAY), visit(1, 3, 10 * DAY)]
    }

    #[test]
    fn events_in_any_order_give_the_counts_of_the_events_strictly_before_t() {
        let limits = Limits::for_window(7 * DAY);
        let (mut ordered, mut reversed) = (state(limits), state(limits));
        for e in log() {
            ordered.insert(e);
        }
        for e in log().into_iter().rev() {
            reversed.insert(e);
        }
        for s in [&ordered, &reversed] {
            let (u, p) = (Id::Int(1), Id::Int(1));
            // At 10 days: visits at 1, 2 and 9 days before; the one at 10 days is not before.
            let h = s.history(&u, &p, 10 * DAY);
            let want = HistoryStats {
                visits: 3,
                place_visits: 2,
                place_visits_w: 1,
                category_visits: 3,
                since_last: Some(DAY),
            };
            assert_eq!(h, want);
            let w = s.window(&p, 10 * DAY + 1);
            assert_eq!((w.stats.visits, w.stats.impressions, w.late), (2, 2, false));
            assert_eq!(s.history(&Id::Int(9), &p, 20 * DAY), HistoryStats::default(), "an unknown user has no past");
        }
    }

    #[test]
    fn a_late_event_counts_in_its_users_history_only_and_is_counted() {
        let mut s = state(Limits { lateness: DAY, ..Limits::for_window(7 * DAY) });
        s.insert(visit(1, 1, 30 * DAY));
        // Older than the horizon (30 - 7 - 1 days).
        s.insert(visit(2, 1, 10 * DAY));
        assert_eq!(s.counters().late_events, 1);
        assert_eq!(s.history(&Id::Int(2), &Id::Int(1), 11 * DAY).place_visits, 1);
        let w = s.window(&Id::Int(1), 11 * DAY);
        assert_eq!(w.stats.visits, 0);
        assert!(w.late, "a request older than the lateness allows is flagged");
        assert!(!s.window(&Id::Int(1), 30 * DAY).late);
    }

    #[test]
    fn the_per_user_cap_folds_old_visits_into_exact_totals() {
        let mut s = state(Limits { max_visits_per_user: 2, ..Limits::for_window(7 * DAY) });
        for e in log() {
            s.insert(e);
        }
        // User 1 has 4 visits, 2 kept with times: totals after all of them stay exact.
        let h = s.history(&Id::Int(1), &Id::Int(1), 20 * DAY);
        assert_eq!((h.visits, h.place_visits, h.category_visits, h.since_last), (4, 2, 3, Some(11 * DAY)));
        assert_eq!(s.counters().folded_visits, 2);
    }

    #[test]
    fn past_the_user_cap_the_stalest_users_go() {
        let mut s = state(Limits { max_users: 10, ..Limits::for_window(7 * DAY) });
        for u in 0..11 {
            s.insert(visit(u, 1, u * DAY));
        }
        let c = s.counters();
        assert!(c.users <= 10 && c.evicted_users >= 1, "{c:?}");
        assert_eq!(s.history(&Id::Int(0), &Id::Int(1), 100 * DAY), HistoryStats::default(), "user 0 was stalest");
        assert_eq!(s.history(&Id::Int(10), &Id::Int(1), 100 * DAY).visits, 1);
    }
}
