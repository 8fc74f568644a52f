//! Raw requests into the model's input columns, with `prepare`'s formulas: a request names a
//! user, a place, a time, where the user is, and the declared columns the model reads that
//! `prepare` does not compute; the rest comes from the place snapshot `prepare` writes
//! (`places.parquet`: coordinates, category, static place features) and from the
//! [`OnlineState`] (trailing-window place statistics, the user's history). [`Settings`] is
//! `prepare`'s `featurizer.json`: the window, the time zone, which features exist.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::calendar::{self, DISTANCE, TIME_NAMES};
use super::history::{self, NO_CATEGORY};
use super::state::{Id, OnlineState};
use super::window;
use crate::artifact::spec::{FeatureSpec, IdType, Ids};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Columns;

/// What `prepare` decided that the features of a raw request depend on (`featurizer.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Trailing window of the place statistics and the windowed history, seconds.
    pub window_s: i64,
    /// The recipe's IANA time zone of the hour and day features (`None`: UTC, or each
    /// request's own `utc_offset_s`).
    pub timezone: Option<String>,
    /// Whether the user-history features exist.
    pub history: bool,
    /// Whether the places have categories (the history's category share).
    pub with_category: bool,
    /// The moment the snapshot and the state describe (one second after the last event).
    pub snapshot_ts: i64,
}

/// One raw request row.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// User id.
    pub user: Id,
    /// Place id.
    pub place: Id,
    /// Unix seconds of the request.
    pub ts: i64,
    /// UTC offset of the request's local time, seconds (used without a recipe time zone).
    pub utc_offset_s: Option<i64>,
    /// Where the user is (`distance_km`), when the model uses a distance.
    pub at: Option<(f64, f64)>,
    /// Other columns the model reads that `prepare` does not compute (segment, declared
    /// user and interaction features): numbers or ids by name.
    pub extra: BTreeMap<String, Extra>,
}

/// A declared column's value in a raw request.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    /// A number (numeric columns, or an integer id).
    Number(f64),
    /// A string id.
    Text(String),
}

/// What a request row's features could not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowFlags {
    /// The user is not in the model's vocabulary: scored through the out-of-vocabulary row.
    pub unknown_user: bool,
    /// The place is not in the snapshot (and not in the vocabulary): no coordinates,
    /// category or static features; scored through the out-of-vocabulary row.
    pub unknown_place: bool,
    /// The request is older than the state's horizon: window statistics may miss events.
    pub late: bool,
}

/// The place snapshot: per place, what does not change with the request.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// Place ids, in snapshot order.
    pub ids: Vec<Id>,
    /// Coordinates, degrees, when places have them.
    pub coords: Option<(Vec<f64>, Vec<f64>)>,
    /// Categorical place columns (category, declared place categoricals) by name.
    pub categorical: BTreeMap<String, Ids>,
    /// The offsets of the multi-valued ones among them (place `i` holds ids
    /// `offsets[i]..offsets[i + 1]` of its `categorical` column).
    pub lists: BTreeMap<String, Vec<usize>>,
    /// Static numeric place columns (place_rating, price_level, declared) by name.
    pub numeric: BTreeMap<String, Vec<f32>>,
}

/// Turns raw requests into a model's input columns.
pub struct Featurizer {
    spec: FeatureSpec,
    settings: Settings,
    places: Places,
    index: HashMap<Id, usize>,
    offset: Box<dyn Fn(i64) -> i64 + Send + Sync>,
}

/// A bad request ([`ErrorKind::InputColumn`]).
fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InputColumn, msg)
}

impl Featurizer {
    /// A featurizer for `spec` with `prepare`'s `settings` and place snapshot; `offset` gives
    /// the recipe time zone's UTC offset (seconds) at a unix time (`None`: each request's own
    /// offset, else UTC).
    pub fn new(
        spec: FeatureSpec,
        settings: Settings,
        places: Places,
        offset: Option<Box<dyn Fn(i64) -> i64 + Send + Sync>>,
    ) -> Result<Self> {
        let index = places.ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let offset = offset.unwrap_or_else(|| Box::new(|_| 0));
        let f = Self { spec, settings, places, index, offset };
        f.check()?;
        Ok(f)
    }

