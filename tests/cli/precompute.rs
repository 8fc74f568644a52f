//! `reco-cli precompute`: declared users-table features scored with each segment user's own
//! values (checked by brute force through `predict`).

use std::collections::BTreeMap;

use reco::data::table::Table;

use crate::support::{PLACES, ok, parquet_metadata, reco, texts};

/// Eight users in two segments with a numeric (`age`, one missing: filled, with an indicator)
/// and a categorical (`tier`) users-table feature.
const USERS_WITH_FEATURES: &str = "user_id,segment,home_lat,home_lon,age,tier\n\
    1,0,52.50,13.40,19,gold\n2,0,52.52,13.41,64,silver\n3,0,52.51,13.42,33,bronze\n4,0,52.50,13.41,45,gold\n\
    5,1,52.52,13.40,27,silver\n6,1,52.51,13.41,,bronze\n7,1,52.50,13.42,71,gold\n8,1,52.52,13.42,38,silver\n";

const USER_FEATURES_RECIPE: &str = "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n\
    [[data.features]]\ntable = \"users\"\ncolumn = \"age\"\nkind = \"numeric\"\nfill = 40\n\
    [[data.features]]\ntable = \"users\"\ncolumn = \"tier\"\nkind = \"categorical\"\n\
    [prepare]\nnegatives_per_positive = 1\n[train]\nepochs = 2\n";

/// Two weeks of visits: user `u` visits on `14 - u` days (so the most active are the
/// smallest ids), a place chosen by user and day.
fn user_visits() -> String {
    let mut s = String::from("user_id,place_id,timestamp\n");
    for u in 1..=8 {
        for d in 0..(14 - u) {
            s.push_str(&format!("{u},{},{}\n", 10 + (u + d) % 3, 1_767_571_200 + d * 86_400 + u * 600));
        }
    }
    s
}

/// A users.csv row's model inputs: `age` (filled with 40 when missing), `age_missing`, `tier`.
fn user_inputs(user: &str, swap: bool) -> BTreeMap<&'static str, String> {
    let rows: Vec<Vec<&str>> = USERS_WITH_FEATURES.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let i = rows.iter().position(|r| r[0] == user).unwrap();
    // `swap`: another user's values (the test's own check that they matter).
    let r = if swap { &rows[(i + 1) % rows.len()] } else { &rows[i] };
    let age = if r[4].is_empty() { "40" } else { r[4] };
    BTreeMap::from([
        ("age", age.to_string()),
        ("age_missing", u8::from(r[4].is_empty()).to_string()),
        ("tier", r[5].into()),
    ])
}

/// The model's input row for `user` and the place at row `p` of `places`, as precompute
/// builds it for a key: the place's own inputs, the key's segment, distance and time.
/// `inputs`: (name, numeric) in the spec's order.
fn input_row(
    inputs: &[(String, bool)],
    places: &Table,
    p: usize,
    key: (&str, f64),
    user: &str,
    meta: &BTreeMap<String, String>,
    swap: bool,
) -> Vec<String> {
    let hour = meta["reco_cli.hour"].parse::<f64>().unwrap() * std::f64::consts::TAU / 24.0;
    let dow = meta["reco_cli.dow"].parse::<f64>().unwrap() * std::f64::consts::TAU / 7.0;
    let own = user_inputs(user, swap);
    inputs
        .iter()
        .map(|(name, numeric)| match name.as_str() {
            "user_id" => user.to_string(),
            "segment" => key.0.to_string(),
            "distance_km" => key.1.to_string(),
            "hour_sin" => (hour.sin() as f32).to_string(),
            "hour_cos" => (hour.cos() as f32).to_string(),
            "dow_sin" => (dow.sin() as f32).to_string(),
            "dow_cos" => (dow.cos() as f32).to_string(),
            // Per segment and cell, no user's past: the values of a user without history.
            "user_place_never" => "1".to_string(),
            n if n.starts_with("user_") && n != "user_id" && !own.contains_key(n) => "0".to_string(),
            n if own.contains_key(n) => own[n].clone(),
            n if *numeric => places.floats(n, false).unwrap()[p].to_string(),
            n => texts(places, n)[p].clone(),
        })
        .collect()
}

