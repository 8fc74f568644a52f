//! `kill -9` at moments spread over a whole `run`, then two `run`s into one `--out` at once:
//! no directory that looks like an artifact fails `inspect`, the next run succeeds, and its
//! files equal an uninterrupted run's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{bin, changed, copy_dir, ok, reco, repo, reuse_blind, snapshot, tiny_run, without_timings};

/// A `run` of the tiny recipe that recomputes every stage (reusing none: the kills must land
/// in real work).
fn run_command(out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", repo().join("recipes/tiny.toml").to_str().unwrap(), "--force", "--out"])
        .arg(out)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Every visible directory holding a manifest must pass `inspect`; a visible stage directory
/// without one must not exist (features/ and raw/ are checked by their own completeness, stage
/// records must be whole JSON).
fn no_broken_artifacts(out: &Path, moment: &str) {
    let Ok(entries) = std::fs::read_dir(out) else { return };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !p.is_dir() || name.starts_with('.') || name == "checkpoints" {
            continue;
        }
        match name.as_str() {
            "raw" | "report" => {}
            "stages" => {
                // Records are written whole (atomically) or not at all.
                for r in std::fs::read_dir(&p).unwrap() {
                    let r = r.unwrap().path();
                    if !r.file_name().unwrap().to_string_lossy().starts_with('.') {
                        let bytes = std::fs::read(&r).unwrap();
                        assert!(
                            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                            "{moment}: {} is not whole",
                            r.display()
                        );
                    }
                }
            }
            "features" => {
                for f in ["train.parquet", "valid.parquet", "test.parquet", "feature_spec.json", "prepare.json"] {
                    assert!(p.join(f).is_file(), "{moment}: features/ without {f}");
                }
            }
            _ => {
                let o = reco(&["inspect", p.to_str().unwrap()], out);
                assert_eq!(o.code, 0, "{moment}: {name} looks like an artifact but fails inspect: {}", o.stderr);
            }
        }
    }
}

/// The moments to kill at: a fixed pseudo-random spread over `total` (same every test run).
fn moments(total: Duration, n: usize) -> Vec<Duration> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            total.mul_f64((x % 1000) as f64 / 1000.0)
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_never_leaves_a_broken_artifact_and_the_rerun_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // How long a whole run takes here, to spread the kills over it.
    let t = Instant::now();
    let status = run_command(&dir.path().join("timing")).status().unwrap();
    assert!(status.success());
    let total = t.elapsed();
    let mut killed = 0;
    for (i, at) in moments(total, 16).into_iter().enumerate() {
        let mut child = run_command(&out).spawn().unwrap();
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        no_broken_artifacts(&out, &format!("kill {i} at {at:?}"));
    }
    assert!(killed >= 8, "only {killed} of 16 runs were killed before they finished");
    // --resume continues whatever training the last kill interrupted.
    ok(reco(
        &["run", repo().join("recipes/tiny.toml").to_str().unwrap(), "--out", out.to_str().unwrap(), "--resume"],
        dir.path(),
    ));
    no_broken_artifacts(&out, "after the rerun");
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".reco-cli.lock")
        .collect();
    assert!(leftovers.is_empty(), "temp or old copies left after a successful rerun: {leftovers:?}");
    // It reuses what the killed runs finished; otherwise its files equal an uninterrupted run's.
    let (a, b) = (reuse_blind(tiny_run()), reuse_blind(&out));
    assert_eq!(changed(&a, &b), Vec::<String>::new(), "the rerun after kills differs from an uninterrupted run");
}

#[test]
fn two_runs_into_one_out_one_fails_cleanly_and_nothing_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = run_command(&out).spawn().unwrap();
    // Let the first take the lock.
    std::thread::sleep(Duration::from_millis(30));
    let second = run_command(&out).spawn().unwrap();
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)), "neither run succeeded: {codes:?}");
    let loser = if a.status.success() { &b } else { &a };
    if !loser.status.success() {
        assert_eq!(loser.status.code(), Some(2));
        let err = String::from_utf8_lossy(&loser.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("another reco-cli process"), "{err}");
    }
    no_broken_artifacts(&out, "after two concurrent runs");
    assert_eq!(changed(&without_timings(tiny_run()), &without_timings(&out)), Vec::<String>::new());
}

