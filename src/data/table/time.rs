//! Timestamps as teams write them: ISO-8601 / RFC 3339 strings, a date alone, or any shape
//! through a `strftime` format; and UTC offsets in an IANA time zone.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// How string timestamps that are not ISO-8601 are written.
pub(super) const TIMESTAMP_FORMATS: &str = "unix seconds (or the recipe's timestamp_unit), ISO-8601 / RFC 3339 \
(2012-04-03T18:00:09Z, 2012-04-03T14:00:09-04:00), `2012-04-03 18:00:09` (UTC), `2012-04-03`, \
a Parquet/Arrow timestamp or date, or the recipe's timestamp_format";

pub use reco_runtime::features::calendar::utc_offset_at;

/// Unix seconds of a timestamp string, and its UTC offset in seconds when the string
/// carries one: `format` when given, else RFC 3339 / ISO-8601 with an offset, else a naive
/// `YYYY-MM-DD[ T]HH:MM:SS[.f]` or `YYYY-MM-DD` read as UTC.
pub fn parse_timestamp(v: &str, format: Option<&str>) -> Option<(i64, Option<i32>)> {
    let v = v.trim();
    let aware = |d: DateTime<chrono::FixedOffset>| (d.timestamp(), Some(d.offset().local_minus_utc()));
    let naive = |d: NaiveDateTime| (d.and_utc().timestamp(), None);
    let date = |d: NaiveDate| (d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp(), None);
    if let Some(f) = format {
        return DateTime::parse_from_str(v, f)
            .map(aware)
            .or_else(|_| NaiveDateTime::parse_from_str(v, f).map(naive))
            .or_else(|_| NaiveDate::parse_from_str(v, f).map(date))
            .ok();
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(v) {
        return Some(aware(d));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(d) = DateTime::parse_from_str(v, f) {
            return Some(aware(d));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(v, f) {
            return Some(naive(d));
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().map(date)
}
