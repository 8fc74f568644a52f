//! Raw requests scored like prepared rows: `serve --features` fed with `prepare`'s events over
//! `POST /v1/events` scores the raw test requests at `POST /v1/score/raw` with the logits
//! `predict` gives the prepared test rows, bit for bit, and so does `predict --raw`; unknown
//! ids are flagged per row; bad events are refused (400, 413) and counted nowhere else.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use reco_runtime::features::files;
use reco_runtime::features::state::Id;
use serde_json::{Value, json};

use crate::serve::Server;
use crate::support::{ok, predict, read_batch, read_logits, reco, run_dir, write_parquet_batch};

fn id(v: &Id) -> Value {
    match v {
        Id::Int(i) => json!(i),
        Id::Str(s) => json!(s),
    }
}

/// The test split's rows as raw requests: ids, time, where the request was, the segment.
fn raw_rows(test: &RecordBatch) -> Vec<Value> {
    let ints = |n: &str| test.column_by_name(n).unwrap().as_primitive::<Int64Type>().values().to_vec();
    let f64s = |n: &str| test.column_by_name(n).unwrap().as_primitive::<Float64Type>().values().to_vec();
    let (users, places, ts, segment) = (ints("user_id"), ints("place_id"), ints("timestamp"), ints("segment"));
    let (lat, lon) = (f64s("ctx_lat"), f64s("ctx_lon"));
    (0..test.num_rows())
        .map(|i| {
            json!({ "user_id": users[i], "place_id": places[i], "timestamp": ts[i], "lat": lat[i], "lon": lon[i], "segment": segment[i] })
        })
        .collect()
}

fn logits_of(reply: &Value) -> Vec<f32> {
    reply["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn serve_fed_with_the_events_scores_raw_requests_as_predict_scores_the_prepared_rows() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let (teacher, features) = (run.join("teacher"), run.join("features"));
    let test = features.join("test.parquet");
    predict(&teacher, &test, &dir.path().join("p.parquet"), dir.path());
    let want = read_logits(&dir.path().join("p.parquet"));
    let f = features.to_str().unwrap();
    // Cold, then every event over HTTP; no lateness bound, so every test time is exact.
    let s = Server::start(
        &["--model", teacher.to_str().unwrap(), "--features", f, "--cold", "--lateness-s", "1000000000000"],
        dir.path(),
    );
    let events: Vec<Value> = files::read_events(&features.join("events.parquet"))
        .unwrap()
        .iter()
        .map(|e| {
            let mut v =
                json!({ "user_id": id(&e.user), "place_id": id(&e.place), "timestamp": e.ts, "visit": e.visit });
            if let Some(r) = e.rating {
                v["rating"] = json!(r);
            }
            v
        })
        .collect();
    for chunk in events.chunks(4000) {
        let (code, body) = s.post("/v1/events", &json!({ "events": chunk }).to_string());
        assert_eq!(code, 200, "{body}");
    }
    let rows = raw_rows(&read_batch(&test));
    let mut got = Vec::new();
    for chunk in rows.chunks(2000) {
        let (code, body) = s.post("/v1/score/raw", &json!({ "rows": chunk }).to_string());
        assert_eq!(code, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert!(reply["flags"].as_array().unwrap().iter().all(|f| f["late"] == false && f["unknown_place"] == false));
        got.extend(logits_of(&reply));
    }
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "row {i}: served {g}, predict {w}");
    }
    let (_, metrics) = s.get("/metrics");
    assert!(metrics.contains(&format!("recommendations_state_events_total {}\n", events.len())), "{metrics}");
}

#[test]
fn predict_raw_scores_raw_rows_as_predict_scores_the_prepared_rows() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let (teacher, features) = (run.join("teacher"), run.join("features"));
    let test = read_batch(&features.join("test.parquet"));
    let keep = ["user_id", "place_id", "timestamp", "ctx_lat", "ctx_lon", "segment"];
    let idx: Vec<usize> = keep.iter().map(|n| test.schema().index_of(n).unwrap()).collect();
    let raw = test.project(&idx).unwrap();
    let fields: Vec<_> =
        raw.schema().fields().iter().map(|f| f.as_ref().clone().with_name(f.name().replace("ctx_", ""))).collect();
    let raw = RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), raw.columns().to_vec())
        .unwrap();
    write_parquet_batch(&dir.path().join("raw.parquet"), &raw);
    predict(&teacher, &features.join("test.parquet"), &dir.path().join("p.parquet"), dir.path());
    let args = ["predict", "--model", teacher.to_str().unwrap(), "--data", "raw.parquet", "--raw"];
    ok(reco(&[&args[..], &[features.to_str().unwrap(), "--out", "r.parquet"]].concat(), dir.path()));
    let (want, got) = (read_logits(&dir.path().join("p.parquet")), read_logits(&dir.path().join("r.parquet")));
    assert_eq!(want.len(), got.len());
    assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "predict --raw differs");
}

#[test]
fn raw_requests_flag_unknown_ids_and_bad_events_are_refused() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let (teacher, features) = (run.join("teacher"), run.join("features"));
    let s =
        Server::start(&["--model", teacher.to_str().unwrap(), "--features", features.to_str().unwrap()], dir.path());
    let row = json!({ "user_id": 999_999, "place_id": 888_888, "timestamp": 1_800_000_000, "lat": 52.5, "lon": 13.4, "segment": 1 });
    let (code, body) = s.post("/v1/score/raw", &json!({ "rows": [row] }).to_string());
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["flags"][0], json!({ "unknown_user": true, "unknown_place": true, "late": false }), "{body}");
    let bad = [
        (json!({ "events": [{ "user_id": 1, "place_id": 2 }] }), "missing `timestamp`"),
        (
            json!({ "events": [{ "user_id": 1, "place_id": 2, "timestamp": "2026-01-01" }] }),
            "expected integer unix seconds",
        ),
        (json!({ "events": [{ "user_id": 1, "place_id": 2, "timestamp": 1.5 }] }), "expected integer unix seconds"),
        (json!({ "events": [{ "user_id": 1, "place_id": 2, "timestamp": 5, "seen": true }] }), "unknown field `seen`"),
        (json!({ "events": [] }), "empty"),
        (json!({ "rows": [] }), "unknown field `rows`"),
    ];
    for (body, needle) in bad {
        let (code, reply) = s.post("/v1/events", &body.to_string());
        assert_eq!(code, 400, "{body}: {reply}");
        assert!(reply.contains(needle), "{body}: {reply}");
    }
    let (code, _) = s.post("/v1/events", &"x".repeat(2 << 20));
    assert_eq!(code, 413);
    let (_, metrics) = s.get("/metrics");
    let events = files::read_events(&features.join("events.parquet")).unwrap().len();
    assert!(metrics.contains(&format!("recommendations_state_events_total {events}\n")), "refused events were counted");
}

#[test]
fn the_online_endpoints_need_features() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--model", run_dir().join("teacher").to_str().unwrap()], dir.path());
    let (code, body) = s.post("/v1/events", "{}");
    assert_eq!(code, 404);
    assert!(body.contains("--features"), "{body}");
}
