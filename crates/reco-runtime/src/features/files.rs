//! What `prepare` writes for a server to start warm (feature `parquet`): the place snapshot
//! (`places.parquet`) as the featurizer's [`Places`], and the event log (`events.parquet`:
//! `user_id`, `place_id`, `timestamp`, `visit`, `rating`) as [`Event`]s to replay into an
//! [`OnlineState`](super::state::OnlineState).

use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::online::Places;
use super::state::{Event, Id};
use super::window;
use crate::artifact::spec::{FeatureSpec, Ids};
use crate::error::{Error, Result};

/// Every row of a Parquet file in one batch.
fn read_all(path: &Path) -> Result<RecordBatch> {
    let at = |e: &dyn std::fmt::Display| Error::input(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| at(&e))?.build().map_err(|e| at(&e))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| at(&e))?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Err(Error::input(format!("{}: no rows", path.display()))),
    };
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| at(&e))
}

fn column<'a>(b: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| Error::input(format!("{}: no column `{name}`", path.display())))
}

fn cast(a: &ArrayRef, to: &DataType, path: &Path, name: &str) -> Result<ArrayRef> {
    arrow::compute::cast(a, to).map_err(|e| Error::input(format!("{}: column `{name}`: {e}", path.display())))
}

/// A column of ids (integers, else text; nulls as the empty string or `i64::MIN`).
fn ids(a: &ArrayRef, path: &Path, name: &str) -> Result<Ids> {
    if a.data_type().is_integer() {
        let c = cast(a, &DataType::Int64, path, name)?;
        let v = c.as_primitive::<Int64Type>();
        return Ok(Ids::Int((0..v.len()).map(|i| if v.is_null(i) { i64::MIN } else { v.value(i) }).collect()));
    }
    let c = cast(a, &DataType::Utf8, path, name)?;
    Ok(Ids::Str(c.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect()))
}

fn f64s(a: &ArrayRef, path: &Path, name: &str) -> Result<Vec<f64>> {
    let c = cast(a, &DataType::Float64, path, name)?;
    Ok(c.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn to_ids(ids: Ids) -> Vec<Id> {
    match ids {
        Ids::Int(v) => v.into_iter().map(Id::Int).collect(),
        Ids::Str(v) => v.into_iter().map(Id::Str).collect(),
    }
}

/// The place snapshot's columns a model with `spec` reads (window statistics aside, which
/// come from the state).
pub fn read_places(path: &Path, spec: &FeatureSpec) -> Result<Places> {
    let b = read_all(path)?;
    let mut p = Places { ids: to_ids(ids(column(&b, path, "place_id")?, path, "place_id")?), ..Places::default() };
    if b.column_by_name("place_lat").is_some() {
        let lat = f64s(column(&b, path, "place_lat")?, path, "place_lat")?;
        p.coords = Some((lat, f64s(column(&b, path, "place_lon")?, path, "place_lon")?));
    }
    for c in spec.categorical.iter().filter(|c| c.name != "place_id") {
        let Some(a) = b.column_by_name(&c.name) else { continue };
        if c.bag.is_some() {
            let (offsets, values) = crate::runtime::arrow_io::list_from_array(&c.name, a)
                .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
            p.categorical.insert(c.name.clone(), ids(&values, path, &c.name)?);
            p.lists.insert(c.name.clone(), offsets);
        } else {
            p.categorical.insert(c.name.clone(), ids(a, path, &c.name)?);
        }
    }
    if let Some(a) = b.column_by_name("category").filter(|_| !p.categorical.contains_key("category")) {
        p.categorical.insert("category".into(), ids(a, path, "category")?);
    }
    for n in spec.numeric.iter().filter(|n| !window::NAMES.contains(&n.name.as_str())) {
        if let Some(a) = b.column_by_name(&n.name) {
            p.numeric.insert(n.name.clone(), f64s(a, path, &n.name)?.into_iter().map(|x| x as f32).collect());
        }
    }
    Ok(p)
}

/// The events of `events.parquet`, in file order.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let b = read_all(path)?;
    let users = to_ids(ids(column(&b, path, "user_id")?, path, "user_id")?);
    let places = to_ids(ids(column(&b, path, "place_id")?, path, "place_id")?);
    let ts = cast(column(&b, path, "timestamp")?, &DataType::Int64, path, "timestamp")?;
    let ts = ts.as_primitive::<Int64Type>();
    let visit = f64s(column(&b, path, "visit")?, path, "visit")?;
    let rating = f64s(column(&b, path, "rating")?, path, "rating")?;
    Ok(users
        .into_iter()
        .zip(places)
        .enumerate()
        .map(|(i, (user, place))| Event {
            user,
            place,
            ts: ts.value(i),
            visit: visit[i] > 0.5,
            rating: Some(rating[i]).filter(|r| r.is_finite()),
        })
        .collect())
}
