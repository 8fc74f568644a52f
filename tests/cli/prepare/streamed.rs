//! `reco-cli prepare` streamed (`max_rows_in_memory = 0`) against in memory: the same bytes for
//! every data shape and integer width, a bad row named by part and row, the drop message on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    checkins_case, edit, input_error, ok, read_batch, read_json, reco, run_dir, write_parquet_batch,
    write_parquet_groups,
};

/// `b` with only the columns `keep`.
fn project(b: &arrow::array::RecordBatch, keep: &[&str]) -> arrow::array::RecordBatch {
    let idx: Vec<usize> = keep.iter().map(|c| b.schema().index_of(c).unwrap()).collect();
    b.project(&idx).unwrap()
}

/// The tiny run's synthetic tables in a fresh directory: the interactions (columns `inter`)
/// as three Parquet parts in `inter/` with row groups of 700 rows, `places.parquet`
/// (columns `places`) and, with `users`, `users.parquet`. Two recipes prepare them: `mem.toml`
/// as usual and `stream.toml` with `max_rows_in_memory = 0`; `extra` is `[data]` and
/// `[prepare]` settings.
fn streamed_case(inter: &[&str], places: &[&str], users: bool, extra: [&str; 2]) -> tempfile::TempDir {
    let [data_extra, extra] = extra;
    let raw = run_dir().join("raw");
    let dir = tempfile::tempdir().unwrap();
    let all = project(&read_batch(&raw.join("interactions.parquet")), inter);
    let third = all.num_rows() / 3;
    for (k, (start, n)) in [(0, third), (third, third), (2 * third, all.num_rows() - 2 * third)].into_iter().enumerate()
    {
        write_parquet_groups(&dir.path().join(format!("inter/part-{k}.parquet")), &all.slice(start, n), 700);
    }
    write_parquet_batch(&dir.path().join("places.parquet"), &project(&read_batch(&raw.join("places.parquet")), places));
    let mut data = format!(
        "[data]\nsource = \"files\"\n{data_extra}\n[data.interactions]\npath = \"inter\"\n[data.places]\npath = \"places.parquet\"\n"
    );
    if users {
        std::fs::copy(raw.join("users.parquet"), dir.path().join("users.parquet")).unwrap();
        data.push_str("[data.users]\npath = \"users.parquet\"\n");
    }
    let prepare =
        format!("[prepare]\ncalibration_rows = 300\nranking_queries = 200\nranking_candidates = 19\n{extra}\n");
    for (name, more) in [("mem", ""), ("stream", "max_rows_in_memory = 0\n")] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!("name = \"s\"\nseed = 7\n{data}{prepare}{more}"),
        )
        .unwrap();
    }
    dir
}

/// Prepares `case` both ways; every file of the two feature directories is equal byte for
/// byte. Returns the streamed run's stderr and `prepare.json`.
fn prepare_both_ways(case: &Path) -> (String, serde_json::Value) {
    ok(reco(&["prepare", "--recipe", "mem.toml", "--out", "mem"], case));
    // Not quiet: the streamed path says so on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(["prepare", "--recipe", "stream.toml", "--out", "stream"])
        .current_dir(case)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (mem, stream) = (case.join("mem/features"), case.join("stream/features"));
    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&mem), names(&stream));
    for n in names(&mem) {
        assert!(std::fs::read(mem.join(&n)).unwrap() == std::fs::read(stream.join(&n)).unwrap(), "{n} differs");
    }
    (stderr, read_json(&stream.join("prepare.json")))
}