/// `train` on a copy of the tiny run's features with small batches (slow enough to kill in
/// the middle), stderr piped for its per-epoch log lines.
fn train_command(recipe: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["train", "--recipe", recipe.to_str().unwrap(), "--out"])
        .arg(out)
        .args(["--epochs", "5", "--batch-size", "32", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_training_killed_after_epoch_2_resumes_to_the_same_weights_and_history() {
    killed_after_epoch_2_resumes(&repo().join("recipes/tiny.toml"));
}

#[test]
fn a_training_from_row_groups_killed_after_epoch_2_resumes_to_the_same_weights_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("chunked.toml");
    let tiny = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    let chunked = tiny.replace("[train]\n", "[train]\nmax_rows_in_memory = 0\nshuffle_buffer_rows = 3000\n");
    assert_ne!(chunked, tiny);
    std::fs::write(&recipe, chunked).unwrap();
    killed_after_epoch_2_resumes(&recipe);
}

/// Trains `recipe` on the tiny run's features twice, the second killed after epoch 2 and
/// resumed: both end with the same files.
fn killed_after_epoch_2_resumes(recipe: &Path) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        copy_dir(&tiny_run().join("features"), &d.join("features"));
    }
    assert!(train_command(recipe, &a, &[]).status().unwrap().success());

    // Kill -9 as soon as epoch 2 is logged (its checkpoint is on disk by then).
    let mut child = train_command(recipe, &b, &[]).spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("epoch 2:") {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the training finished before the kill");
    assert!(b.join("checkpoints/teacher/resume.json").is_file());
    assert!(!b.join("teacher").exists());
    // The best after epoch 2 is the midpoint of epochs 1 and 2 (`train.average`): the resume
    // must carry on from that midpoint, not from epoch 2's weights.
    assert!(b.join("checkpoints/teacher/midpoint-002.safetensors").is_file());

    // Other settings than the checkpoint's: refused, not continued.
    let o = train_command(recipe, &b, &["--resume", "--learning-rate", "0.5"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("resume.json") && err.contains("other training data or settings"), "{err}");

    // Fewer epochs than the checkpoint already holds: refused (issue 25: it trained them all
    // and recorded the smaller number), the checkpoint left as it was.
    let mut fewer = Command::new(bin());
    fewer.args(["train", "--recipe", recipe.to_str().unwrap(), "--out"]).arg(&b);
    fewer.args(["--epochs", "1", "--batch-size", "32", "--threads", "1", "--resume"]);
    let before = snapshot(&b);
    let o = fewer.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("past the 1 epochs asked for") && err.contains("--resume"), "{err}");
    assert_eq!(changed(&before, &snapshot(&b)), Vec::<String>::new(), "a refused resume wrote");

    let o = train_command(recipe, &b, &["--resume"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming after epoch 2") && !err.contains("epoch 1:"), "{err}");
    // Same weights at every epoch, same manifest (loss and AUC history included); no resume
    // state left once training finished.
    // The killed training left its lock file (a file, not a held lock: the OS released it).
    let (mut x, mut y) = (snapshot(&a), snapshot(&b));
    for s in [&mut x, &mut y] {
        s.remove(".reco-cli.lock");
    }
    assert_eq!(changed(&x, &y), Vec::<String>::new());
    assert!(!b.join("checkpoints/teacher/resume.json").exists());
}

#[test]
fn a_rerun_killed_after_training_leaves_no_report_and_no_model_made_from_the_old_teacher() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    copy_dir(tiny_run(), &out);
    // Another seed retrains the teacher; the kill lands once the students train.
    let mut child = Command::new(bin())
        .args(["run", repo().join("recipes/tiny.toml").to_str().unwrap(), "--out"])
        .arg(&out)
        .args(["--seed", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().starts_with("student") {
            child.kill().unwrap();
            break;
        }
    }
    assert!(!child.wait().unwrap().success(), "the run finished before the kill");
    assert!(!out.join("report.json").exists(), "the old report still vouches for the old models");
    // The models made from the replaced teacher went when it was retrained (issue 25): none
    // is left to be served beside a teacher it was not made from.
    for stale in ["teacher-int8", "student-int8"] {
        assert!(!out.join(stale).exists(), "{stale} survived the retraining of its parent");
    }
    let o = ok(reco(&["inspect", tiny_run().join("teacher-int8").to_str().unwrap(), "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["lineage_status"]["state"], "current");
}
