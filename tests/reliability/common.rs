//! Helpers shared by the reliability tests: running the binary, a tiny run built once, and a
//! snapshot of a directory tree (every file's bytes) to prove that nothing was written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use crate::support::copy_dir;

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reco-cli")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `reco-cli ARGS --quiet` in `cwd`.
pub fn reco(args: &[&str], cwd: &Path) -> Out {
    let out = Command::new(bin()).args(args).arg("--quiet").current_dir(cwd).output().expect("run reco-cli");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o
}

/// `recipes/tiny.toml` run once into `<tmp>/run`; tests copy it, never change it.
pub fn tiny_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let recipe = repo().join("recipes/tiny.toml");
        ok(reco(&["run", recipe.to_str().unwrap(), "--out", "run"], dir.path()));
        let run = dir.path().join("run");
        (dir, run)
    })
    .1
}

/// Every file and directory below `root`, by relative path, with the file's bytes (`None` for
/// a directory).
pub fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// [`snapshot`] without the files that hold a run's timings: `timings.json`, the
/// human-readable reports (stage times, µs/row) and the stage records (the timings of the run
/// that produced each stage), nor the lock file.
pub fn without_timings(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut s = snapshot(root);
    s.retain(|k, _| {
        !["timings.json", ".reco-cli.lock", "report.md", "report.html", "report", "stages"].contains(&k.as_str())
            && !k.starts_with("report/")
            && !k.starts_with("stages/")
    });
    s
}

/// [`without_timings`] with `report.json`'s per-stage `reused` flags cleared: what a run
/// reports whether or not it reused stages.
pub fn reuse_blind(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut s = without_timings(root);
    // As text: a JSON parser may read two neighbouring floats as one, hiding a difference.
    if let Some(Some(bytes)) = s.get_mut("report.json") {
        *bytes = String::from_utf8_lossy(bytes).replace("\"reused\": true", "\"reused\": false").into_bytes();
    }
    s
}

/// Names of entries that differ between two snapshots.
pub fn changed(before: &BTreeMap<String, Option<Vec<u8>>>, after: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<String> {
    let mut names: Vec<String> = before.keys().chain(after.keys()).cloned().collect();
    names.sort();
    names.dedup();
    names.into_iter().filter(|n| before.get(n) != after.get(n)).collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Replaces the one occurrence of `from` in the file.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}