    /// Every model input is one the featurizer computes, takes from the snapshot or can
    /// take from a request.
    fn check(&self) -> Result<()> {
        if let Some(c) =
            self.spec.categorical.iter().find(|c| c.bag.is_some() && !self.places.lists.contains_key(&c.name))
        {
            return Err(Error::input(format!(
                "the model reads the multi-valued column `{}`, which the place snapshot does not hold as lists (lists from users or requests are not supported by the online featurizer)",
                c.name
            )));
        }
        for n in &self.spec.numeric {
            let name = n.name.as_str();
            if name == DISTANCE && self.places.coords.is_none() {
                return Err(Error::input("the model reads distance_km but the place snapshot has no coordinates"));
            }
            if history::NAMES.contains(&name) && !self.settings.history {
                return Err(Error::input(format!("the model reads {name} but featurizer.json says history = false")));
            }
        }
        Ok(())
    }

    /// The places' categories as numbers for the state's history (equal values, equal
    /// numbers; missing: none).
    pub fn categories(&self) -> HashMap<Id, u32> {
        let Some(cat) = self.places.categorical.get("category").filter(|_| self.settings.with_category) else {
            return HashMap::new();
        };
        let mut codes: HashMap<String, u32> = HashMap::new();
        let mut out = HashMap::new();
        for (i, id) in self.places.ids.iter().enumerate() {
            let v = match cat {
                Ids::Int(v) => v[i].to_string(),
                Ids::Str(v) => v[i].clone(),
            };
            let next = codes.len() as u32;
            out.insert(id.clone(), if v.is_empty() { NO_CATEGORY } else { *codes.entry(v).or_insert(next) });
        }
        out
    }

    /// A raw id as the model's column holds them: digits sent as text for an integer
    /// column become the integer (the state and the snapshot are keyed that way).
    pub fn id_as(&self, column: &str, id: Id) -> Id {
        let int = self.spec.categorical.iter().any(|c| c.name == column && c.dtype() == IdType::Int64);
        match id {
            Id::Str(s) if int => s.trim().parse::<i64>().map_or(Id::Str(s), Id::Int),
            Id::Int(v) if !int && self.spec.categorical.iter().any(|c| c.name == column) => Id::Str(v.to_string()),
            other => other,
        }
    }

    /// An event with its ids as the model's columns hold them ([`Featurizer::id_as`]).
    pub fn event(&self, mut e: super::state::Event) -> super::state::Event {
        e.user = self.id_as("user_id", e.user);
        e.place = self.id_as("place_id", e.place);
        e
    }

