//! Running the `reco-cli` binary as a user does (`--quiet`, in a working directory) and the
//! assertions on how it ended: success, or an input error (exit code 2, one stderr line).

use std::path::{Path, PathBuf};
use std::process::Command;

/// How a run of the binary ended: its exit code and its output as text.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `reco-cli ARGS --quiet` in `cwd`.
pub fn reco(args: &[&str], cwd: &Path) -> Out {
    reco_env(args, cwd, &[])
}

/// `reco(args, cwd)` with extra environment variables.
pub fn reco_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(args)
        .arg("--quiet")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("run reco-cli");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `o`, which must have exited 0.
pub fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o
}

/// Exit code 2, and exactly one stderr line that contains every `needles` entry.
pub fn input_error(o: &Out, needles: &[&str]) {
    assert_eq!(o.code, 2, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got: {}", o.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{:?} not in {:?}", n, lines[0]);
    }
}

/// `reco-cli predict` that must succeed.
pub fn predict(model: &Path, data: &Path, out: &Path, cwd: &Path) {
    ok(reco(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        cwd,
    ));
}

/// The repository root (recipes, fixtures).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `reco-cli` binary cargo built for the tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reco-cli")
}
