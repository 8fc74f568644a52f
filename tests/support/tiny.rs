//! `recipes/tiny.toml` run once per test binary and shared (tests copy what they change), and
//! its test split written as a directory of parts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{ok, read_batch, reco, repo, write_parts};

/// The tiny recipe run once: <tmp>/run/{raw,features,teacher,report.json}.
pub fn pipeline() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let recipe = repo().join("recipes/tiny.toml");
        ok(reco(&["run", recipe.to_str().unwrap(), "--out", "run", "--json"], dir.path()));
        dir
    })
    .path()
}

pub fn run_dir() -> PathBuf {
    pipeline().join("run")
}

/// The tiny run's teacher, and its test split also written as two parts (the second from row
/// `first`) with row groups of `group_rows`, in a fresh directory.
pub struct TestParts {
    pub teacher: PathBuf,
    pub test: PathBuf,
    pub all: arrow::array::RecordBatch,
    pub first: usize,
    pub parts: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn test_parts(group_rows: usize) -> TestParts {
    let run = run_dir();
    let (teacher, test) = (run.join("teacher"), run.join("features/test.parquet"));
    let dir = tempfile::tempdir().unwrap();
    let all = read_batch(&test);
    let first = all.num_rows() / 3;
    let parts = dir.path().join("parts");
    write_parts(&all, &parts, first, group_rows);
    TestParts { teacher, test, all, first, parts, dir }
}