    /// A request row with its ids as the model's columns hold them.
    pub fn row(&self, mut r: RawRow) -> RawRow {
        r.user = self.id_as("user_id", r.user);
        r.place = self.id_as("place_id", r.place);
        r
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The model's input columns for `rows` (ids as [`Featurizer::row`] gives them) at the
    /// state's knowledge, and each row's flags.
    pub fn columns(&self, state: &OnlineState, rows: &[RawRow]) -> Result<(Columns, Vec<RowFlags>)> {
        let mut flags = vec![RowFlags::default(); rows.len()];
        let place_rows: Vec<Option<usize>> = rows.iter().map(|r| self.index.get(&r.place).copied()).collect();
        let mut categorical = Vec::with_capacity(self.spec.categorical.len());
        let mut lists = Vec::with_capacity(self.spec.categorical.len());
        for c in &self.spec.categorical {
            if c.bag.is_some() {
                let (ids, offsets) = self.place_lists(&c.name, c.dtype(), &place_rows)?;
                categorical.push(ids);
                lists.push(Some(offsets));
                continue;
            }
            lists.push(None);
            let ids = self.categorical(&c.name, c.dtype(), rows, &place_rows)?;
            if c.name == "user_id" || c.name == "place_id" {
                let known = c.rows_of(&ids);
                for (f, &k) in flags.iter_mut().zip(&known) {
                    if c.name == "user_id" {
                        f.unknown_user = k == 0;
                    } else {
                        f.unknown_place |= k == 0;
                    }
                }
            }
            categorical.push(ids);
        }
        for (f, p) in flags.iter_mut().zip(&place_rows) {
            f.unknown_place |= p.is_none();
        }
        let mut numeric = Vec::with_capacity(self.spec.numeric.len());
        let computed = self.computed(state, rows, &place_rows, &mut flags)?;
        for n in &self.spec.numeric {
            let col = match computed.get(n.name.as_str()) {
                Some(v) => v.iter().map(|&x| x as f32).collect(),
                None => self.given_numeric(&n.name, rows, &place_rows)?,
            };
            numeric.push(col);
        }
        Ok((Columns { rows: rows.len(), categorical, lists: crate::runtime::lists_or_none(lists), numeric }, flags))
    }

    /// A multi-valued input, from the place snapshot: each row's place's list (an unknown
    /// place: an empty list). Lists of a user or a request are not taken yet: an error.
    fn place_lists(&self, name: &str, dtype: IdType, place_rows: &[Option<usize>]) -> Result<(Ids, Vec<usize>)> {
        // `check` made sure the snapshot holds it.
        let (Some(ids), Some(offsets)) = (self.places.categorical.get(name), self.places.lists.get(name)) else {
            return Err(Error::Internal(format!("{name}: not in the place snapshot")));
        };
        if ids.id_type() != dtype {
            return Err(Error::input(format!(
                "the place snapshot's `{name}` holds {} ids, the model expects {dtype} ids",
                ids.id_type()
            )));
        }
        Ok(crate::runtime::take_lists(ids, offsets, place_rows.iter().copied()))
    }

    /// One categorical input: the request's user or place, a snapshot column, or the request's.
    fn categorical(&self, name: &str, dtype: IdType, rows: &[RawRow], place_rows: &[Option<usize>]) -> Result<Ids> {
        let id_of = |id: &Id, what: &str| -> Result<Extra> {
            Ok(match id {
                Id::Int(v) => Extra::Number(*v as f64),
                Id::Str(s) => match (dtype, s.parse::<i64>()) {
                    (IdType::Int64, Ok(v)) => Extra::Number(v as f64),
                    (IdType::Int64, Err(_)) => return Err(bad(format!("{what} {s:?}: the model's ids are integers"))),
                    (IdType::String, _) => Extra::Text(s.clone()),
                },
            })
        };
        let values: Vec<Extra> = match name {
            "user_id" => rows.iter().map(|r| id_of(&r.user, "user_id")).collect::<Result<_>>()?,
            "place_id" => rows.iter().map(|r| id_of(&r.place, "place_id")).collect::<Result<_>>()?,
            _ => match self.places.categorical.get(name) {
                Some(col) => place_rows
                    .iter()
                    .map(|p| match (col, p) {
                        (Ids::Int(v), Some(i)) => Extra::Number(v[*i] as f64),
                        (Ids::Str(v), Some(i)) => Extra::Text(v[*i].clone()),
                        // An unknown place: a value no vocabulary holds, its OOV row.
                        (Ids::Int(_), None) => Extra::Number(f64::NAN),
                        (Ids::Str(_), None) => Extra::Text(String::from("\u{0}unknown")),
                    })
                    .collect(),
                None => rows.iter().enumerate().map(|(i, r)| extra(r, i, name)).collect::<Result<_>>()?,
            },
        };
        ids_of(name, dtype, values)
    }

    /// The columns computed from the request, the snapshot and the state, by name.
    fn computed(
        &self,
        state: &OnlineState,
        rows: &[RawRow],
        place_rows: &[Option<usize>],
        flags: &mut [RowFlags],
    ) -> Result<HashMap<&'static str, Vec<f64>>> {
        let mut out: HashMap<&'static str, Vec<f64>> = HashMap::new();
        let rating = self.places.numeric.get("place_rating");
        for (i, r) in rows.iter().enumerate() {
            let local =
                r.ts + if self.settings.timezone.is_some() { (self.offset)(r.ts) } else { r.utc_offset_s.unwrap_or(0) };
            for (name, v) in TIME_NAMES.iter().zip(calendar::time_values(local)) {
                out.entry(name).or_default().push(v);
            }
            out.entry(DISTANCE).or_default().push(self.distance(r, place_rows[i])?);
            let w = state.window(&r.place, r.ts);
            flags[i].late = w.late;
            let static_rating = match (rating, place_rows[i]) {
                (Some(v), Some(p)) => f64::from(v[p]),
                _ => f64::NAN,
            };
            for (name, v) in window::NAMES.iter().zip(w.stats.values(static_rating)) {
                out.entry(name).or_default().push(v);
            }
            if self.settings.history {
                let h = state.history(&r.user, &r.place, r.ts);
                for (name, v) in
                    history::names(self.settings.with_category).iter().zip(h.values(self.settings.with_category))
                {
                    out.entry(name).or_default().push(v);
                }
            }
        }
        Ok(out)
    }

