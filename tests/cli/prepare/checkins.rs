//! `reco-cli prepare` on real-data shapes: the check-in log of `tests/fixtures/checkins` (string
//! ids, local time, the previous visit as context), its declared schema and its bad input.

use std::path::Path;

use crate::support::{
    checkins_case, edit, edit_line, input_error, nothing_written, ok, parquet_f64, prepare_case, read_json, reco,
};

/// The fixture's venues: id -> [category, latitude, longitude].
fn venues_by_id(dir: &Path) -> std::collections::HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(dir.join("venues.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<String> = l.split(',').map(str::to_string).collect();
            (f[0].clone(), f[1..].to_vec())
        })
        .collect()
}

#[test]
fn a_checkin_log_prepares_with_string_ids_local_time_and_the_previous_visit_as_context() {
    let dir = checkins_case();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"]["kind"], "implicit");
    assert_eq!(v["context"], "previous_visit");
    assert_eq!(v["sampled_negatives"], true);
    // Each of the 30 users' first check-in has no previous visit: dropped and counted.
    let dropped = v["dropped_no_context"].as_u64().unwrap();
    assert!((30..40).contains(&dropped), "dropped {dropped}");
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let cats: Vec<(&str, &str)> = spec["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["dtype"].as_str().unwrap()))
        .collect();
    // No users table: no segment. Venue ids and category names stay strings.
    assert_eq!(cats, [("user_id", "int64"), ("place_id", "string"), ("category", "string")]);
    let category = &spec["categorical"][2]["vocabulary"];
    assert!(category.as_array().unwrap().iter().any(|c| c == "Café"), "{category}");
    let numeric: Vec<&str> = spec["numeric"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(numeric.contains(&"distance_km"), "{numeric:?}");
    // No ratings anywhere: no rating features rather than constant ones.
    assert!(!numeric.iter().any(|n| n.contains("rating")), "{numeric:?}");
    let ts = spec["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "timestamp").unwrap();
    assert_eq!((ts["column"].as_str(), ts["dtype"].as_str()), (Some("utc_time"), Some("str")));
    // Local hours (America/New_York, UTC-5 in January-February): every check-in of the fixture
    // is between 06:00 and 23:59 local time; in UTC the evening ones would be 00:00-04:59.
    let train = dir.path().join("out/features/train.parquet");
    let (s, c) = (parquet_f64(&train, "hour_sin"), parquet_f64(&train, "hour_cos"));
    let hours: Vec<f64> = s
        .iter()
        .zip(&c)
        .map(|(s, c)| (s.atan2(*c).rem_euclid(std::f64::consts::TAU)) * 24.0 / std::f64::consts::TAU)
        .collect();
    assert!(
        hours.iter().all(|&h| h > 5.99),
        "a local hour before 06:00: {:?}",
        hours.iter().copied().fold(24.0, f64::min)
    );
    assert!(hours.iter().any(|&h| h >= 19.0), "no evening check-ins");
}

#[test]
fn an_unparseable_timestamp_names_file_column_row_value_and_the_formats() {
    let dir = checkins_case();
    let part = dir.path().join("checkins/month=2026-02/part-0.csv");
    edit_line(&part, 3, |l| format!("{},2026-02-30T25:00:00Z", l.rsplit_once(',').unwrap().0));
    let o = prepare_case(dir.path());
    input_error(&o, &["month=2026-02/part-0.csv", "column `utc_time` line 4", "2026-02-30T25:00:00Z", "ISO-8601"]);
    nothing_written(dir.path());
}

#[test]
fn an_unknown_time_zone_or_a_mapping_to_a_missing_column_is_one_line() {
    let dir = checkins_case();
    edit(&dir.path().join("r.toml"), "America/New_York", "America/Nowhere");
    input_error(&prepare_case(dir.path()), &["America/Nowhere", "IANA"]);
    nothing_written(dir.path());
    let dir = checkins_case();
    edit(&dir.path().join("r.toml"), "place = \"venue_id\", timestamp", "place = \"venue\", timestamp");
    input_error(&prepare_case(dir.path()), &["missing column `venue`", "data.interactions.columns.place", "venue_id"]);
    nothing_written(dir.path());
}

#[test]
fn a_string_column_declared_numeric_or_constant_in_training_is_refused() {
    let dir = checkins_case();
    let feature = "\n[[data.features]]\ntable = \"places\"\ncolumn = \"venue_category_name\"\nkind = \"numeric\"\n";
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, std::fs::read_to_string(&recipe).unwrap() + feature).unwrap();
    input_error(
        &prepare_case(dir.path()),
        &["venues.csv", "column `venue_category_name` line 2 is \"Coffee Shop\"", "expected a number"],
    );
    nothing_written(dir.path());

    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let text = std::fs::read_to_string(&venues).unwrap();
    let with_chain: String =
        text.lines().enumerate().map(|(i, l)| format!("{l},{}\n", if i == 0 { "chain" } else { "7" })).collect();
    std::fs::write(&venues, with_chain).unwrap();
    let feature = "\n[[data.features]]\ntable = \"places\"\ncolumn = \"chain\"\nkind = \"numeric\"\n";
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, std::fs::read_to_string(&recipe).unwrap() + feature).unwrap();
    input_error(&prepare_case(dir.path()), &["data.features \"chain\"", "constant on the training split"]);
    nothing_written(dir.path());
}

#[test]
fn a_latin1_csv_needs_its_encoding_declared() {
    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let latin1: Vec<u8> = std::fs::read_to_string(&venues).unwrap().chars().map(|c| c as u32 as u8).collect();
    std::fs::write(&venues, latin1).unwrap();
    input_error(&prepare_case(dir.path()), &["venues.csv", "line ", "not valid UTF-8", "encoding = \"latin-1\""]);
    nothing_written(dir.path());
    edit(&dir.path().join("r.toml"), "path = \"venues.csv\"", "path = \"venues.csv\"\nencoding = \"latin-1\"");
    ok(prepare_case(dir.path()));
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    assert!(spec["categorical"][2]["vocabulary"].as_array().unwrap().iter().any(|c| c == "Café"));
}

#[test]
fn interaction_coordinates_that_are_the_venue_itself_are_refused_as_a_leak() {
    // A check-in log that repeats each venue's coordinates on every row, read as the user's
    // own location: distance would be 0 on every visit.
    let dir = checkins_case();
    let venues: std::collections::HashMap<String, String> =
        venues_by_id(dir.path()).into_iter().map(|(id, f)| (id, format!("{},{}", f[1], f[2]))).collect();
    for month in ["2026-01", "2026-02"] {
        let part = dir.path().join(format!("checkins/month={month}/part-0.csv"));
        let text = std::fs::read_to_string(&part).unwrap();
        let rows: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{l},lat,lon\n")
                } else {
                    format!("{l},{}\n", venues[l.split(',').nth(1).unwrap()])
                }
            })
            .collect();
        std::fs::write(&part, rows).unwrap();
    }
    edit(&dir.path().join("r.toml"), "context = \"previous_visit\"", "context = \"auto\"");
    input_error(&prepare_case(dir.path()), &["equal the visited place's coordinates", "previous_visit"]);
    nothing_written(dir.path());
}