#[test]
fn a_streamed_prepare_writes_the_same_bytes_as_the_in_memory_one_for_labelled_implicit_and_popularity_data() {
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    // Labelled, the interaction's own location as context, the true probability carried.
    let case = streamed_case(&all, &places, true, ["", ""]);
    let (stderr, record) = prepare_both_ways(case.path());
    assert!(stderr.contains("streaming them through disk in") && stderr.contains("buckets"), "{stderr}");
    let buckets: usize = stderr.split(" buckets").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(buckets > 1, "{stderr}");
    assert_eq!(record["summary"]["labels"]["kind"], "column");
    assert_eq!(record["summary"]["context"], "interaction");

    // A part written with narrower types (int32 ids, float32 coordinates): read as the stacked
    // table has them, so even the recorded source types are the same.
    let part = case.path().join("inter/part-0.parquet");
    let b = read_batch(&part);
    let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols = b.columns().to_vec();
    for (name, to) in [("user_id", arrow::datatypes::DataType::Int32), ("lat", arrow::datatypes::DataType::Float32)] {
        let at = b.schema().index_of(name).unwrap();
        cols[at] = arrow::compute::cast(&cols[at], &to).unwrap();
        fields[at] = arrow::datatypes::Field::new(name, to, true);
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    for d in ["mem", "stream"] {
        std::fs::remove_dir_all(case.path().join(d)).unwrap();
    }
    prepare_both_ways(case.path());

    // Visits only: negatives drawn within the radius, visits outside it dropped.
    let visits = ["user_id", "place_id", "timestamp", "lat", "lon", "rating"];
    let case = streamed_case(&visits, &places, true, ["", "radius_km = 1.0"]);
    // The synthetic log holds non-visits too; as a visits-only log they are visits.
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["labels"]["kind"], "implicit");
    assert!(record["summary"]["dropped_outside_radius"].as_u64().unwrap() > 0, "{record}");

    // No coordinates anywhere and no users table: popularity negatives, ids from the log.
    let case = streamed_case(&["user_id", "place_id", "timestamp"], &["place_id", "category"], false, ["", ""]);
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["context"], serde_json::Value::Null);
    assert_eq!(record["summary"]["labels"]["kind"], "implicit");

    // A check-in log's shape: visits only, no user location; the previous visit's place as
    // context, found across parts (each user's visits are spread over all three).
    let checkins = ["user_id", "place_id", "timestamp"];
    let case = streamed_case(&checkins, &places, false, ["context = \"previous_visit\"", ""]);
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["context"], "previous_visit");
    assert!(record["summary"]["dropped_no_context"].as_u64().unwrap() > 0, "{record}");

    // One check-in file that repeats its venue's attributes on every row, no places file: the
    // places are the first row of each venue, gathered across parts.
    let case = streamed_case(&checkins, &places, false, ["context = \"previous_visit\"", ""]);
    with_venue_columns(case.path());
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["input_sha256"]["places"], record["summary"]["input_sha256"]["interactions"]);
    assert!(record["summary"]["features"].as_array().unwrap().iter().any(|f| f == "category"), "{record}");
    // Two roles on one column (the venue id as its category too): refused by the recipe check,
    // before any table is read, on both paths.
    for r in ["mem.toml", "stream.toml"] {
        edit(&case.path().join(r), "category = \"venue_category\"", "category = \"place_id\"");
        let o = reco(&["prepare", "--recipe", r, "--out", "again"], case.path());
        input_error(&o, &["data.places.columns", "`place` and `category`", "`place_id`"]);
    }
}

