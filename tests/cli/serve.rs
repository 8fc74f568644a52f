//! `reco-cli serve` and `loadtest` (which run `reco-serve`, built beside `reco-cli` by `cargo build
//! --release -p reco-serve`): their help names `reco-cli`; string categories of a precompute table
//! served by their plain name.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reco::data::table::Table;

use crate::support::{bin, copy_dir, ok, parquet_metadata, reco, repo, texts};

/// A running `reco-cli serve`, killed when dropped.
pub struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `reco-cli serve ARGS --addr 127.0.0.1:0` in `cwd`, once it prints its address.
    pub fn start(args: &[&str], cwd: &Path) -> Self {
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
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(&format!("GET {path} HTTP/1.1\r\n"), "")
    }

    /// `POST path` with a JSON body on a connection of its own: (status code, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let head =
            format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        self.request(&head, body)
    }

    fn request(&self, head: &str, body: &str) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        write!(s, "{head}Host: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        // A refused body may close the connection before it is all sent.
        let _ = s.write_all(body.as_bytes());
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
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

#[test]
fn loadtest_rounds_pool_each_server_and_compare_them_round_by_round() {
    let run = crate::support::run_dir();
    let dir = tempfile::tempdir().unwrap();
    let model = run.join("teacher-int8");
    let m = model.to_str().unwrap();
    let (a, b) = (
        Server::start(&["--model", m, "--max-batch", "64"], dir.path()),
        Server::start(&["--model", m, "--max-batch", "1"], dir.path()),
    );
    let data = run.join("features/test.parquet");
    let args = [
        "loadtest",
        "--model",
        m,
        "--data",
        data.to_str().unwrap(),
        "--clients",
        "1,4",
        "--seconds",
        "0.2",
        "--rounds",
        "3",
        "--json",
    ];
    // The baseline first: every later server is compared with it.
    let urls = [format!("single={}", b.url), format!("coalesced={}", a.url)];
    let url_args = ["--url", &urls[0], "--url", &urls[1]];
    let o = ok(reco(&[&args[..], &url_args[..]].concat(), dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let cells = v["cells"].as_array().unwrap();
    let comparisons = v["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2, "one per client count: {}", o.stdout);
    for clients in [1, 4] {
        let http = |label: &str| {
            cells.iter().find(|c| c["target"] == format!("http {label}") && c["clients"] == clients).unwrap()
        };
        let (x, y) = (http("single"), http("coalesced"));
        let rounds = |c: &serde_json::Value| -> Vec<f64> {
            c["round_rows_per_s"].as_array().unwrap().iter().map(|r| r.as_f64().unwrap()).collect()
        };
        let (rx, ry) = (rounds(x), rounds(y));
        assert_eq!((rx.len(), ry.len()), (3, 3), "{x} {y}");
        for c in [x, y] {
            assert_eq!(c["errors"], 0, "{c}");
            // Pooled: every round's requests over every round's seconds.
            let (n, s) = (c["requests"].as_f64().unwrap(), c["seconds"].as_f64().unwrap());
            assert!(s >= 3.0 * 0.2 && (c["rows_per_s"].as_f64().unwrap() - n / s).abs() < 1e-6 * n / s, "{c}");
        }
        let cmp = comparisons.iter().find(|c| c["clients"] == clients).unwrap();
        assert_eq!((cmp["target"].as_str(), cmp["baseline"].as_str()), (Some("http coalesced"), Some("http single")));
        let pooled = y["rows_per_s"].as_f64().unwrap() / x["rows_per_s"].as_f64().unwrap();
        assert!((cmp["ratio"].as_f64().unwrap() - pooled).abs() < 1e-9, "{cmp}");
        let mut per_round: Vec<f64> = ry.iter().zip(&rx).map(|(p, q)| p / q).collect();
        per_round.sort_by(f64::total_cmp);
        let got = |k: &str| cmp[k].as_f64().unwrap();
        assert_eq!(
            [got("round_min"), got("round_median"), got("round_max")],
            [per_round[0], per_round[1], per_round[2]]
        );
    }
}