#[test]
fn a_places_section_without_a_path_reads_the_log_itself_and_takes_only_mapped_roles() {
    // One file: every check-in repeats its venue's attributes, and carries a per-visit rating.
    let dir = checkins_case();
    let venues: std::collections::HashMap<String, String> =
        venues_by_id(dir.path()).into_iter().map(|(id, f)| (id, f.join(","))).collect();
    let mut log = String::from("user_id,venue_id,utc_time,venue_category_name,latitude,longitude,rating\n");
    for month in ["2026-01", "2026-02"] {
        let text = std::fs::read_to_string(dir.path().join(format!("checkins/month={month}/part-0.csv"))).unwrap();
        for (i, l) in text.lines().skip(1).enumerate() {
            log.push_str(&format!("{l},{},{}\n", venues[l.split(',').nth(1).unwrap()], 1 + i % 5));
        }
    }
    std::fs::write(dir.path().join("log.csv"), log).unwrap();
    let recipe = dir.path().join("r.toml");
    edit(&recipe, "path = \"checkins\"", "path = \"log.csv\"");
    edit(&recipe, "path = \"venues.csv\"\n", "");
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let features: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(features.contains(&"category") && features.contains(&"distance_km"), "{features:?}");
    // The log's per-visit rating is the interactions' (trailing window), never a place attribute.
    assert!(features.contains(&"place_rating_w") && !features.contains(&"place_rating"), "{features:?}");
    edit(&recipe, "lon = \"longitude\" }", "lon = \"longitude\", rating = \"rating\" }");
    input_error(&prepare_case(dir.path()), &["data.places.columns.rating", "each row's rating is that visit's"]);
}