#[test]
fn declared_user_features_are_precomputed_with_each_segment_users_own_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("raw")).unwrap();
    std::fs::write(d.join("raw/users.csv"), USERS_WITH_FEATURES).unwrap();
    std::fs::write(d.join("raw/places.csv"), PLACES).unwrap();
    std::fs::write(d.join("raw/interactions.csv"), user_visits()).unwrap();
    std::fs::write(d.join("r.toml"), USER_FEATURES_RECIPE).unwrap();
    ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out"], d));
    ok(reco(&["train", "--recipe", "r.toml", "--out", "out"], d));
    let args = ["--model", "out/teacher", "--features", "out/features", "--out", "top.parquet"];
    ok(reco(&[&["precompute"], &args[..], &["--users-per-segment", "3", "--cells", "1"]].concat(), d));

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/teacher/manifest.json")).unwrap()).unwrap();
    let spec = &manifest["feature_spec"];
    let names = |k: &str| {
        let numeric = k == "numeric";
        spec[k].as_array().unwrap().iter().map(move |c| (c["name"].as_str().unwrap().to_string(), numeric))
    };
    let inputs: Vec<(String, bool)> = names("categorical").chain(names("numeric")).collect();
    for n in ["age", "age_missing", "tier", "segment"] {
        assert!(inputs.iter().any(|(i, _)| i == n), "{n} not among the inputs {inputs:?}");
    }
    let meta = parquet_metadata(&d.join("top.parquet"));
    let seg_users: BTreeMap<String, Vec<i64>> = serde_json::from_str(&meta["reco_cli.segment_users"]).unwrap();
    assert_eq!(seg_users, BTreeMap::from([("0".into(), vec![1, 2, 3]), ("1".into(), vec![5, 6, 7])]));

    // Every key of segment 1 (holding the user without an age), brute force: each user's
    // own row scored by predict, probabilities averaged.
    let t = Table::file(&d.join("top.parquet")).unwrap();
    let (segs, cats, pids) = (texts(&t, "segment"), texts(&t, "category"), texts(&t, "place_id"));
    let (score, dist) = (t.floats("score", false).unwrap(), t.floats("distance_km", false).unwrap());
    let keys: Vec<usize> = (0..segs.len()).filter(|&i| segs[i] == "1" && cats[i].is_empty()).collect();
    let places = Table::file(&d.join("out/features/places.parquet")).unwrap();
    let place_ids = texts(&places, "place_id");
    let mean_of = |swap: bool| -> Vec<f64> {
        let header: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let mut csv = header.join(",") + "\n";
        for &k in &keys {
            let p = place_ids.iter().position(|id| *id == pids[k]).unwrap();
            for u in &seg_users["1"] {
                let row = input_row(&inputs, &places, p, ("1", dist[k]), &u.to_string(), &meta, swap);
                csv.push_str(&(row.join(",") + "\n"));
            }
        }
        std::fs::write(d.join("rows.csv"), csv).unwrap();
        ok(reco(&["predict", "--model", "out/teacher", "--data", "rows.csv", "--out", "p.parquet"], d));
        let prob = Table::file(&d.join("p.parquet")).unwrap().floats("probability", false).unwrap();
        prob.chunks(seg_users["1"].len()).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect()
    };
    let want = mean_of(false);
    assert_eq!(want.len(), keys.len());
    for (&k, w) in keys.iter().zip(&want) {
        assert!((score[k] - w).abs() < 1e-5, "place {}: table {} vs brute force {w}", pids[k], score[k]);
    }
    // The features matter: another user's values give other scores.
    let swapped = mean_of(true);
    assert!(keys.iter().zip(&swapped).any(|(&k, s)| (score[k] - s).abs() > 1e-5), "{swapped:?} vs {want:?}");
}
