//! Point-in-time place statistics over a trailing window `[t - window, t)`: the counts
//! ([`WindowStats`]) and the feature values they become ([`WindowStats::values`]).

/// The trailing-window columns, in model order (each present as the data allows: impression
/// counts and rates only with explicit labels, the rating only with ratings).
pub const NAMES: [&str; 4] = ["place_visits_w", "place_impressions_w", "place_visit_rate_w", "place_rating_w"];

/// Ratings are summed in fixed point with this many fractional bits: integer sums are exact
/// in any order, so a window's mean is the same bits whether its events were summed as a
/// batch's prefix sums or one by one online.
const RATING_FRACTION_BITS: i32 = 32;

/// A rating in the fixed point the window sums use (NaN and infinities: none).
pub fn rating_fixed(r: f64) -> Option<i128> {
    r.is_finite().then(|| (r * f64::powi(2.0, RATING_FRACTION_BITS)).round() as i128)
}

/// The mean of `n` ratings summing to `sum` (fixed point), `None` without ratings.
pub fn mean_rating(sum: i128, n: u32) -> Option<f64> {
    (n > 0).then(|| (sum as f64 / f64::powi(2.0, RATING_FRACTION_BITS)) / f64::from(n))
}

/// Window statistics of one place at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    /// Events (impressions) in the window.
    pub impressions: u32,
    /// Visits (positive events) in the window.
    pub visits: u32,
    /// Mean rating of rated visits in the window, if any.
    pub mean_rating: Option<f64>,
}

impl WindowStats {
    /// The values of [`NAMES`]: `ln(1 + visits)`, `ln(1 + impressions)`, `(visits + 1) /
    /// (impressions + 2)`, and the window's mean rating, else `static_rating` (the place's own,
    /// NaN: none), else 0.
    pub fn values(&self, static_rating: f64) -> [f64; 4] {
        let rating = self.mean_rating.unwrap_or(static_rating);
        [
            f64::from(self.visits).ln_1p(),
            f64::from(self.impressions).ln_1p(),
            (f64::from(self.visits) + 1.0) / (f64::from(self.impressions) + 2.0),
            if rating.is_finite() { rating } else { 0.0 },
        ]
    }
}
