//! The online featurizer against `prepare`: `prepare`'s event log replayed event by event
//! into the online state, each feature row asked for at its own time before the events of
//! that second go in, gives every model input of every feature file bit for bit (the tiny
//! synthetic run: explicit labels, ratings, integer ids, UTC; the check-in fixture: visits
//! only, sampled negatives, string ids, categories, a New York time zone, previous-visit
//! context).

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use reco_runtime::artifact::spec::{FeatureSpec, Ids};
use reco_runtime::features::online::{Extra, Featurizer, RawRow, Settings};
use reco_runtime::features::state::{Id, Limits, OnlineState};
use reco_runtime::features::{calendar, files};
use reco_runtime::runtime::Columns;

use crate::support::{checkins_case, ok, read_batch, reco, run_dir};

fn featurizer(dir: &Path) -> (Featurizer, FeatureSpec) {
    let spec: FeatureSpec = serde_json::from_slice(&std::fs::read(dir.join("feature_spec.json")).unwrap()).unwrap();
    let settings: Settings = serde_json::from_slice(&std::fs::read(dir.join("featurizer.json")).unwrap()).unwrap();
    let places = files::read_places(&dir.join("places.parquet"), &spec).unwrap();
    let zone = settings.timezone.as_deref().map(|z| calendar::zone(z).unwrap());
    (Featurizer::new(spec.clone(), settings, places, zone).unwrap(), spec)
}

fn ids(batch: &arrow::array::RecordBatch, name: &str) -> Vec<Id> {
    let a = batch.column_by_name(name).unwrap();
    match a.data_type() {
        arrow::datatypes::DataType::Int64 => {
            a.as_primitive::<Int64Type>().values().iter().map(|&v| Id::Int(v)).collect()
        }
        _ => {
            let text = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).unwrap();
            text.as_string::<i32>().iter().map(|s| Id::Str(s.unwrap().to_string())).collect()
        }
    }
}

/// The model inputs a request carries itself: neither computed by the featurizer nor in the
/// place snapshot (the tiny run's `segment`).
fn given(dir: &Path, spec: &FeatureSpec) -> Vec<String> {
    let snapshot = read_batch(&dir.join("places.parquet"));
    let computed = |n: &str| {
        ["user_id", "place_id", calendar::DISTANCE].contains(&n)
            || calendar::TIME_NAMES.contains(&n)
            || reco_runtime::features::window::NAMES.contains(&n)
            || reco_runtime::features::history::NAMES.contains(&n)
    };
    spec.input_names()
        .into_iter()
        .filter(|n| !computed(n) && snapshot.column_by_name(n).is_none())
        .map(String::from)
        .collect()
}

/// A feature file's rows as raw requests (with the `given` columns), and its model inputs as
/// `prepare` wrote them.
fn requests(path: &Path, spec: &FeatureSpec, given: &[String]) -> (Vec<RawRow>, Columns) {
    let b = read_batch(path);
    let extra_of = |i: usize| {
        given
            .iter()
            .map(|n| {
                let a =
                    arrow::compute::cast(b.column_by_name(n).unwrap(), &arrow::datatypes::DataType::Float64).unwrap();
                (n.clone(), Extra::Number(a.as_primitive::<Float64Type>().value(i)))
            })
            .collect()
    };
    let ts = b.column_by_name("timestamp").unwrap().as_primitive::<Int64Type>().values().to_vec();
    let f64s = |n: &str| b.column_by_name(n).map(|a| a.as_primitive::<Float64Type>().values().to_vec());
    let at = f64s("ctx_lat").zip(f64s("ctx_lon"));
    let (users, places) = (ids(&b, "user_id"), ids(&b, "place_id"));
    let rows = (0..b.num_rows())
        .map(|i| RawRow {
            user: users[i].clone(),
            place: places[i].clone(),
            ts: ts[i],
            utc_offset_s: None,
            at: at.as_ref().map(|(la, lo)| (la[i], lo[i])),
            extra: extra_of(i),
        })
        .collect();
    (rows, reco_runtime::runtime::arrow_io::read_parquet(path, spec).unwrap())
}

/// How the events go into the state.
#[derive(Clone, Copy, PartialEq)]
enum Feed {
    /// In time order, each row asked for before the events of its second.
    InOrder,
    /// All of them first (in reverse time order), then every row: the state must count only
    /// what came strictly before each row's time.
    AllFirst,
}

