//! `reco-cli inspect`: a closed stdout pipe ends the process quietly. (Its verification of
//! artifacts is in `artifacts.rs`, its listing in `run.rs` and `quantize.rs`.)

use std::process::Command;

use crate::support::run_dir;

#[test]
fn a_closed_stdout_pipe_ends_the_process_quietly_instead_of_panicking() {
    use std::process::Stdio;
    let teacher = run_dir().join("teacher");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(["inspect", teacher.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child has hashed its files and written anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
