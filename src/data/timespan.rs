//! Whether an interaction log's time range is plausible as a whole, beyond each row's
//! 1900-2200 check: epoch seconds declared as milliseconds all land in January 1970 (two weeks
//! collapse into twenty minutes), and a range of centuries mixes units or placeholder dates.

use crate::data::schema::TimeUnit;
use crate::data::table::Table;
use reco_runtime::error::{Error, Result};

/// A log spanning less than this, read in a unit finer than seconds, is checked one unit
/// coarser.
const COLLAPSED_SECONDS: i64 = 86_400;
/// 1971-01-01 ..= 2200-01-01: where the values read one unit coarser must land to be the
/// reading meant.
const PLAUSIBLE: std::ops::RangeInclusive<f64> = 31_536_000.0..=7_258_118_400.0;
/// Two hundred years: no log of visits spans more.
const EXPLODED_SECONDS: i64 = 200 * 31_557_600;

/// One end of a log: unix seconds, the value as the file holds it (in the recipe's unit for
/// numbers) and where it is (`<file> line N` / `row N`).
#[derive(Debug, Clone)]
struct End {
    secs: i64,
    raw: f64,
    value: String,
    at: String,
}

/// The earliest and latest interaction of a log (or of the pieces read so far).
#[derive(Debug, Clone)]
pub struct TimeSpan {
    /// The table as the user names it.
    table: String,
    /// The timestamp column.
    column: String,
    /// Whether it holds numbers (read in `timestamp_unit`).
    numeric: bool,
    first: End,
    last: End,
}

impl TimeSpan {
    /// The span of `ts` (unix seconds of table `t`'s column `column`); `None` without rows.
    pub fn of(t: &Table, column: &str, ts: &[i64]) -> Result<Option<Self>> {
        let dtype = t.column(column)?.dtype().clone();
        let numeric = dtype.is_primitive_numeric();
        let raw = if numeric { Some(t.floats(column, false)?) } else { None };
        // The ends by the values as written: read in too fine a unit, whole seconds may tie.
        let ends = match &raw {
            Some(r) => (argmin(r, |a, b| a < b), argmin(r, |a, b| a > b)),
            None => (argmin(ts, |a, b| a < b), argmin(ts, |a, b| a > b)),
        };
        let (Some(lo), Some(hi)) = ends else { return Ok(None) };
        let end = |i: usize| {
            let (path, line) = t.locate(i);
            let value = t.column(column).ok().and_then(|c| c.get(i).ok()).map_or_else(String::new, |v| v.to_string());
            End {
                secs: ts[i],
                raw: raw.as_ref().map_or(ts[i] as f64, |r| r[i]),
                value,
                at: format!("{} {line}", path.display()),
            }
        };
        let (table, column) = (t.name.clone(), column.to_string());
        Ok(Some(Self { table, column, numeric, first: end(lo), last: end(hi) }))
    }

    /// The span of both.
    pub fn merge(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(mut a), Some(b)) => {
                if b.first.secs < a.first.secs {
                    a.first = b.first;
                }
                if b.last.secs > a.last.secs {
                    a.last = b.last;
                }
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }

    /// Refuses a span that collapses (numbers in a unit finer than seconds spanning under a
    /// day, that read in a coarser unit land in 1971-2200) or explodes (over 200 years).
    pub fn check(&self, unit: TimeUnit) -> Result<()> {
        let span = self.last.secs - self.first.secs;
        let ends = format!("from {} ({}) to {} ({})", self.first.value, self.first.at, self.last.value, self.last.at);
        let collapsed = self.numeric && (0..COLLAPSED_SECONDS).contains(&span);
        // Every coarser unit in turn: seconds declared `us` are two units off.
        let coarser_units = std::iter::successors(unit.coarser(), |u| u.coarser()).filter(|_| collapsed);
        for coarser in coarser_units {
            let per = coarser.per_second() as f64;
            let (a, b) = (self.first.raw / per, self.last.raw / per);
            if PLAUSIBLE.contains(&a) && PLAUSIBLE.contains(&b) {
                return Err(Error::input(format!(
                    "{}: column `{}`: the whole log spans {} read in {} (data.timestamp_unit = \"{}\") but {} read in {}, {ends}: set data.timestamp_unit = \"{}\"",
                    self.table,
                    self.column,
                    human(span),
                    unit.name(),
                    unit.short(),
                    human((b - a).round() as i64),
                    coarser.name(),
                    coarser.short()
                )));
            }
        }
        if span > EXPLODED_SECONDS {
            return Err(Error::input(format!(
                "{}: column `{}`: the log spans {}, {ends}: expected one log's time range (values in two units, or a placeholder date?)",
                self.table,
                self.column,
                human(span)
            )));
        }
        Ok(())
    }
}