/// Adds each row's venue coordinates and category (`venue_lat`, `venue_lon`,
/// `venue_category`, from `places.parquet`) to every part of `case`, and has both recipes read
/// the places from the parts instead.
fn with_venue_columns(case: &Path) {
    use arrow::array::{Array, Float64Array, Int64Array};
    let places = read_batch(&case.join("places.parquet"));
    let col = |b: &arrow::array::RecordBatch, n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
    let ids = col(&places, "place_id");
    let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
    let (lat, lon, cat) = (col(&places, "lat"), col(&places, "lon"), col(&places, "category"));
    let f64s = |a: &std::sync::Arc<dyn Array>| a.as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec();
    let (lat, lon) = (f64s(&lat), f64s(&lon));
    let cat = cat.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
    let at: std::collections::HashMap<i64, usize> = ids.values().iter().enumerate().map(|(i, &id)| (id, i)).collect();
    for k in 0..3 {
        let part = case.join(format!("inter/part-{k}.parquet"));
        let b = read_batch(&part);
        let rows: Vec<usize> =
            col(&b, "place_id").as_any().downcast_ref::<Int64Array>().unwrap().values().iter().map(|p| at[p]).collect();
        let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols = b.columns().to_vec();
        for (name, values) in [("venue_lat", &lat), ("venue_lon", &lon)] {
            fields.push(arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Float64, false));
            cols.push(std::sync::Arc::new(Float64Array::from(rows.iter().map(|&r| values[r]).collect::<Vec<_>>())));
        }
        fields.push(arrow::datatypes::Field::new("venue_category", arrow::datatypes::DataType::Int64, false));
        cols.push(std::sync::Arc::new(Int64Array::from(rows.iter().map(|&r| cat[r]).collect::<Vec<_>>())));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    }
    for r in ["mem.toml", "stream.toml"] {
        edit(
            &case.join(r),
            "[data.places]\npath = \"places.parquet\"\n",
            "[data.places]\ncolumns = { place = \"place_id\", lat = \"venue_lat\", lon = \"venue_lon\", category = \"venue_category\" }\n",
        );
    }
    std::fs::remove_file(case.join("places.parquet")).unwrap();
}

#[test]
fn a_streamed_prepare_names_a_bad_row_by_its_part_and_row_and_writes_nothing() {
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    let case = streamed_case(&all, &places, true, ["", ""]);
    let part = case.path().join("inter/part-2.parquet");
    let b = read_batch(&part);
    let mut cols = b.columns().to_vec();
    let at = b.schema().index_of("oracle_p").unwrap();
    let mut v = cols[at].as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().values().to_vec();
    v[1000] = 1.5;
    cols[at] = std::sync::Arc::new(arrow::array::Float64Array::from(v));
    write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(b.schema(), cols).unwrap(), 700);
    let o = reco(&["prepare", "--recipe", "stream.toml", "--out", "stream"], case.path());
    input_error(&o, &["part-2.parquet", "row 1000", "oracle_p", "1.5", "expected a probability"]);
    // A part without a column the others have: the in-memory path's message, before any row.
    let b = read_batch(&case.path().join("inter/part-0.parquet"));
    write_parquet_groups(
        &part,
        &project(&b, &["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating"]),
        700,
    );
    let mem = reco(&["prepare", "--recipe", "mem.toml", "--out", "mem"], case.path());
    let o = reco(&["prepare", "--recipe", "stream.toml", "--out", "stream"], case.path());
    input_error(&o, &["part-2.parquet", "no column `oracle_p`", "part-0.parquet has"]);
    assert_eq!(o.stderr, mem.stderr);
    assert!(
        !case.path().join("stream").exists() || std::fs::read_dir(case.path().join("stream")).unwrap().next().is_none()
    );
}

