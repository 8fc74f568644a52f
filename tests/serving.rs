//! End-to-end tests of the serving side as a user runs it: `reco-cli serve` / `loadtest`
//! (which run `reco-serve`, built beside `reco-cli` by `cargo build --release -p reco-serve`)
//! and `precompute` on real-data shapes: string categories served by their plain name, and
//! declared users-table features scored per user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use reco::data::table::Table;

#[path = "support/mod.rs"]
#[expect(dead_code, reason = "the other test crates use the rest of the shared fixtures")]
mod support;
use support::{PLACES, copy_dir};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reco-cli")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `reco-cli ARGS --quiet` in `cwd`.
fn reco(args: &[&str], cwd: &Path) -> Out {
    let out = Command::new(bin()).args(args).arg("--quiet").current_dir(cwd).output().expect("run reco-cli");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o
}

/// A running `reco-cli serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `reco-cli serve ARGS --addr 127.0.0.1:0` in `cwd`, once it prints its address.
    fn start(args: &[&str], cwd: &Path) -> Self {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0", "--quiet"])
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run reco-cli serve");
        let mut line = Vec::new();
        let mut stdout = child.stdout.take().unwrap();
        let mut byte = [0u8];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let url = String::from_utf8(line).unwrap();
        assert!(url.starts_with("http://"), "serve did not start: {url:?}");
        Self { child, url }
    }

    /// `GET path` on a connection of its own: (status code, body).
    fn get(&self, path: &str) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` percent-encoded for a query string (every byte but unreserved ones).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `reco_cli.*` key-value metadata of a Parquet file (the footer only: no page is decoded).
fn parquet_metadata(path: &Path) -> BTreeMap<String, String> {
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = b.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.into_iter().filter_map(|e| Some((e.key, e.value?))).collect()
}

/// The text of each row of an id column (integers in decimal, missing text as "").
fn texts(t: &Table, column: &str) -> Vec<String> {
    match t.categories(column).unwrap() {
        reco::artifact::spec::Ids::Int(v) => v.iter().map(i64::to_string).collect(),
        reco::artifact::spec::Ids::Str(v) => v,
    }
}

#[test]
fn serve_and_loadtest_help_name_reco_cli_not_the_server_binary() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["serve", "loadtest"] {
        let o = ok(reco(&[sub, "--help"], dir.path()));
        assert!(o.stdout.contains(&format!("Usage: reco-cli {sub} ")), "{}", o.stdout);
        assert!(!o.stdout.contains("reco-serve"), "{}", o.stdout);
    }
}

#[test]
fn string_categories_are_precomputed_and_served_by_their_plain_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_dir(&repo().join("tests/fixtures/checkins"), d);
    ok(reco(&["prepare", "--recipe", "recipe.toml", "--out", "out"], d));
    ok(reco(&["train", "--recipe", "recipe.toml", "--out", "out", "--epochs", "1"], d));
    let args = ["--model", "out/teacher", "--features", "out/features", "--out", "top.parquet"];
    ok(reco(&[&["precompute"], &args[..], &["--by-category", "--cells", "3"]].concat(), d));
    let t = Table::file(&d.join("top.parquet")).unwrap();
    let (cats, segs) = (texts(&t, "category"), texts(&t, "segment"));
    let (clat, clon) = (t.ints("cell_lat").unwrap(), t.ints("cell_lon").unwrap());
    let venues = std::fs::read_to_string(d.join("venues.csv")).unwrap();
    let names: Vec<&str> = venues.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert!(cats.iter().all(|c| c.is_empty() || names.contains(&c.as_str())), "categories as stored: {cats:?}");
    // A key of a category whose name needs percent-encoding, when there is one.
    let row = (0..cats.len()).filter(|&i| !cats[i].is_empty()).max_by_key(|&i| cats[i].contains(' ')).unwrap();
    let deg: f64 = parquet_metadata(&d.join("top.parquet"))["reco_cli.cell_deg"].parse().unwrap();
    let server = Server::start(&["--model", "out/teacher", "--recommendations", "top.parquet"], d);
    let (lat, lon) = ((clat[row] as f64 + 0.5) * deg, (clon[row] as f64 + 0.5) * deg);
    let query = format!("segment={}&lat={lat}&lon={lon}&category={}", segs[row], percent(&cats[row]));
    let (code, body) = server.get(&format!("/v1/recommendations?{query}"));
    assert_eq!(code, 200, "{query}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["category"], cats[row].as_str(), "{body}");
    assert!(!v["places"].as_array().unwrap().is_empty(), "{body}");
    // The quoted form is no category.
    let quoted = format!("segment={}&lat={lat}&lon={lon}&category={}", segs[row], percent(&format!("{:?}", cats[row])));
    let (code, body) = server.get(&format!("/v1/recommendations?{quoted}"));
    assert!(code == 400 && body.contains("unknown category"), "{code} {body}");
}

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