    /// `distance_km` of a row (NaN when the model does not read it and nothing is known).
    fn distance(&self, r: &RawRow, place: Option<usize>) -> Result<f64> {
        if !self.spec.numeric.iter().any(|n| n.name == DISTANCE) {
            return Ok(f64::NAN);
        }
        let (Some((lat, lon)), Some((plat, plon))) = (r.at, self.places.coords.as_ref()) else {
            return Err(bad(format!("the model reads distance_km: the request for user {} needs lat and lon", r.user)));
        };
        // An unknown place has no coordinates: the distance the model saw least often, 0.
        Ok(place.map_or(0.0, |p| calendar::distance_km(lat, lon, plat[p], plon[p])))
    }

    /// A numeric input the featurizer does not compute: from the snapshot, else the request.
    fn given_numeric(&self, name: &str, rows: &[RawRow], place_rows: &[Option<usize>]) -> Result<Vec<f32>> {
        if let Some(col) = self.places.numeric.get(name) {
            return Ok(place_rows.iter().map(|p| p.map_or(0.0, |i| col[i])).collect());
        }
        rows.iter()
            .enumerate()
            .map(|(i, r)| match extra(r, i, name)? {
                Extra::Number(v) if v.is_finite() => Ok(v as f32),
                other => Err(bad(format!("request row {i}: `{name}` is {other:?}, expected a finite number"))),
            })
            .collect()
    }
}

/// A declared column of request row `i`, or an error naming it.
fn extra(r: &RawRow, i: usize, name: &str) -> Result<Extra> {
    r.extra.get(name).cloned().ok_or_else(|| bad(format!("request row {i}: missing `{name}`, which the model reads")))
}

/// Values as the column's id type.
fn ids_of(name: &str, dtype: IdType, values: Vec<Extra>) -> Result<Ids> {
    match dtype {
        IdType::Int64 => values
            .into_iter()
            .map(|v| match v {
                Extra::Number(x) if x.is_nan() => Ok(i64::MIN),
                Extra::Number(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
                other => Err(bad(format!("`{name}` is {other:?}, expected an integer id"))),
            })
            .collect::<Result<_>>()
            .map(Ids::Int),
        IdType::String => Ok(Ids::Str(
            values
                .into_iter()
                .map(|v| match v {
                    Extra::Text(s) => s,
                    Extra::Number(x) => format!("{x}"),
                })
                .collect(),
        )),
    }
}
