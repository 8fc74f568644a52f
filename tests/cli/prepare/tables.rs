//! `reco-cli prepare` on small CSV tables: sampled negatives, each kind of bad table (missing or
//! mistyped column, empty, NaN, unknown reference), ratings as labels with a declared feature, a log
//! with one event per user, millisecond timestamps.

use crate::support::{
    PLACES, USERS, csv_case, edit, input_error, interactions, nothing_written, ok, parquet_f64, prepare_case,
    read_json, reco,
};

#[test]
fn valid_csv_tables_prepare_with_sampled_negatives() {
    let dir = csv_case(USERS, PLACES, &interactions());
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["sampled_negatives"], true);
    // 28 positives, each with one sampled negative.
    let total: u64 = ["train", "valid", "test"].iter().map(|s| v["rows"][s].as_u64().unwrap()).sum();
    assert_eq!(total, 56);
    assert!(dir.path().join("out/features/feature_spec.json").is_file());
}

#[test]
fn missing_column_names_file_and_column() {
    let dir = csv_case(USERS, &PLACES.replace(",lat,", ",latitude,"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "missing column `lat`"]);
    nothing_written(dir.path());
}

#[test]
fn wrong_column_type_names_column_and_expected_type() {
    let dir = csv_case(USERS, &PLACES.replace("52.51,13.40", "north,13.40"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "column `lat`", "expected a number"]);
    nothing_written(dir.path());
}

#[test]
fn empty_table_is_rejected() {
    let dir = csv_case(USERS, PLACES, "user_id,place_id,timestamp\n");
    input_error(&prepare_case(dir.path()), &["interactions.csv", "empty"]);
    nothing_written(dir.path());
}

#[test]
fn nan_and_infinity_in_numeric_columns_are_rejected() {
    let dir = csv_case(USERS, &PLACES.replace("13.42", "NaN"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "column `lon` line 3", "finite"]);
    let dir = csv_case(&USERS.replace("52.52", "inf"), PLACES, &interactions());
    input_error(&prepare_case(dir.path()), &["users.csv", "column `home_lat` line 3", "finite"]);
    nothing_written(dir.path());
}

#[test]
fn unknown_references_are_rejected() {
    let dir = csv_case(USERS, PLACES, &interactions().replace("\n2,11,", "\n2,99,"));
    input_error(&prepare_case(dir.path()), &["interactions.csv", "column `place_id` line 3 is 99", "places.csv"]);
}

#[test]
fn ratings_with_a_threshold_become_labels_and_a_declared_feature_enters_the_spec() {
    let mut inter = String::from("user_id,place_id,timestamp,stars\n");
    for d in 0..14 {
        let t = 1_767_571_200 + d * 86_400;
        inter.push_str(&format!("1,10,{t},5\n1,11,{},2\n2,11,{},4\n2,12,{},1\n", t + 60, t + 3600, t + 3660));
    }
    let dir = csv_case(USERS, PLACES, &inter);
    std::fs::write(
        dir.path().join("r.toml"),
        "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\npositive_rating = 4\n\
         [data.interactions]\ncolumns = { rating = \"stars\" }\n\
         [[data.features]]\ntable = \"places\"\ncolumn = \"price_level\"\nname = \"price\"\nkind = \"numeric\"\ntransform = \"log1p\"\n",
    )
    .unwrap();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"], serde_json::json!({"kind": "rating", "threshold": 4.0}));
    assert_eq!(v["sampled_negatives"], false);
    let total: u64 = ["train", "valid", "test"].iter().map(|s| v["rows"][s].as_u64().unwrap()).sum();
    assert_eq!(total, 56, "observed negatives are kept, none sampled");
    let train = dir.path().join("out/features/train.parquet");
    let (label, price) = (parquet_f64(&train, "label"), parquet_f64(&train, "price"));
    assert_eq!(label.iter().filter(|&&y| y == 1.0).count() * 2, label.len(), "half the ratings are >= 4");
    // price_level 2, 3, 1 of places 10, 11, 12, after log1p.
    for p in &price {
        assert!([2f64, 3.0, 1.0].iter().any(|x| (x.ln_1p() - p).abs() < 1e-6), "{p}");
    }
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let src = spec["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "price").unwrap();
    assert_eq!(src["derive"], "log1p");
}

#[test]
fn an_implicit_log_where_every_user_has_one_event_is_refused() {
    let mut inter = String::from("user_id,place_id,timestamp\n");
    for u in 0..20 {
        inter.push_str(&format!("{},{},{}\n", 100 + u, 10 + u % 3, 1_767_571_200 + u * 86_400));
    }
    let users: String = std::iter::once("user_id,segment,home_lat,home_lon\n".to_string())
        .chain((0..20).map(|u| format!("{},1,52.52,13.40\n", 100 + u)))
        .collect();
    let dir = csv_case(&users, PLACES, &inter);
    input_error(&prepare_case(dir.path()), &["interactions.csv", "every user has one event"]);
    nothing_written(dir.path());
}

#[test]
fn millisecond_timestamps_read_as_seconds_are_refused_with_the_unit_named() {
    let mut inter = String::from("user_id,place_id,timestamp\n");
    for d in 0..14i64 {
        let t = (1_767_571_200 + d * 86_400) * 1000;
        inter.push_str(&format!("1,10,{t}\n2,11,{}\n", t + 3_600_000));
    }
    let dir = csv_case(USERS, PLACES, &inter);
    input_error(&prepare_case(dir.path()), &["column `timestamp` line 2", "outside 1900-2200", "timestamp_unit"]);
    nothing_written(dir.path());
    let recipe = dir.path().join("r.toml");
    edit(&recipe, "dir = \"raw\"\n", "dir = \"raw\"\ntimestamp_unit = \"ms\"\n");
    ok(prepare_case(dir.path()));
}