/// Replays the event log and checks every feature file's rows; returns the rows checked.
fn replay(dir: &Path, feed: Feed) -> usize {
    let (f, spec) = featurizer(dir);
    let mut events: Vec<_> =
        files::read_events(&dir.join("events.parquet")).unwrap().into_iter().map(|e| f.event(e)).collect();
    events.sort_by_key(|e| e.ts);
    let window = f.settings().window_s;
    let limits = match feed {
        Feed::InOrder => Limits::for_window(window),
        Feed::AllFirst => Limits { lateness: i64::MAX / 4, ..Limits::for_window(window) },
    };
    let mut state = OnlineState::new(window, f.categories(), limits);
    if feed == Feed::AllFirst {
        for e in events.iter().rev() {
            state.insert(e.clone());
        }
        events.clear();
    }
    let mut all: Vec<(i64, String, usize)> = Vec::new();
    let mut files_rows = Vec::new();
    for name in ["train", "valid", "test", "ranking"] {
        let (rows, want) = requests(&dir.join(format!("{name}.parquet")), &spec, &given(dir, &spec));
        all.extend(rows.iter().enumerate().map(|(i, r)| (r.ts, name.to_string(), i)));
        files_rows.push((name, rows, want));
    }
    all.sort();
    let (mut next, mut checked, mut k) = (0, 0, 0);
    while k < all.len() {
        let t = all[k].0;
        while next < events.len() && events[next].ts < t {
            state.insert(events[next].clone());
            next += 1;
        }
        let end = k + all[k..].iter().take_while(|r| r.0 == t).count();
        for (name, i) in all[k..end].iter().map(|(_, n, i)| (n, *i)) {
            let (_, rows, want) = files_rows.iter().find(|(n, _, _)| n == name).unwrap();
            let (got, flags) = f.columns(&state, &[f.row(rows[i].clone())]).unwrap();
            assert!(!flags[0].late, "{name} row {i}: late");
            same_row(&spec, &got, want, (name, i));
            checked += 1;
        }
        k = end;
    }
    checked
}

/// Row `i` of `want` equals the one row of `got`, every input to the bit.
fn same_row(spec: &FeatureSpec, got: &Columns, want: &Columns, (file, i): (&str, usize)) {
    for (k, (c, (g, w))) in spec.categorical.iter().zip(got.categorical.iter().zip(&want.categorical)).enumerate() {
        // A multi-valued column: the row's whole list.
        let (gr, wr) = match (got.list(k), want.list(k)) {
            (Some(go), Some(wo)) => (go[0]..go[1], wo[i]..wo[i + 1]),
            _ => (0..1, i..i + 1),
        };
        let same = match (g, w) {
            (Ids::Int(g), Ids::Int(w)) => g[gr] == w[wr.clone()],
            (Ids::Str(g), Ids::Str(w)) => g[gr] == w[wr.clone()],
            _ => false,
        };
        let i = wr.start;
        assert!(same, "{file} row {i}: {} is {g:?}, prepare wrote {:?}", c.name, w.slice(wr));
    }
    for (n, (g, w)) in spec.numeric.iter().zip(got.numeric.iter().zip(&want.numeric)) {
        assert_eq!(g[0].to_bits(), w[i].to_bits(), "{file} row {i}: {} is {}, prepare wrote {}", n.name, g[0], w[i]);
    }
}

#[test]
fn replaying_the_tiny_log_gives_every_feature_column_of_prepare() {
    for feed in [Feed::InOrder, Feed::AllFirst] {
        let n = replay(&run_dir().join("features"), feed);
        assert!(n > 1000, "{n} rows");
    }
}

#[test]
fn replaying_the_checkins_log_gives_every_feature_column_of_prepare() {
    let dir = checkins_case();
    ok(reco(&["prepare", "--recipe", "r.toml", "--out", "f"], dir.path()));
    let spec = std::fs::read_to_string(dir.path().join("f/features/feature_spec.json")).unwrap();
    for col in ["user_place_visits", "user_category_share", "distance_km", "hour_sin", "place_visits_w"] {
        assert!(spec.contains(col), "{col} missing from the spec");
    }
    for feed in [Feed::InOrder, Feed::AllFirst] {
        let n = replay(&dir.path().join("f/features"), feed);
        assert!(n > 500, "{n} rows");
    }
}

#[test]
fn replaying_the_checkins_log_with_venue_tags_gives_their_lists_as_prepare_wrote_them() {
    let dir = checkins_case();
    std::fs::rename(dir.path().join("recipe-tags.toml"), dir.path().join("r.toml")).unwrap();
    ok(reco(&["prepare", "--recipe", "r.toml", "--out", "f"], dir.path()));
    let n = replay(&dir.path().join("f/features"), Feed::InOrder);
    assert!(n > 500, "{n} rows");
}
