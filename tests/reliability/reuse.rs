//! Stage reuse: a second identical `run` recomputes nothing; editing only `[quantize]` redoes
//! quantize, eval and export and nothing before; `--from` and `--force` recompute.

use std::collections::BTreeMap;
use std::path::Path;

use super::common::{edit, ok, reco, repo, snapshot};

/// `run --json`: each stage's `reused` flag, by stage name.
fn reused(recipe: &Path, out: &Path, extra: &[&str]) -> BTreeMap<String, bool> {
    let mut args = vec!["run", recipe.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = ok(reco(&args, out.parent().unwrap()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["reports"]["html"], "report.html", "run --json names the reports");
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["reused"] == true))
        .collect()
}

fn ran(flags: &BTreeMap<String, bool>) -> Vec<&str> {
    flags.iter().filter(|(_, r)| !**r).map(|(n, _)| n.as_str()).collect()
}

#[test]
fn unchanged_stages_are_reused_and_only_what_an_edit_touches_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    let out = dir.path().join("out");
    let first = reused(&recipe, &out, &[]);
    assert_eq!(first.len(), 8, "{first:?}");
    assert!(first.values().all(|r| !r), "a first run computes everything: {first:?}");
    let before = snapshot(&out);

    let second = reused(&recipe, &out, &[]);
    assert_eq!(ran(&second), Vec::<&str>::new(), "an identical rerun recomputes nothing");
    let same =
        |a: &BTreeMap<String, Option<Vec<u8>>>, b: &BTreeMap<String, Option<Vec<u8>>>, f: &str| a.get(f) == b.get(f);
    let after = snapshot(&out);
    for f in ["teacher/model.safetensors", "features/train.parquet", "student-int8/manifest.json", "teacher/model.onnx"]
    {
        assert!(same(&before, &after, f), "{f} changed on a reused run");
    }
    // The report says the stages were reused, and otherwise holds the same bytes (compared as
    // text: a JSON parser may read two neighbouring floats as one).
    let text = |m: &BTreeMap<String, Option<Vec<u8>>>| String::from_utf8(m["report.json"].clone().unwrap()).unwrap();
    let reused_text = text(&after).replace("\"reused\": true", "\"reused\": false");
    assert_eq!(reused_text, text(&before), "a reused run's report.json differs from the fresh run's");

    // A copy of the run elsewhere keeps its keys (they hold content, not paths).
    let copy = dir.path().join("copy");
    super::common::copy_dir(&out, &copy);
    let copied = reused(&recipe, &copy, &[]);
    assert_eq!(ran(&copied), Vec::<&str>::new(), "a copied run recomputes nothing");

    // Only [quantize]: the INT8 models, their evaluation and export run again.
    edit(&recipe, "max_auc_drop = 0.02", "max_auc_drop = 0.03");
    let third = reused(&recipe, &out, &[]);
    assert_eq!(ran(&third), ["eval", "export", "quantize-student", "quantize-teacher"], "{third:?}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let gate = report["gates"].as_array().unwrap().iter().find(|g| g["name"] == "teacher_int8_abs_delta_auc").unwrap();
    assert_eq!(gate["threshold"], 0.03, "the edit reached the gate");
    // The reused models are byte for byte what a fresh run writes: their manifests record the
    // recipe sections their stages read, not [quantize]; the new INT8 model records the edit.
    let edited = snapshot(&out);
    for f in ["teacher/manifest.json", "student/manifest.json", "teacher/model.onnx"] {
        assert!(same(&before, &edited, f), "{f} changed though its stage was reused");
    }
    let teacher: serde_json::Value = serde_json::from_slice(edited["teacher/manifest.json"].as_ref().unwrap()).unwrap();
    assert!(
        teacher["recipe"].get("quantize").is_none() && teacher["recipe"]["train"].is_object(),
        "{}",
        teacher["recipe"]
    );
    let int8: serde_json::Value =
        serde_json::from_slice(edited["teacher-int8/manifest.json"].as_ref().unwrap()).unwrap();
    assert_eq!(int8["quantization"]["gate"]["max_auc_drop"], 0.03);

    // Another command writing into a stage's output makes that stage run again.
    let (teacher_dir, cal) = (out.join("teacher"), out.join("features/calibration.parquet"));
    let args = [
        "quantize",
        "--model",
        teacher_dir.to_str().unwrap(),
        "--calibration",
        cal.to_str().unwrap(),
        "--weight-bits",
        "8",
    ];
    ok(reco(&args, dir.path()));
    let after_cli = reused(&recipe, &out, &[]);
    assert_eq!(ran(&after_cli), ["eval", "export", "quantize-teacher"], "{after_cli:?}");

    // --from train: train and everything after; --force: everything, synth included.
    let from = reused(&recipe, &out, &["--from", "train"]);
    assert_eq!((from["synth"], from["prepare"], from["train"], from["eval"]), (true, true, false, false), "{from:?}");
    let forced = reused(&recipe, &out, &["--force"]);
    assert!(forced.values().all(|r| !r), "{forced:?}");

    // A damaged output is not reused: its stage runs again.
    let weights = out.join("student/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let repaired = reused(&recipe, &out, &[]);
    assert!(!repaired["distill"] && repaired["train"], "{repaired:?}");
}

/// `run --json` in `out`'s parent: the exit code, and each stage's `reused` flag when it ran
/// to the end.
fn run_flags(recipe: &Path, out: &Path) -> (i32, BTreeMap<String, bool>, String) {
    let args = ["run", recipe.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    let o = reco(&args, out.parent().unwrap());
    let flags = serde_json::from_str::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["stages"].as_array().cloned())
        .map(|s| s.iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["reused"] == true)).collect())
        .unwrap_or_default();
    (o.code, flags, o.stderr)
}