/// Issue 25: the raw tables of `case` with each column's type chosen by `to` (name, type in
/// the baseline) -> the type to write, `None` to keep; every part keeps its row groups.
fn retype(case: &Path, to: impl Fn(&str, &arrow::datatypes::DataType) -> Option<arrow::datatypes::DataType>) -> usize {
    let mut files: Vec<PathBuf> = (0..3).map(|k| case.join(format!("inter/part-{k}.parquet"))).collect();
    files.extend([case.join("places.parquet"), case.join("users.parquet")]);
    let mut changed = 0;
    for path in files {
        let b = read_batch(&path);
        let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols = b.columns().to_vec();
        for (i, f) in b.schema().fields().iter().enumerate() {
            if let Some(t) = to(f.name(), f.data_type()) {
                cols[i] = arrow::compute::cast(&cols[i], &t).unwrap();
                fields[i] = arrow::datatypes::Field::new(f.name(), t, true);
                changed += 1;
            }
        }
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        write_parquet_groups(&path, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    }
    changed
}

/// Issue 25: the smallest and largest value of an integer column over the case's tables.
fn int_range(case: &Path, column: &str) -> Option<(i64, i64)> {
    let mut files: Vec<PathBuf> = (0..3).map(|k| case.join(format!("inter/part-{k}.parquet"))).collect();
    files.extend([case.join("places.parquet"), case.join("users.parquet")]);
    let mut out: Option<(i64, i64)> = None;
    for path in files {
        let b = read_batch(&path);
        let Ok(i) = b.schema().index_of(column) else { continue };
        let c = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64).unwrap();
        let c = c.as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let (lo, hi) = (arrow::compute::min(c).unwrap(), arrow::compute::max(c).unwrap());
        out = Some(out.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    out
}

#[test]
fn every_integer_width_and_float16_prepare_to_the_features_of_int64_and_float64_whole_and_streamed() {
    use arrow::datatypes::DataType as T;
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    let case = streamed_case(&all, &places, true, ["", ""]);
    // The baseline holds only values float16 (ratings, the oracle, homes, price levels) or
    // float32 (coordinates) hold exactly, as float64: every variant holds the same values.
    let half = |n: &str| ["rating", "oracle_p", "home_lat", "home_lon", "price_level"].contains(&n);
    let floats = |n: &str, t: &T| match t {
        T::Float64 | T::Float32 if half(n) => Some(T::Float16),
        T::Float64 => Some(T::Float32),
        _ => None,
    };
    retype(case.path(), |n, t| floats(n, t));
    retype(case.path(), |_, t| matches!(t, T::Float16 | T::Float32).then_some(T::Float64));
    prepare_both_ways(case.path());
    let base = case.path().join("base");
    std::fs::rename(case.path().join("mem/features"), &base).unwrap();
    let baseline: Vec<(PathBuf, Vec<u8>)> = (0..3)
        .map(|k| format!("inter/part-{k}.parquet"))
        .chain(["places.parquet".into(), "users.parquet".into()])
        .map(|f| (case.path().join(&f), std::fs::read(case.path().join(&f)).unwrap()))
        .collect();
    let fits = |t: &T, (lo, hi): (i64, i64)| {
        let (min, max): (i64, i64) = match t {
            T::Int8 => (i8::MIN.into(), i8::MAX.into()),
            T::Int16 => (i16::MIN.into(), i16::MAX.into()),
            T::Int32 => (i32::MIN.into(), i32::MAX.into()),
            T::UInt8 => (0, u8::MAX.into()),
            T::UInt16 => (0, u16::MAX.into()),
            T::UInt32 => (0, u32::MAX.into()),
            _ => (0, i64::MAX),
        };
        min <= lo && hi <= max
    };
    let widths = [T::Int8, T::Int16, T::Int32, T::UInt8, T::UInt16, T::UInt32, T::UInt64, T::Float16];
    let names = ["i8", "i16", "i32", "u8", "u16", "u32", "u64", "f16"];
    for (width, name) in widths.iter().zip(names) {
        for (path, bytes) in &baseline {
            std::fs::write(path, bytes).unwrap();
        }
        for d in ["mem", "stream"] {
            std::fs::remove_dir_all(case.path().join(d)).unwrap();
        }
        let ranges: std::collections::HashMap<String, (i64, i64)> =
            ["user_id", "place_id", "timestamp", "label", "category", "segment", "price_level"]
                .iter()
                .filter_map(|c| Some((c.to_string(), int_range(case.path(), c)?)))
                .collect();
        let changed = retype(case.path(), |n, t| match (width, t) {
            (T::Float16, t) => floats(n, t),
            (w, T::Int64) if ranges.get(n).is_some_and(|r| fits(w, *r)) => Some(w.clone()),
            _ => None,
        });
        assert!(changed >= 5, "{name}: {changed} columns narrowed");
        prepare_both_ways(case.path());
        let features = case.path().join("mem/features");
        for f in ["train", "valid", "test", "ranking", "calibration", "places"] {
            let f = format!("{f}.parquet");
            assert!(std::fs::read(base.join(&f)).unwrap() == std::fs::read(features.join(&f)).unwrap(), "{name}: {f}");
        }
        let (mut a, mut b) =
            (read_json(&base.join("feature_spec.json")), read_json(&features.join("feature_spec.json")));
        let place = b["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "place" && s["table"] == "places");
        let want = if name == "f16" { "i64" } else { name };
        assert_eq!(place.unwrap()["dtype"], want, "{name}: {}", b["sources"]);
        a["sources"] = serde_json::Value::Null;
        b["sources"] = serde_json::Value::Null;
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn prepare_says_on_stderr_when_it_drops_more_than_one_percent_of_the_interactions() {
    // Each user's first check-in has no previous visit: dropped (counted in prepare.json).
    let dir = checkins_case();
    let run = |quiet: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_reco-cli"));
        c.args(["prepare", "--recipe", "r.toml", "--out", if quiet { "q" } else { "out" }]).current_dir(dir.path());
        if quiet {
            c.arg("--quiet");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let stderr = run(false);
    let record = read_json(&dir.path().join("out/features/prepare.json"));
    let n = record["summary"]["dropped_no_context"].as_u64().unwrap();
    let line = stderr.lines().find(|l| l.contains("dropped")).unwrap_or_else(|| panic!("no drop line in {stderr:?}"));
    assert!(
        line.contains("checkins") && line.contains(&format!("{n} (")) && line.contains("dropped_no_context"),
        "{line}"
    );
    assert!(line.contains("interactions (") && line.contains(" %)"), "{line}");
    assert!(!run(true).contains("dropped"));
    // Below 1 %: no line (the synthetic log with its own coordinates drops nothing).
    let case = streamed_case(
        &["user_id", "place_id", "timestamp", "lat", "lon", "label"],
        &["place_id", "lat", "lon"],
        true,
        ["", ""],
    );
    let (stderr, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["dropped_no_context"], 0);
    assert!(!stderr.contains("dropped"), "{stderr}");
}

#[test]
fn a_multi_valued_place_feature_streams_to_the_same_bytes_as_in_memory() {
    use arrow::array::{Array, Int64Array, Int64Builder, ListBuilder};
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let case = streamed_case(&all, &["place_id", "lat", "lon", "category"], true, ["", ""]);
    // Each place's tags as an int64 list column: its category and one more, none on every
    // fifth place.
    let path = case.path().join("places.parquet");
    let b = read_batch(&path);
    let cat = b.column(b.schema().index_of("category").unwrap()).clone();
    let cat = cat.as_any().downcast_ref::<Int64Array>().unwrap();
    let mut tags = ListBuilder::new(Int64Builder::new());
    for i in 0..cat.len() {
        if i % 5 != 0 {
            tags.values().append_value(cat.value(i));
            tags.values().append_value(100 + (i as i64 % 3));
        }
        tags.append(true);
    }
    let tags: std::sync::Arc<dyn Array> = std::sync::Arc::new(tags.finish());
    let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new("tags", tags.data_type().clone(), true));
    let mut cols = b.columns().to_vec();
    cols.push(tags);
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    write_parquet_batch(&path, &arrow::array::RecordBatch::try_new(schema, cols).unwrap());
    let feature =
        "\n[[data.features]]\ntable = \"places\"\ncolumn = \"tags\"\nkind = \"multi_categorical\"\nmax_values = 2\n";
    for r in ["mem.toml", "stream.toml"] {
        let p = case.path().join(r);
        std::fs::write(&p, std::fs::read_to_string(&p).unwrap() + feature).unwrap();
    }
    let (stderr, _) = prepare_both_ways(case.path());
    assert!(stderr.contains("streaming them through disk in"), "{stderr}");
    let spec = read_json(&case.path().join("stream/features/feature_spec.json"));
    let tags = spec["categorical"].as_array().unwrap().iter().find(|c| c["name"] == "tags").unwrap().clone();
    assert_eq!(tags["bag"], serde_json::json!({"max_values": 2, "pooling": "mean"}), "{tags}");
}
