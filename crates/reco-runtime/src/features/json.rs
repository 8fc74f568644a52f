//! JSON bodies of a server's online endpoints: events (`{"events": [{"user_id", "place_id",
//! "timestamp", "visit"?, "rating"?}]}`) and raw score requests (`{"rows": [{"user_id",
//! "place_id", "timestamp", "lat"?, "lon"?, "utc_offset_s"?, ...declared columns}]}`). Ids are
//! integers or strings, timestamps integer unix seconds. Every refusal is one line naming the
//! item and field ([`BodyError`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::online::{Extra, RawRow};
use super::state::{Event, Id};
use crate::runtime::json::BodyError;

/// The array `key` of a body that holds only it, at most `max` items.
fn items<'a>(top: &'a Map<String, Value>, key: &str, max: usize) -> Result<&'a Vec<Value>, BodyError> {
    if let Some(k) = top.keys().find(|k| *k != key) {
        return Err(BodyError::Invalid(format!("unknown field `{}`: the body holds only `{key}`", k.escape_debug())));
    }
    let list = match top.get(key) {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(BodyError::Invalid(format!("`{key}` must be an array of objects"))),
        None => return Err(BodyError::Invalid(format!("missing field `{key}`"))),
    };
    if list.is_empty() {
        return Err(BodyError::Invalid(format!("`{key}` is empty: send at least one")));
    }
    if list.len() > max {
        return Err(BodyError::TooManyRows { rows: list.len(), max });
    }
    Ok(list)
}

fn parse(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(top)) => Ok(top),
        Ok(_) => Err(BodyError::Invalid("the body must be a JSON object".into())),
        Err(e) => Err(BodyError::Invalid(format!("the body is not valid JSON: {e}"))),
    }
}

fn object<'a>(v: &'a Value, what: &str, i: usize) -> Result<&'a Map<String, Value>, BodyError> {
    v.as_object().ok_or_else(|| BodyError::Invalid(format!("{what} {i} is not an object")))
}

fn column(msg: String) -> BodyError {
    BodyError::Column(msg)
}

/// An id field: an integer or a non-empty string.
fn id(o: &Map<String, Value>, key: &str, at: &str) -> Result<Id, BodyError> {
    match o.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Id::Int)
            .ok_or_else(|| column(format!("{at}: `{key}` is {n}, expected an integer or string id"))),
        Some(Value::String(s)) if !s.is_empty() => Ok(Id::Str(s.clone())),
        Some(v) => Err(column(format!("{at}: `{key}` is {v}, expected an integer or string id"))),
        None => Err(column(format!("{at}: missing `{key}`"))),
    }
}

/// The `timestamp` field: integer unix seconds.
fn timestamp(o: &Map<String, Value>, at: &str) -> Result<i64, BodyError> {
    match o.get("timestamp") {
        Some(Value::Number(n)) => {
            n.as_i64().ok_or_else(|| column(format!("{at}: `timestamp` is {n}, expected integer unix seconds")))
        }
        Some(v) => Err(column(format!("{at}: `timestamp` is {v}, expected integer unix seconds"))),
        None => Err(column(format!("{at}: missing `timestamp`"))),
    }
}

/// An optional finite number.
fn number(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, BodyError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64().filter(|x| x.is_finite()) {
            Some(x) => Ok(Some(x)),
            None => Err(column(format!("{at}: `{key}` is {n}, expected a finite number"))),
        },
        Some(v) => Err(column(format!("{at}: `{key}` is {v}, expected a number"))),
    }
}

/// An events body, at most `max` events.
pub fn events_from_json(body: &[u8], max: usize) -> Result<Vec<Event>, BodyError> {
    let top = parse(body)?;
    let list = items(&top, "events", max)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let at = format!("event {i}");
        let o = object(v, "event", i)?;
        if let Some(k) =
            o.keys().find(|k| !["user_id", "place_id", "timestamp", "visit", "rating"].contains(&k.as_str()))
        {
            return Err(column(format!(
                "{at}: unknown field `{}` (user_id, place_id, timestamp, visit, rating)",
                k.escape_debug()
            )));
        }
        let visit = match o.get("visit") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(column(format!("{at}: `visit` is {v}, expected true or false"))),
        };
        out.push(Event {
            user: id(o, "user_id", &at)?,
            place: id(o, "place_id", &at)?,
            ts: timestamp(o, &at)?,
            visit,
            rating: number(o, "rating", &at)?,
        });
    }
    Ok(out)
}

/// A raw score body, at most `max` rows.
pub fn raw_rows_from_json(body: &[u8], max: usize) -> Result<Vec<RawRow>, BodyError> {
    let top = parse(body)?;
    let list = items(&top, "rows", max)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let at = format!("row {i}");
        let o = object(v, "row", i)?;
        let (lat, lon) = (number(o, "lat", &at)?, number(o, "lon", &at)?);
        let offset = number(o, "utc_offset_s", &at)?;
        if offset.is_some_and(|x| x.fract() != 0.0 || x.abs() > 18.0 * 3600.0) {
            return Err(column(format!("{at}: `utc_offset_s` must be whole seconds within ±18 h")));
        }
        let mut extra = BTreeMap::new();
        for (k, v) in o
            .iter()
            .filter(|(k, _)| !["user_id", "place_id", "timestamp", "lat", "lon", "utc_offset_s"].contains(&k.as_str()))
        {
            let x = match v {
                Value::Number(n) => Extra::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => Extra::Text(s.clone()),
                other => {
                    return Err(column(format!(
                        "{at}: `{}` is {other}, expected a number or string",
                        k.escape_debug()
                    )));
                }
            };
            extra.insert(k.clone(), x);
        }
        out.push(RawRow {
            user: id(o, "user_id", &at)?,
            place: id(o, "place_id", &at)?,
            ts: timestamp(o, &at)?,
            utc_offset_s: offset.map(|x| x as i64),
            at: lat.zip(lon),
            extra,
        });
    }
    Ok(out)
}