/// Issue 25: reuse checks what it trusts. A manifest edited by hand (its feature spec, its
/// status) makes the stage that wrote it run again; raw tables replaced under a synthetic
/// run are generated again; editing only `[distill]` leaves the teacher's INT8 model alone.
#[test]
fn edited_manifests_and_replaced_raw_tables_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    let out = dir.path().join("out");
    assert_eq!(run_flags(&recipe, &out).0, 0);
    let teacher_manifest = std::fs::read(out.join("teacher/manifest.json")).unwrap();

    // The feature spec's normalization, edited: the teacher is retrained (the same bytes
    // come back), and everything evaluated on it again.
    let mut m: serde_json::Value = serde_json::from_slice(&teacher_manifest).unwrap();
    let mean = m["feature_spec"]["numeric"][0]["mean"].as_f64().unwrap();
    m["feature_spec"]["numeric"][0]["mean"] = serde_json::json!(mean + 1.0);
    std::fs::write(out.join("teacher/manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (code, flags, err) = run_flags(&recipe, &out);
    assert_eq!(code, 0, "{err}");
    assert!(!flags["train"] && !flags["eval"] && flags["prepare"], "{flags:?}");
    assert_eq!(
        std::fs::read(out.join("teacher/manifest.json")).unwrap(),
        teacher_manifest,
        "retrained to the same bytes"
    );

    // An INT8 model's status set to failed by hand: its quantize stage runs again, and the
    // report and the manifest agree.
    let p = out.join("teacher-int8/manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["status"] = "failed".into();
    std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (code, flags, _) = run_flags(&recipe, &out);
    assert_eq!(code, 0);
    assert_eq!(ran(&flags), ["eval", "export", "quantize-teacher"], "{flags:?}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(m["status"], "ok");

    // Only [distill] edited: the distillation and what reads it run again, not quantize-teacher.
    edit(&recipe, "[quantize]", "[distill]\ntemperature = 2.0\n[quantize]");
    let (_, flags, _) = run_flags(&recipe, &out);
    assert_eq!(ran(&flags), ["distill", "eval", "export", "quantize-student"], "{flags:?}");

    // Another data set in raw/: synth runs again instead of vouching for tables it did not write.
    let inter = out.join("raw/interactions.parquet");
    let original = std::fs::read(&inter).unwrap();
    std::fs::copy(out.join("features/test.parquet"), &inter).unwrap();
    let (code, flags, err) = run_flags(&recipe, &out);
    assert_eq!(code, 0, "{err}");
    assert!(!flags["synth"], "{flags:?}");
    assert_eq!(std::fs::read(&inter).unwrap(), original, "the tables were generated again");
}

/// Issue 25: a rerun whose teacher changes and whose distillation then diverges leaves no
/// student or INT8 model beside the new teacher (they were made from the old one), and names
/// the key that diverged; a rerun whose teacher itself fails leaves the old models, which
/// are still what they were made from.
#[test]
fn a_failed_rerun_leaves_no_model_made_from_the_replaced_parent() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    let out = dir.path().join("out");
    assert_eq!(run_flags(&recipe, &out).0, 0);
    let original = std::fs::read_to_string(&recipe).unwrap();
    edit(&recipe, "epochs = 2", "epochs = 2\nlearning_rate = 1e30");
    let (code, _, err) = run_flags(&recipe, &out);
    assert!(code == 2 && err.contains("train.learning_rate"), "{err}");
    for kept in ["student", "student-scratch", "teacher-int8", "student-int8"] {
        let model = out.join(kept);
        let o = reco(&["inspect", model.to_str().unwrap()], dir.path());
        assert!(o.code == 0 && !o.stdout.contains("STALE"), "{kept} lost to a retraining that failed: {}", o.stderr);
    }
    std::fs::write(&recipe, original).unwrap();
    edit(&recipe, "epochs = 2", "epochs = 3");
    edit(&recipe, "[quantize]", "[distill]\nlearning_rate = 1e30\n[quantize]");
    let (code, _, err) = run_flags(&recipe, &out);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("distill.learning_rate") && !err.contains("train.learning_rate"), "{err}");
    assert!(out.join("teacher/manifest.json").is_file());
    for stale in ["student", "student-scratch", "teacher-int8", "student-int8"] {
        assert!(!out.join(stale).exists(), "{stale} survived beside a teacher it was not made from");
    }
}

/// A stage record edited by hand (a metric changed so that a gate passes) is not reused: the
/// stage runs again and the report holds what it measures.
#[test]
fn an_edited_stage_record_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    std::fs::copy(repo().join("recipes/tiny.toml"), &recipe).unwrap();
    let out = dir.path().join("out");
    assert_eq!(run_flags(&recipe, &out).0, 0);
    let p = out.join("stages/eval.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = text.replacen("\"auc\"", "\"auc_was\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&p, edited).unwrap();
    let (code, flags, err) = run_flags(&recipe, &out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ran(&flags), ["eval", "export"], "{flags:?}");
}
