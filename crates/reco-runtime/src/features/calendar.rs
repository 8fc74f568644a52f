//! Time and place features computed from a row's own values: cyclic hour-of-day and
//! day-of-week of its local time, and the haversine distance from the context location to
//! the place. The operations and their order are `prepare`'s, so both give the same bits.

use std::f64::consts::{PI, TAU};

/// The time columns, in model order.
pub const TIME_NAMES: [&str; 4] = ["hour_sin", "hour_cos", "dow_sin", "dow_cos"];

/// The distance column.
pub const DISTANCE: &str = "distance_km";

/// Mean earth radius, km (IUGG).
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// `[hour_sin, hour_cos, dow_sin, dow_cos]` of a local time (unix seconds shifted by the UTC
/// offset in force): the hour in [0, 24) (Euclidean remainder, so times before 1970 work) and
/// the day of the week with Monday 0 (1970-01-01 was a Thursday).
pub fn time_values(local_ts: i64) -> [f64; 4] {
    let secs = local_ts as f64;
    let day = 86_400.0;
    let hour = (((secs % day) + day) % day) / 3600.0;
    let dow = ((((secs / day).floor() + 3.0) % 7.0) + 7.0) % 7.0;
    [(hour * (TAU / 24.0)).sin(), (hour * (TAU / 24.0)).cos(), (dow * (TAU / 7.0)).sin(), (dow * (TAU / 7.0)).cos()]
}

/// The offset from UTC (seconds) of `tz` at unix second `t`.
#[cfg(feature = "tz")]
pub fn utc_offset_at(tz: chrono_tz::Tz, t: i64) -> i32 {
    use chrono::{Offset, TimeZone};
    chrono::DateTime::from_timestamp(t, 0)
        .map_or(0, |d| tz.offset_from_utc_datetime(&d.naive_utc()).fix().local_minus_utc())
}

/// The UTC offset function of an IANA time zone name, for the featurizer.
#[cfg(feature = "tz")]
pub fn zone(name: &str) -> crate::Result<Box<dyn Fn(i64) -> i64 + Send + Sync>> {
    let tz: chrono_tz::Tz =
        name.parse().map_err(|_| crate::Error::input(format!("time zone {name:?}: not an IANA time zone name")))?;
    Ok(Box::new(move |t| i64::from(utc_offset_at(tz, t))))
}

/// Haversine distance, km, from `(ctx_lat, ctx_lon)` to `(place_lat, place_lon)`, degrees.
pub fn distance_km(ctx_lat: f64, ctx_lon: f64, place_lat: f64, place_lon: f64) -> f64 {
    let rad = |x: f64| x * (PI / 180.0);
    let half_dlat = rad(place_lat - ctx_lat) / 2.0;
    let half_dlon = rad(place_lon - ctx_lon) / 2.0;
    let a = half_dlat.sin() * half_dlat.sin()
        + rad(ctx_lat).cos() * rad(place_lat).cos() * half_dlon.sin() * half_dlon.sin();
    (2.0 * EARTH_RADIUS_KM) * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_land_where_the_calendar_says() {
        // 2026-01-05 was a Monday; 06:00 is a quarter of the day.
        let monday_6am = 1_767_571_200 + 6 * 3600;
        let [hs, hc, ds, dc] = time_values(monday_6am);
        assert!((hs - 1.0).abs() < 1e-12 && hc.abs() < 1e-12, "{hs} {hc}");
        assert!(ds.abs() < 1e-12 && (dc - 1.0).abs() < 1e-12, "{ds} {dc}");
        // One second before 1970 is 23:59:59 on a Wednesday (day 2).
        let [hs, _, ds, _] = time_values(-1);
        assert!(hs < 0.0 && hs > -1e-3, "{hs}");
        assert!((ds - (2.0 * TAU / 7.0).sin()).abs() < 1e-12);
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_km(52.0, 13.0, 53.0, 13.0);
        assert!((d - 111.195).abs() < 0.01, "{d}");
        assert_eq!(distance_km(52.0, 13.0, 52.0, 13.0), 0.0);
    }
}
