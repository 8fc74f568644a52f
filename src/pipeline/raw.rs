//! Raw rows into model inputs for `predict --raw`: a file of requests (`user_id`, `place_id`,
//! `timestamp`, `lat`/`lon` when the model reads a distance, `utc_offset_s` without a recipe
//! time zone, and the declared columns the model reads that `prepare` does not compute),
//! featurized with `prepare`'s featurizer settings, place snapshot and event log exactly as a
//! server's `POST /v1/score/raw` does: every row sees the events strictly before its time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::data::schema::{TableConfig, TimeUnit};
use crate::data::table::Table;
use reco_runtime::artifact::spec::{FeatureSpec, IdType, Ids};
use reco_runtime::error::{Error, Result};
use reco_runtime::features::online::{Extra, Featurizer, RawRow, RowFlags, Settings};
use reco_runtime::features::state::{Id, Limits, OnlineState};
use reco_runtime::features::{calendar, files};
use reco_runtime::runtime::Columns;

/// How many rows the features could not fully know.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FlagCounts {
    /// Rows whose user the model does not know (scored through the out-of-vocabulary row).
    pub unknown_user: usize,
    /// Rows whose place is not in the snapshot or the vocabulary.
    pub unknown_place: usize,
}

/// The model inputs of the raw rows in `data`, with `features` (a `prepare` output directory).
pub fn featurize(data: &Path, features: &Path, spec: &FeatureSpec) -> Result<(Columns, FlagCounts)> {
    let f = featurizer(features, spec)?;
    let rows = read_rows(data, spec, &f)?;
    let window = f.settings().window_s;
    // Every event in, any request time exact: nothing is evicted.
    let limits = Limits { lateness: i64::MAX / 4, max_visits_per_user: usize::MAX, max_users: usize::MAX };
    let mut state = OnlineState::new(window, f.categories(), limits);
    for e in files::read_events(&features.join("events.parquet"))? {
        state.insert(f.event(e));
    }
    let (cols, flags) = f.columns(&state, &rows).map_err(|e| e.with_prefix(format_args!("{}: ", data.display())))?;
    Ok((cols, count(&flags)))
}

fn count(flags: &[RowFlags]) -> FlagCounts {
    FlagCounts {
        unknown_user: flags.iter().filter(|f| f.unknown_user).count(),
        unknown_place: flags.iter().filter(|f| f.unknown_place).count(),
    }
}

/// The featurizer of a features directory for a model of `spec`.
fn featurizer(dir: &Path, spec: &FeatureSpec) -> Result<Featurizer> {
    let path = dir.join("featurizer.json");
    let text = std::fs::read(&path).map_err(|_| {
        Error::input(format!("{}: missing (--features takes a directory `reco-cli prepare` wrote)", path.display()))
    })?;
    let settings: Settings =
        serde_json::from_slice(&text).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let places = files::read_places(&dir.join("places.parquet"), spec)?;
    let zone = settings.timezone.as_deref().map(calendar::zone).transpose()?;
    Featurizer::new(spec.clone(), settings, places, zone)
}

/// The request columns of a raw file.
fn read_rows(data: &Path, spec: &FeatureSpec, f: &Featurizer) -> Result<Vec<RawRow>> {
    let text_columns =
        spec.categorical.iter().filter(|c| c.dtype() == IdType::String).map(|c| c.name.clone()).collect();
    let t = Table::read(data, &TableConfig { path: Some(data.to_path_buf()), text_columns, ..TableConfig::default() })?;
    let to_ids = |ids: Ids| -> Vec<Id> {
        match ids {
            Ids::Int(v) => v.into_iter().map(Id::Int).collect(),
            Ids::Str(v) => v.into_iter().map(Id::Str).collect(),
        }
    };
    let users = to_ids(t.ids("user_id")?);
    let places = to_ids(t.ids("place_id")?);
    let (ts, offsets) = t.timestamps("timestamp", TimeUnit::Seconds, None)?;
    let at = if t.has("lat") && t.has("lon") { Some((t.floats("lat", false)?, t.floats("lon", false)?)) } else { None };
    let declared = if t.has("utc_offset_s") { Some(t.ints("utc_offset_s")?) } else { None };
    let extras = extra_columns(&t, spec)?;
    Ok((0..t.height())
        .map(|i| {
            let offset = declared.as_ref().map(|o| o[i]).or_else(|| offsets.as_ref().map(|o| i64::from(o[i])));
            f.row(RawRow {
                user: users[i].clone(),
                place: places[i].clone(),
                ts: ts[i],
                utc_offset_s: offset,
                at: at.as_ref().map(|(la, lo)| (la[i], lo[i])),
                extra: extras.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect(),
            })
        })
        .collect())
}

/// The file's columns the model reads besides the request's own (segment, declared ones).
fn extra_columns(t: &Table, spec: &FeatureSpec) -> Result<BTreeMap<String, Vec<Extra>>> {
    let skip = ["user_id", "place_id", "timestamp", "lat", "lon", "utc_offset_s"];
    let mut out = BTreeMap::new();
    // Multi-valued columns come from the place snapshot only.
    for c in spec.categorical.iter().filter(|c| c.bag.is_none() && !skip.contains(&c.name.as_str()) && t.has(&c.name)) {
        let v = match t.ids(&c.name)? {
            Ids::Int(v) => v.into_iter().map(|x| Extra::Number(x as f64)).collect(),
            Ids::Str(v) => v.into_iter().map(Extra::Text).collect(),
        };
        out.insert(c.name.clone(), v);
    }
    for n in spec.numeric.iter().filter(|n| !skip.contains(&n.name.as_str()) && t.has(&n.name)) {
        out.insert(n.name.clone(), t.floats(&n.name, false)?.into_iter().map(Extra::Number).collect());
    }
    Ok(out)
}
