//! Issue 25: a gate's verdict reaches the artifacts. A run whose student gate fails marks the
//! student and every model made from it `failed` in their manifests, keeps no export beside
//! them, refuses them in `predict` and `export` (unless `--allow-failed`), and the report's
//! first line names the failed gate and the artifact to ship instead.

use super::common::{edit, read_json, reco, repo};

#[test]
fn a_failed_student_gate_marks_the_student_and_its_int8_model_failed() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    // Retention 1.0: the student must match the teacher exactly, which a half-size network
    // trained for two epochs does not.
    edit(&recipe, "[quantize]", "[gates]\nmin_student_auc_retention = 1.0\n[quantize]");
    let o = reco(&["run", "tiny.toml", "--out", "out", "--json"], dir.path());
    assert_eq!(o.code, 1, "a failed gate exits 1: {}", o.stderr);
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let gate = report["gates"].as_array().unwrap().iter().find(|g| g["name"] == "student_auc_retention").unwrap();
    assert_eq!((gate["artifact"].as_str(), gate["passed"].as_bool()), (Some("student"), Some(false)), "{gate}");
    assert!(gate["value"].as_f64().unwrap() < 1.0);

    let out = dir.path().join("out");
    for (model, status) in
        [("teacher", "ok"), ("teacher-int8", "ok"), ("student", "failed"), ("student-int8", "failed")]
    {
        let m = read_json(&out.join(model).join("manifest.json"));
        assert_eq!(m["status"], status, "{model}");
        if status == "failed" {
            assert_eq!(m["gate_failures"][0]["gate"], "student_auc_retention", "{model}: {}", m["gate_failures"]);
            assert_eq!(m["gate_failures"][0]["artifact"], "student");
            assert!(m.get("exports").is_none() && !out.join(model).join("model.onnx").exists(), "{model} exported");
        } else {
            assert!(m.get("gate_failures").is_none(), "{model}");
        }
    }
    let ship = report["recommended"].as_str().unwrap();
    assert!(["teacher", "teacher-int8"].contains(&ship), "{ship}");

    // The report's first line: the failed gate and what to ship instead.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let first = md.lines().next().unwrap();
    assert!(
        first.contains("FAILED gate student_auc_retention") && first.contains(&format!("ship {ship} instead")),
        "{first}"
    );

    // Serving commands refuse the failed models, by name, unless told otherwise.
    let test = out.join("features/test.parquet");
    for model in ["student", "student-int8"] {
        let m = out.join(model);
        let args = ["predict", "--model", m.to_str().unwrap(), "--data", test.to_str().unwrap(), "--out", "p.parquet"];
        let o = reco(&args, dir.path());
        assert_eq!(o.code, 2, "{model}: {}", o.stderr);
        assert!(o.stderr.contains("status failed") && o.stderr.contains("student_auc_retention"), "{}", o.stderr);
        assert!(o.stderr.contains("--allow-failed"), "{}", o.stderr);
        assert!(!dir.path().join("p.parquet").exists());
        let o = reco(&["export", "--model", m.to_str().unwrap()], dir.path());
        assert_eq!(o.code, 2, "{model}: {}", o.stderr);
        let o = reco(&["serve", "--model", m.to_str().unwrap(), "--addr", "127.0.0.1:0"], dir.path());
        assert!(o.code == 2 && o.stderr.contains("status failed"), "serve {model}: {}", o.stderr);
        let features = out.join("features");
        let args = [
            "precompute",
            "--model",
            m.to_str().unwrap(),
            "--features",
            features.to_str().unwrap(),
            "--out",
            "t.parquet",
        ];
        let o = reco(&args, dir.path());
        assert!(o.code == 2 && o.stderr.contains("status failed"), "precompute {model}: {}", o.stderr);
    }
    let student = out.join("student");
    let mut args = vec!["predict", "--model", student.to_str().unwrap(), "--data", test.to_str().unwrap()];
    args.extend(["--out", "p.parquet", "--allow-failed"]);
    assert_eq!(reco(&args, dir.path()).code, 0);
}

/// A model made from a parent that was replaced since is stale: refused like a failed one.
#[test]
fn a_model_whose_parent_was_replaced_is_refused_as_stale() {
    let run = super::common::tiny_run();
    let dir = tempfile::tempdir().unwrap();
    super::common::copy_dir(run, &dir.path().join("run"));
    // Another teacher in the student's parent's place.
    let teacher = dir.path().join("run/teacher");
    let mut m = read_json(&teacher.join("manifest.json"));
    let bytes = std::fs::read(teacher.join("metrics.json")).unwrap();
    let edited = [bytes.as_slice(), b" "].concat();
    std::fs::write(teacher.join("metrics.json"), &edited).unwrap();
    m["files"]["metrics.json"] =
        serde_json::json!({ "sha256": reco_runtime::artifact::sha256_bytes(&edited), "bytes": edited.len() });
    super::common::write_json(&teacher.join("manifest.json"), &m);
    let args = ["predict", "--model", "run/student", "--data", "run/features/test.parquet", "--out", "p.parquet"];
    let o = reco(&args, dir.path());
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("stale: run/teacher was replaced"), "{}", o.stderr);
    let o = reco(&["inspect", "run/student"], dir.path());
    assert!(o.code == 0 && o.stdout.contains("STALE"), "inspect shows it as it is: {}", o.stdout);
    let o = reco(
        &["predict", "--model", "run/teacher", "--data", "run/features/test.parquet", "--out", "p.parquet"],
        dir.path(),
    );
    assert_eq!(o.code, 0, "the teacher itself is fine: {}", o.stderr);
}

