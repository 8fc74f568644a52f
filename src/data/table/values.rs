//! Typed column accessors: integers, floats, ids, categories and timestamps out of a table,
//! with errors that name the file, line or row, column and value at fault.

use polars::prelude::*;

use super::Table;
use super::time::{TIMESTAMP_FORMATS, parse_timestamp, utc_offset_at};
use crate::data::schema::TimeUnit;
use reco_runtime::artifact::spec::Ids;
use reco_runtime::error::{Error, Result, one_line};

impl Table {
    /// The column is not of the expected kind: names the first value that is not (a text cell
    /// that does not parse as a number, a fraction where an integer goes), else the type.
    pub(super) fn wrong_type(&self, name: &str, dt: &DataType, expected: &str) -> Error {
        match self.first_offender(name, expected == "an integer") {
            Some((row, v)) => Error::input(format!("{} is {v}, expected {expected}", self.at(name, row))),
            None => Error::input(format!("{}: column `{name}` has type {dt}, expected {expected}", self.name)),
        }
    }

    /// The first row whose value is not an integer (`integer`: one an int64 holds) or not a
    /// finite number (text such as `nan` or `inf` included).
    fn first_offender(&self, name: &str, integer: bool) -> Option<(usize, String)> {
        let col = self.df.column(name).ok()?;
        if col.dtype().is_string() {
            let ok = |v: &str| match integer {
                true => v.trim().parse::<i64>().is_ok(),
                false => v.trim().parse::<f64>().is_ok_and(f64::is_finite),
            };
            return col
                .str()
                .ok()?
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.filter(|v| !ok(v)).map(|v| (i, format!("{v:?}"))));
        }
        if col.dtype().is_float() && integer {
            let s = col.cast(&DataType::Float64).ok()?;
            return s
                .f64()
                .ok()?
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.filter(|&x| !is_int64(x)).map(|x| (i, x.to_string())));
        }
        None
    }

    pub(super) fn null_error(&self, name: &str, row: usize, expected: &str) -> Error {
        Error::input(format!("{} is null, expected {expected}", self.at(name, row)))
    }

    /// An integer column as i64; nulls are an error.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        let col = self.column(name)?;
        // A float column whose every value is whole (ids exported as 5.0) reads as integers.
        let whole = col.dtype().is_float() && self.first_offender(name, true).is_none();
        if !col.dtype().is_integer() && !whole {
            return Err(self.wrong_type(name, col.dtype(), "an integer"));
        }
        if let Ok(ca) = col.as_materialized_series().u64()
            && let Some((i, v)) =
                ca.iter().enumerate().find_map(|(i, v)| v.filter(|&v| v > i64::MAX as u64).map(|v| (i, v)))
        {
            return Err(Error::input(format!(
                "{} is {v}, expected an integer of at most {} (ids and numbers are read as 64-bit signed integers)",
                self.at(name, i),
                i64::MAX
            )));
        }
        let s = col.strict_cast(&DataType::Int64).map_err(|e| {
            Error::input(format!(
                "{}: column `{name}` does not fit in an int64 ({})",
                self.name,
                one_line(&e.to_string())
            ))
        })?;
        let ca = s.i64().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter().enumerate().map(|(i, v)| v.ok_or_else(|| self.null_error(name, i, "an integer"))).collect()
    }

    pub(super) fn cast_error(&self, name: &str, e: &PolarsError) -> Error {
        Error::input(format!("{}: column `{name}`: {}", self.name, one_line(&e.to_string())))
    }

    /// A numeric column as f64. Nulls are an error unless `allow_null` (then NaN); NaN and
    /// infinity are always an error.
    pub fn floats(&self, name: &str, allow_null: bool) -> Result<Vec<f64>> {
        let col = self.column(name)?;
        if !col.dtype().is_primitive_numeric() {
            let expected = if allow_null { "a number (or no value where it is unknown)" } else { "a number" };
            return Err(self.wrong_type(name, col.dtype(), expected));
        }
        let s = col.cast(&DataType::Float64).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.f64().map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = Vec::with_capacity(ca.len());
        for (i, v) in ca.iter().enumerate() {
            match v {
                Some(x) if x.is_finite() => out.push(x),
                Some(x) => {
                    let unknown = if allow_null { " (or no value where it is unknown)" } else { "" };
                    return Err(Error::input(format!(
                        "{} is {x}, expected a finite number{unknown}",
                        self.at(name, i)
                    )));
                }
                None if allow_null => out.push(f64::NAN),
                None => return Err(self.null_error(name, i, "a number")),
            }
        }
        Ok(out)
    }

    /// An id column in its own type: integers (any width) or strings (Utf8, categorical).
    pub fn ids(&self, name: &str) -> Result<Ids> {
        self.read_ids(name, false)
    }

    /// Like [`Table::ids`] for an attribute (category, segment, declared categorical): in a
    /// text column a missing value reads as the empty string, a category of its own.
    pub fn categories(&self, name: &str) -> Result<Ids> {
        self.read_ids(name, true)
    }

    fn read_ids(&self, name: &str, missing_as_empty: bool) -> Result<Ids> {
        let col = self.column(name)?;
        let dt = col.dtype();
        if dt.is_integer() || dt.is_float() {
            // Floats only when every value is whole (else `ints` names the first that is not).
            return self.ints(name).map(Ids::Int);
        }
        if !(dt.is_string() || dt.is_categorical() || dt.is_enum()) {
            return Err(self.wrong_type(name, dt, "integer or string ids"));
        }
        let s = col.cast(&DataType::String).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.str().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(v) => Ok(v.to_string()),
                None if missing_as_empty => Ok(String::new()),
                None => Err(self.null_error(name, i, "an id")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Ids::Str)
    }

    /// A timestamp column as unix seconds (floored), from integers or floats in `unit`,
    /// strings (ISO-8601 / RFC 3339, or `format`), or Parquet/Arrow datetimes and dates; with
    /// each row's UTC offset (seconds) when the column holds strings that carry offsets.
    pub fn timestamps(&self, name: &str, unit: TimeUnit, format: Option<&str>) -> Result<(Vec<i64>, Option<Vec<i32>>)> {
        let col = self.column(name)?;
        if let DataType::Datetime(_, Some(tz)) = col.dtype() {
            // A zoned datetime holds UTC instants; its zone gives the local offsets.
            let zone = tz.to_string().parse::<chrono_tz::Tz>().ok().filter(|z| *z != chrono_tz::UTC);
            let secs = self.numeric_timestamps(name, unit)?;
            let offsets = zone.map(|z| secs.iter().map(|&t| utc_offset_at(z, t)).collect());
            return Ok((secs, offsets));
        }
        if !col.dtype().is_string() {
            return self.numeric_timestamps(name, unit).map(|t| (t, None));
        }
        let ca = col.str().map_err(|e| Error::Internal(e.to_string()))?;
        let expected = match format {
            Some(f) => format!("a timestamp in the recipe's timestamp_format {f:?}"),
            None => format!("a timestamp: {TIMESTAMP_FORMATS}"),
        };
        let (mut secs, mut offsets, mut any_offset) =
            (Vec::with_capacity(ca.len()), Vec::with_capacity(ca.len()), false);
        for (i, v) in ca.iter().enumerate() {
            let v = v.ok_or_else(|| self.null_error(name, i, "a timestamp"))?;
            // A column mixing numbers and strings reads as strings: a number there is still
            // unix time in the recipe's unit.
            if format.is_none()
                && let Ok(n) = v.trim().parse::<i64>()
            {
                secs.push(n.div_euclid(unit.per_second()));
                offsets.push(0);
                continue;
            }
            let (t, off) = parse_timestamp(v, format)
                .ok_or_else(|| Error::input(format!("{} is {v:?}, expected {expected}", self.at(name, i))))?;
            secs.push(t);
            offsets.push(off.unwrap_or(0));
            any_offset |= off.is_some();
        }
        Ok((secs, any_offset.then_some(offsets)))
    }

    /// [`Table::timestamps`] of a numeric or temporal column.
    fn numeric_timestamps(&self, name: &str, unit: TimeUnit) -> Result<Vec<i64>> {
        let col = self.column(name)?;
        let per_unit = |tu: polars::prelude::TimeUnit| match tu {
            polars::prelude::TimeUnit::Nanoseconds => 1_000_000_000,
            polars::prelude::TimeUnit::Microseconds => 1_000_000,
            polars::prelude::TimeUnit::Milliseconds => 1_000,
        };
        match col.dtype().clone() {
            dt if dt.is_integer() => {
                let per = unit.per_second();
                Ok(self.ints(name)?.into_iter().map(|v| v.div_euclid(per)).collect())
            }
            dt if dt.is_float() => {
                let per = unit.per_second() as f64;
                Ok(self.floats(name, false)?.into_iter().map(|v| (v / per).floor() as i64).collect())
            }
            DataType::Datetime(tu, _) => {
                let per = per_unit(tu);
                let raw = self.physical_ints(name, col)?;
                Ok(raw.into_iter().map(|v| v.div_euclid(per)).collect())
            }
            DataType::Date => Ok(self.physical_ints(name, col)?.into_iter().map(|d| d * 86_400).collect()),
            dt => Err(self.wrong_type(name, &dt, "a timestamp (a number, a string or a datetime)")),
        }
    }

    /// The i64 physical values of a temporal column; nulls are an error.
    fn physical_ints(&self, name: &str, col: &Column) -> Result<Vec<i64>> {
        let s = col.to_physical_repr().cast(&DataType::Int64).map_err(|e| self.cast_error(name, &e))?;
        let ca = s.i64().map_err(|e| Error::Internal(e.to_string()))?;
        ca.iter().enumerate().map(|(i, v)| v.ok_or_else(|| self.null_error(name, i, "a timestamp"))).collect()
    }
}

/// Whether a float is a whole number an int64 holds.
fn is_int64(x: f64) -> bool {
    // -2^63 ..= 2^63 - 1: the largest float below 2^63 is whole.
    x.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x)
}
