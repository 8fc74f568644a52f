//! The columns `prepare` writes itself: the built-in features in model order, the label and
//! the bookkeeping columns. A declared feature may not take one of these names.

/// Categorical feature columns `prepare` can produce, in model order (each present when its
/// source column is; declared features follow).
pub const CATEGORICAL: [&str; 4] = ["user_id", "place_id", "segment", "category"];
/// Numeric feature columns `prepare` can produce, in model order (`distance_km` only with
/// coordinates and a context location; `place_rating_w` only with ratings; `place_rating`
/// and `price_level` only when the places table has them).
pub const NUMERIC: [&str; 11] = [
    "distance_km",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "place_visits_w",
    "place_impressions_w",
    "place_visit_rate_w",
    "place_rating_w",
    "place_rating",
    "price_level",
];
/// The label column.
pub const LABEL: &str = "label";
/// The trailing-window visit count (log1p), the popularity baseline's score.
pub const POPULARITY: &str = "place_visits_w";
/// The distance from the context location, the nearest-first baseline's (negated) score.
pub const DISTANCE: &str = "distance_km";
/// The user's past visits to the place (log1p), the history baseline's score.
pub use reco_runtime::features::history::PLACE_VISITS;

/// True for the names `prepare` gives its own columns (features, label, bookkeeping).
pub fn is_builtin(name: &str) -> bool {
    CATEGORICAL.contains(&name)
        || NUMERIC.contains(&name)
        || reco_runtime::features::history::NAMES.contains(&name)
        || [
            LABEL,
            "timestamp",
            "oracle_p",
            "query_id",
            "ctx_lat",
            "ctx_lon",
            "local_ts",
            "place_lat",
            "place_lon",
            "src",
        ]
        .contains(&name)
}