/// `judge = "interval"`: the student gates look at the paired bootstrap interval of the
/// retention, and the verdict follows its upper bound.
#[test]
fn an_interval_gate_reports_its_paired_interval_and_follows_its_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    edit(&recipe, "[quantize]", "[gates]\nmin_student_auc_retention = 1.0\njudge = \"interval\"\n[quantize]");
    let o = reco(&["run", "tiny.toml", "--out", "out", "--json"], dir.path());
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let gate = report["gates"].as_array().unwrap().iter().find(|g| g["name"] == "student_auc_retention").unwrap();
    assert_eq!(gate["judged_on"], "interval", "{gate}");
    let (lo, hi) = (gate["interval"][0].as_f64().unwrap(), gate["interval"][1].as_f64().unwrap());
    let value = gate["value"].as_f64().unwrap();
    assert!(lo <= value && value <= hi && hi - lo > 0.0, "{gate}");
    assert_eq!(gate["passed"].as_bool(), Some(hi >= 1.0), "{gate}");
    assert_eq!(o.code, if hi >= 1.0 { 0 } else { 1 }, "{}", o.stderr);
    let student = read_json(&dir.path().join("out/student/manifest.json"));
    assert_eq!(student["status"], if hi >= 1.0 { "ok" } else { "failed" });
}

/// A `manifest.json` of another program above an output is no artifact: outputs under it are
/// written (only reco-cli's own manifests mark a folder as an artifact).
#[test]
fn a_foreign_manifest_above_an_output_does_not_block_it() {
    let run = super::common::tiny_run();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.json"), r#"{"name": "my web app", "version": "1.0"}"#).unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let (teacher, test) = (run.join("teacher"), run.join("features/test.parquet"));
    let args =
        ["predict", "--model", teacher.to_str().unwrap(), "--data", test.to_str().unwrap(), "--out", "out/p.parquet"];
    let o = reco(&args, dir.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(dir.path().join("out/p.parquet").is_file());
}

/// An oracle gate on data that has no oracle is refused once the features show it, before
/// any training (it used to train every model, then fail the gate as not measurable).
#[test]
fn an_oracle_gate_on_data_without_an_oracle_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("users.csv"), crate::support::USERS).unwrap();
    std::fs::write(raw.join("places.csv"), crate::support::PLACES).unwrap();
    std::fs::write(raw.join("interactions.csv"), crate::support::interactions()).unwrap();
    let recipe = "name = \"g\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[prepare]\nnegatives_per_positive = 1\n[gates]\nmax_teacher_oracle_auc_gap = 0.02\n";
    std::fs::write(dir.path().join("g.toml"), recipe).unwrap();
    let o = reco(&["run", "g.toml", "--out", "out"], dir.path());
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("max_teacher_oracle_auc_gap") && o.stderr.lines().count() == 1, "{}", o.stderr);
    assert!(!dir.path().join("out/teacher").exists(), "it trained first");
}

/// A standalone INT8 model of a failed student inherits the failure (copied alone, it is
/// still refused), and an export forced with --allow-failed goes at the next run.
#[test]
fn a_failed_parent_passes_its_failure_on_and_a_forced_export_does_not_survive_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    edit(&recipe, "[quantize]", "[gates]\nmin_student_auc_retention = 1.0\n[quantize]");
    assert_eq!(reco(&["run", "tiny.toml", "--out", "out"], dir.path()).code, 1);
    let args =
        ["quantize", "--model", "out/student", "--calibration", "out/features/calibration.parquet", "--out", "q/s8"];
    let _ = reco(&args, dir.path());
    let m = read_json(&dir.path().join("q/s8/manifest.json"));
    assert_eq!(m["status"], "failed", "{}", m["gate_failures"]);
    assert_eq!(m["gate_failures"][0]["gate"], "student_auc_retention");
    super::common::copy_dir(&dir.path().join("q/s8"), &dir.path().join("alone/s8"));
    let args = ["predict", "--model", "alone/s8", "--data", "out/features/test.parquet", "--out", "p.parquet"];
    let o = reco(&args, dir.path());
    assert!(o.code == 2 && o.stderr.contains("student_auc_retention"), "{}", o.stderr);

    assert_eq!(reco(&["export", "--model", "out/student", "--allow-failed"], dir.path()).code, 0);
    assert!(dir.path().join("out/student/model.onnx").is_file());
    assert_eq!(reco(&["run", "tiny.toml", "--out", "out"], dir.path()).code, 1);
    assert!(!dir.path().join("out/student/model.onnx").exists(), "a failed artifact kept an export");
    assert!(read_json(&dir.path().join("out/student/manifest.json")).get("exports").is_none());
}