#[test]
fn partitions_that_disagree_on_a_column_or_shadow_one_are_refused() {
    let dir = checkins_case();
    // February's user ids become text (a letter): one id column with two types.
    let feb = dir.path().join("checkins/month=2026-02/part-0.csv");
    edit_line(&feb, 1, |l| format!("u{l}"));
    input_error(
        &prepare_case(dir.path()),
        &["month=2026-02/part-0.csv", "column `user_id` reads as str here", "month=2026-01"],
    );
    nothing_written(dir.path());
    // A partition key that is also a column of the files.
    let dir = checkins_case();
    let jan = dir.path().join("checkins/month=2026-01");
    std::fs::rename(&jan, dir.path().join("checkins/user_id=1")).unwrap();
    input_error(&prepare_case(dir.path()), &["has a column `user_id`", "`user_id=1` folder"]);
    nothing_written(dir.path());
}

#[test]
fn a_byte_order_mark_and_missing_categories_are_read_as_a_spreadsheet_user_expects() {
    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let text = std::fs::read_to_string(&venues).unwrap();
    // Excel's UTF-8 export starts with a BOM; one venue has no category.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let parts: Vec<&str> = lines[1].split(',').collect();
    lines[1] = format!("{},,{},{}", parts[0], parts[2], parts[3]);
    std::fs::write(&venues, format!("\u{feff}{}\n", lines.join("\n"))).unwrap();
    ok(prepare_case(dir.path()));
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let category = spec["categorical"][2]["vocabulary"].as_array().unwrap();
    // The missing category is a category of its own: the empty string, first in byte order.
    assert_eq!(category[0], "", "{category:?}");
}

#[test]
fn header_only_parts_and_cr_line_endings_read_as_the_rows_they_hold() {
    let dir = checkins_case();
    ok(prepare_case(dir.path()));
    // One part with carriage returns only (classic Mac OS line endings), one more month
    // folder with a header and no rows.
    let jan = dir.path().join("checkins/month=2026-01/part-0.csv");
    let text = std::fs::read_to_string(&jan).unwrap();
    std::fs::write(&jan, text.replace('\n', "\r")).unwrap();
    let header = text.lines().next().unwrap().to_string();
    std::fs::create_dir_all(dir.path().join("checkins/month=2026-03")).unwrap();
    std::fs::write(dir.path().join("checkins/month=2026-03/part-0.csv"), format!("{header}\n")).unwrap();
    ok(reco(&["prepare", "--recipe", "r.toml", "--out", "again"], dir.path()));
    for f in ["train", "valid", "test", "ranking", "calibration", "places"] {
        let f = format!("features/{f}.parquet");
        let (a, b) = (dir.path().join("out").join(&f), dir.path().join("again").join(&f));
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{f} differs");
    }
}

#[test]
fn venue_tags_become_list_features_and_a_list_longer_than_max_values_is_refused() {
    let dir = checkins_case();
    std::fs::rename(dir.path().join("recipe-tags.toml"), dir.path().join("r.toml")).unwrap();
    ok(prepare_case(dir.path()));
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let tags = spec["categorical"].as_array().unwrap().iter().find(|c| c["name"] == "tags").unwrap().clone();
    assert_eq!(tags["bag"], serde_json::json!({"max_values": 3, "pooling": "sum"}));
    // Pieces trimmed, the quoted tag with the CSV delimiter kept whole.
    let vocabulary: Vec<&str> = tags["vocabulary"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(vocabulary.contains(&"coffee, tea") && vocabulary.contains(&"late night"), "{vocabulary:?}");
    assert!(vocabulary.iter().all(|v| !v.is_empty() && v.trim() == *v), "{vocabulary:?}");

    let dir = checkins_case();
    std::fs::rename(dir.path().join("recipe-tags.toml"), dir.path().join("r.toml")).unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, std::fs::read_to_string(&recipe).unwrap().replace("max_values = 3", "max_values = 2"))
        .unwrap();
    input_error(
        &prepare_case(dir.path()),
        &["venues_tags.csv", "column `tags` line 7 holds 3 values, more than max_values = 2", "(raise it)"],
    );
    nothing_written(dir.path());
}