/// The index of the first value no other beats by `better`.
fn argmin<T: Copy>(v: &[T], better: impl Fn(T, T) -> bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if best.is_none_or(|b| better(x, v[b])) {
            best = Some(i);
        }
    }
    best
}

/// A duration for people: `13 days 1 h`, `18 min 46 s`, `250 years`.
pub fn human(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (d, h, m, r) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match s {
        s if s >= 2 * 31_557_600 => format!("{} years", s / 31_557_600),
        s if s >= 86_400 => format!("{d} days {h} h"),
        s if s >= 3600 => format!("{h} h {m} min"),
        s if s >= 60 => format!("{m} min {r} s"),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use polars::prelude::{Column, DataFrame};

    use super::*;

    fn span(values: Vec<i64>, unit: TimeUnit) -> Result<()> {
        let df = DataFrame::new(values.len(), vec![Column::new("ts".into(), values)]).unwrap();
        let t = Table::frame(df, "log.parquet");
        let (ts, _) = t.timestamps("ts", unit, None).unwrap();
        TimeSpan::of(&t, "ts", &ts).unwrap().unwrap().check(unit)
    }

    #[test]
    fn seconds_declared_as_milliseconds_are_refused_with_both_spans_and_the_unit_to_set() {
        // Two weeks of epoch seconds.
        let secs: Vec<i64> = (0..15).map(|d| 1_767_571_200 + d * 86_400).collect();
        let e = span(secs.clone(), TimeUnit::Milliseconds).unwrap_err().to_string();
        assert!(e.contains("column `ts`") && e.contains("20 min 9 s read in milliseconds"), "{e}");
        assert!(e.contains("14 days 0 h read in seconds") && e.contains("timestamp_unit = \"s\""), "{e}");
        assert!(e.contains("1767571200 (log.parquet row 0)") && e.contains("row 14"), "{e}");
        span(secs, TimeUnit::Seconds).unwrap();
        // Milliseconds declared as microseconds: one unit coarser is milliseconds.
        let ms: Vec<i64> = (0..15).map(|d| (1_767_571_200 + d * 86_400) * 1000).collect();
        let e = span(ms.clone(), TimeUnit::Microseconds).unwrap_err().to_string();
        assert!(e.contains("timestamp_unit = \"ms\""), "{e}");
        span(ms, TimeUnit::Milliseconds).unwrap();
        // A real log of a few hours in milliseconds: read in seconds it would be year 57994.
        span(vec![1_767_571_200_000, 1_767_581_200_000], TimeUnit::Milliseconds).unwrap();
        // Small test values near 1970 that read coarser are not plausible either (before 1971).
        span(vec![0, 5_000_000], TimeUnit::Milliseconds).unwrap();
        // Two and three units off: eighteen months of seconds declared `us` (47 s of 1970) or
        // `ns` (under a second): seconds is the reading that lands in a plausible range.
        let months: Vec<i64> = vec![1_240_526_357, 1_287_795_773];
        for unit in [TimeUnit::Microseconds, TimeUnit::Nanoseconds] {
            let e = span(months.clone(), unit).unwrap_err().to_string();
            assert!(e.contains("547 days") && e.contains("timestamp_unit = \"s\""), "{unit:?}: {e}");
        }
    }

    #[test]
    fn a_span_of_centuries_is_refused_naming_both_ends() {
        let e = span(vec![1_767_571_200, -2_208_988_800, 5_000_000_000], TimeUnit::Seconds).unwrap_err().to_string();
        assert!(e.contains("spans 228 years") && e.contains("-2208988800 (log.parquet row 1)"), "{e}");
        assert!(e.contains("5000000000 (log.parquet row 2)"), "{e}");
        span(vec![1_767_571_200, 1_767_571_200 + 100 * 31_557_600], TimeUnit::Seconds).unwrap();
    }

    #[test]
    fn spans_merge_to_the_earliest_and_latest() {
        let df = |v: Vec<i64>| DataFrame::new(v.len(), vec![Column::new("ts".into(), v)]).unwrap();
        let (a, b) = (Table::frame(df(vec![50, 10]), "a"), Table::frame(df(vec![5, 20]), "b"));
        let s = |t: &Table, v: &[i64]| TimeSpan::of(t, "ts", v).unwrap();
        let m = TimeSpan::merge(s(&a, &[50, 10]), s(&b, &[5, 20])).unwrap();
        assert_eq!((m.first.secs, m.first.at.as_str(), m.last.secs, m.last.at.as_str()), (5, "b row 0", 50, "a row 0"));
        assert_eq!(human(1_126_800), "13 days 1 h");
        assert_eq!(human(1126), "18 min 46 s");
    }
}
