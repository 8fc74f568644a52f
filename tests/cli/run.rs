//! `reco-cli run`: the tiny recipe's stages, report and ONNX exports; a recipe's unknown key; a
//! check-in log end to end beside the baselines; gates on metrics that cannot be measured; reuse of
//! synthetic raw data; a second run into a locked output.

use crate::support::{
    checkins_case, input_error, manifest_json, ok, parquet_f64, pipeline, predict, read_json, reco, repo, run_dir,
};

#[test]
fn run_writes_a_verified_teacher_and_a_report_in_the_stable_shape() {
    let run = run_dir();
    let report = read_json(&run.join("report.json"));
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["synth", "prepare", "train", "distill", "quantize-teacher", "quantize-student", "eval", "export"]
    );
    // `run` exports every deliverable to ONNX (recorded in its manifest), not the scratch baseline.
    for stage in ["teacher", "student", "teacher-int8", "student-int8"] {
        let m = manifest_json(&run.join(stage));
        assert_eq!(m["exports"]["onnx"]["file"], "model.onnx", "{stage}");
    }
    assert!(!run.join("student-scratch/model.onnx").exists());
    let eval = &report["eval"];
    let oracle = eval["oracle_auc"].as_f64().unwrap();
    assert!(oracle > 0.6 && oracle < 1.0, "oracle {oracle}");
    let m = &eval["models"][0];
    for key in ["name", "path", "kind", "auc", "logloss", "ece", "hr@10", "ndcg@10", "size_bytes", "rows"] {
        assert!(m.get(key).is_some(), "missing {key} in {m}");
    }
    assert_eq!(m["kind"], "teacher");
    // Even two epochs on tiny data must beat chance clearly.
    assert!(m["auc"].as_f64().unwrap() > 0.6, "{m}");
    let hr = m["hr@10"].as_f64().unwrap();
    assert!(hr > 10.0 / 20.0, "HR@10 over 20 candidates should beat random (0.5): {hr}");
    assert!(run.join("teacher/manifest.json").is_file());
    assert!(run.join("checkpoints/teacher/epoch-001.safetensors").is_file());
    let o = ok(reco(&["inspect", run.join("teacher").to_str().unwrap()], pipeline()));
    assert!(o.stdout.contains("dense.0.weight") && o.stdout.contains("embedding.user_id"), "{}", o.stdout);
}

#[test]
fn unknown_recipe_key_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.toml"), "name = \"x\"\n[data]\nsource = \"synth\"\n[train]\nepochz = 3\n")
        .unwrap();
    input_error(&reco(&["run", "r.toml", "--out", "out"], dir.path()), &["r.toml", "epochz", "line 5"]);
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_checkin_log_runs_end_to_end_and_is_scored_with_string_ids_beside_the_baselines() {
    let dir = checkins_case();
    let o = ok(reco(&["run", "r.toml", "--out", "out", "--json"], dir.path()));
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let baselines = report["eval"]["baselines"].as_array().unwrap();
    let names: Vec<&str> = baselines.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["history", "popularity", "nearest"]);
    for b in baselines {
        assert!(b["auc"].as_f64().is_some_and(|a| a > 0.0 && a < 1.0), "{b}");
        assert!(b["ndcg@10"].as_f64().is_some(), "{b}");
    }
    // The model ranks better than putting the nearest venue first.
    let teacher = report["eval"]["models"].as_array().unwrap().iter().find(|m| m["name"] == "teacher").unwrap();
    assert!(teacher["auc"].as_f64().unwrap() > baselines[1]["auc"].as_f64().unwrap(), "{report}");
    let test = dir.path().join("out/features/test.parquet");
    for model in ["teacher", "student-int8"] {
        let out = dir.path().join(format!("{model}.parquet"));
        predict(&dir.path().join("out").join(model), &test, &out, dir.path());
        let p = parquet_f64(&out, "probability");
        assert_eq!(p.len(), parquet_f64(&test, "label").len());
        assert!(p.iter().all(|x| (0.0..=1.0).contains(x)) && p.iter().any(|&x| x != p[0]));
    }
}

#[test]
fn gates_on_metrics_that_cannot_be_measured_fail_instead_of_passing() {
    // A tiny radius leaves no ranking candidates: every query is its positive alone, and NDCG
    // would be 1.0 for any model.
    let dir = tempfile::tempdir().unwrap();
    let recipe = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    let recipe = recipe.replace("[prepare]\n", "[prepare]\nradius_km = 0.000001\n")
        + "\n[gates]\nmin_student_ndcg_retention = 0.5\nmax_teacher_oracle_auc_gap = 1.0\n";
    std::fs::write(dir.path().join("r.toml"), recipe).unwrap();
    let o = reco(&["run", "r.toml", "--out", "out", "--json", "--junit", "j.xml"], dir.path());
    assert_eq!(o.code, 1, "{}", o.stderr);
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    // The JUnit file: that gate is a failing case saying why it has no value.
    let junit = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
    let case = junit.split("<testcase ").find(|c| c.contains("name=\"student_ndcg_retention\"")).unwrap();
    assert!(
        case.contains("<failure message=\"student_ndcg_retention on student: the value could not be measured"),
        "{case}"
    );
    assert!(case.contains("value: not measured") && case.contains("threshold: 0.5"), "{case}");
    let teacher = &report["eval"]["models"][0];
    assert!(teacher["ndcg@10"].is_null() && teacher["hr@10"].is_null(), "{teacher}");
    let gate = |name: &str| report["gates"].as_array().unwrap().iter().find(|g| g["name"] == name).unwrap().clone();
    let ndcg = gate("student_ndcg_retention");
    assert!(ndcg["value"].is_null() && ndcg["passed"] == false, "{ndcg}");
    assert!(gate("student_int8_abs_delta_ndcg")["passed"] == false);
    // The oracle is there (synthetic data): that gate is measured and holds.
    assert_eq!(gate("teacher_oracle_auc_gap")["passed"], true);
}

#[test]
fn synthetic_raw_data_is_reused_only_when_it_was_made_with_the_recipes_settings() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    std::fs::write(dir.path().join("r.toml"), &recipe).unwrap();
    let raw = dir.path().join("out/raw/interactions.parquet");
    let made = || std::fs::metadata(&raw).unwrap().modified().unwrap();
    let run = || ok(reco(&["run", "r.toml", "--out", "out"], dir.path()));
    run();
    let first = made();
    run();
    assert_eq!(made(), first, "same settings: raw/ reused");
    std::fs::write(dir.path().join("r.toml"), recipe.replace("users = 150", "users = 120")).unwrap();
    run();
    assert_ne!(made(), first, "other settings: raw/ regenerated");
    let synth = read_json(&dir.path().join("out/raw/synth.json"));
    assert_eq!(synth["params"]["users"], 120);
}

#[test]
fn a_second_run_into_a_locked_output_fails_cleanly_and_runs_once_the_lock_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/tiny.toml");
    let out = dir.path().join("out");
    let lock = reco::outputs::OutputLock::acquire(&out).unwrap();
    let o = reco(&["run", recipe.to_str().unwrap(), "--out", "out"], dir.path());
    input_error(&o, &["another reco-cli process is writing there", ".reco-cli.lock"]);
    assert!(!out.join("teacher").exists() && !out.join("raw").exists());
    drop(lock);
    ok(reco(&["run", recipe.to_str().unwrap(), "--out", "out"], dir.path()));
}

/// Shape of tensor `name` in a safetensors file, read from its JSON header.
fn tensor_shape(path: &std::path::Path, name: &str) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header[name]["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect()
}

#[test]
fn a_dot_interaction_runs_end_to_end_is_recorded_in_every_manifest_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    std::fs::write(dir.path().join("r.toml"), tiny.replace("[train]\n", "[train]\ninteraction = \"dot\"\n")).unwrap();
    let o = ok(reco(&["run", "r.toml", "--out", "out", "--json"], dir.path()));
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let out = dir.path().join("out");
    for stage in ["teacher", "student", "student-scratch", "teacher-int8", "student-int8"] {
        let m = manifest_json(&out.join(stage));
        let arch = &m["architecture"];
        assert_eq!(arch["interaction"], "dot", "{stage}");
        assert_eq!(m["recipe"]["train"]["interaction"], "dot", "{stage}");
        let dims: Vec<u64> = arch["embedding_dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(dims[0], dims[1], "{stage}: the dot's pair has equal widths");
        // Layer 0 takes every embedding, every number and the dot.
        let numeric = m["feature_spec"]["numeric"].as_array().unwrap().len() as u64;
        let name = if stage.ends_with("int8") { "dense.0.weight_q" } else { "dense.0.weight" };
        let shape = tensor_shape(&out.join(stage).join("model.safetensors"), name);
        assert_eq!(shape[1], dims.iter().sum::<u64>() + numeric + 1, "{stage}: {shape:?}");
    }
    assert_eq!(manifest_json(&out.join("student"))["architecture"]["embedding_dims"][0], 4, "scaled by the ratio");
    // A run without the term writes no `interaction` key at all (its manifests keep their bytes).
    let plain = manifest_json(&run_dir().join("teacher"));
    assert!(
        plain["architecture"].get("interaction").is_none() && plain["recipe"]["train"].get("interaction").is_none()
    );
    // Every deliverable exported; the models score, and the teacher learned something.
    for stage in ["teacher", "student", "teacher-int8", "student-int8"] {
        assert_eq!(manifest_json(&out.join(stage))["exports"]["onnx"]["file"], "model.onnx", "{stage}");
    }
    let teacher = report["eval"]["models"].as_array().unwrap().iter().find(|m| m["name"] == "teacher").unwrap();
    assert!(teacher["auc"].as_f64().unwrap() > 0.6, "{teacher}");
    let test = out.join("features/test.parquet");
    let mut scores = Vec::new();
    for model in ["teacher", "teacher-int8"] {
        let p = dir.path().join(format!("{model}.parquet"));
        predict(&out.join(model), &test, &p, dir.path());
        let probability = parquet_f64(&p, "probability");
        assert_eq!(probability.len(), parquet_f64(&test, "label").len());
        assert!(
            probability.iter().all(|x| (0.0..=1.0).contains(x)) && probability.iter().any(|&x| x != probability[0])
        );
        scores.push(parquet_f64(&p, "logit"));
    }
    // INT8 stays close to its float parent, term included.
    let gap = scores[0].iter().zip(&scores[1]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(gap < 0.1, "INT8 logits within 0.1 of float: {gap}");
}

#[test]
fn a_size_sweep_with_an_ensemble_writes_each_size_beside_its_scratch_baseline_and_charts_them() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    let gates = "[gates]\nmin_student_auc_retention = 0.5\nmin_distill_gain = -1\n";
    let recipe = format!("{tiny}\n[distill]\nratios = [0.5, 0.25]\nteachers = 2\n{gates}");
    std::fs::write(dir.path().join("r.toml"), &recipe).unwrap();
    let o = ok(reco(&["run", "r.toml", "--out", "out", "--json"], dir.path()));
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let out = dir.path().join("out");
    // Teacher [32, 16], embeddings 8 and 2: the sweep's second size is a quarter of it.
    for (stage, hidden, ratio) in [("student", [16, 8], 0.5), ("student-r0.25", [8, 4], 0.25)] {
        let m = manifest_json(&out.join(stage));
        assert_eq!(m["architecture"]["hidden"], serde_json::json!(hidden), "{stage}");
        let d = &m["training"]["distillation"];
        assert_eq!((d["ratio"].as_f64(), d["teachers"].as_u64()), (Some(ratio), Some(2)), "{stage}");
    }
    let scratch = manifest_json(&out.join("student-scratch-r0.25"));
    assert_eq!(scratch["kind"], "student-scratch");
    assert_eq!(scratch["architecture"]["hidden"], serde_json::json!([8, 4]));
    // Each distilled size is paired with the scratch student of its own size.
    let models = report["eval"]["models"].as_array().unwrap();
    let against = |name: &str| {
        let m = models.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} not evaluated"));
        m["vs_scratch"]["against"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(against("student"), "student-scratch");
    assert_eq!(against("student-r0.25"), "student-scratch-r0.25");
    // The ensemble: the teacher's seed and the next one, on both sizes' soft targets.
    let distill = report["stages"].as_array().unwrap().iter().find(|s| s["name"] == "distill").unwrap();
    let detail = &distill["detail"];
    let seeds = |d: &serde_json::Value| d["ensemble"]["seeds"].clone();
    assert_eq!(seeds(detail), serde_json::json!([7, 8]), "{detail}");
    assert_eq!(seeds(&detail["sweep"][0]), serde_json::json!([7, 8]));
    assert!(out.join("checkpoints/teacher-1").is_dir());
    // The extra size is a deliverable (exported); its baseline is not; the report charts both.
    assert_eq!(manifest_json(&out.join("student-r0.25"))["exports"]["onnx"]["file"], "model.onnx");
    assert!(manifest_json(&out.join("student-scratch-r0.25"))["exports"].get("onnx").is_none());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("students-by-size.svg"), "the size chart is linked");
    let svg = std::fs::read_to_string(out.join("report/students-by-size.svg")).unwrap();
    assert!(svg.contains("distilled") && svg.contains("scratch"));
    // Every size is judged by the student gates, each on its own artifact.
    let gated = |artifact: &str| -> Vec<String> {
        let all = report["gates"].as_array().unwrap().iter();
        all.filter(|g| g["artifact"] == artifact).map(|g| g["name"].as_str().unwrap().to_string()).collect()
    };
    let want = ["student_auc_retention", "student_distill_gain_ndcg"].map(String::from).to_vec();
    assert_eq!(gated("student"), want);
    assert_eq!(gated("student-r0.25"), want);
    // A sweep that drops a size removes its models.
    std::fs::write(dir.path().join("r.toml"), recipe.replace("ratios = [0.5, 0.25]", "ratios = [0.5]")).unwrap();
    ok(reco(&["run", "r.toml", "--out", "out"], dir.path()));
    assert!(!out.join("student-r0.25").exists() && !out.join("student-scratch-r0.25").exists());
    assert!(out.join("student").is_dir());
    // Two ratios that round to one network.
    std::fs::write(dir.path().join("r.toml"), recipe.replace("ratios = [0.5, 0.25]", "ratios = [0.5, 0.49]")).unwrap();
    crate::support::input_error(
        &reco(&["run", "r.toml", "--out", "out"], dir.path()),
        &["distill ratios 0.5 and 0.49 give the same student", "keep one"],
    );
}

#[test]
fn a_run_that_stops_at_a_stage_writes_it_as_an_error_case_and_a_junit_path_onto_an_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("r.toml"), "name = \"gone\"\n[data]\nsource = \"files\"\ndir = \"no-such-dir\"\n").unwrap();
    let o = reco(&["run", "r.toml", "--out", "out", "--junit", "j.xml", "--summary", "s.md"], d);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let junit = std::fs::read_to_string(d.join("j.xml")).unwrap();
    assert!(junit.contains("tests=\"1\" failures=\"0\" errors=\"1\""), "{junit}");
    assert!(
        junit.contains("name=\"prepare\"") && junit.contains("<error message=") && junit.contains("no-such-dir"),
        "{junit}"
    );
    let summary = std::fs::read_to_string(d.join("s.md")).unwrap();
    assert!(summary.contains("stopped at stage `prepare`") && summary.contains("no-such-dir"), "{summary}");
    // Onto the recipe (an input): refused before anything runs, the recipe intact.
    let recipe = std::fs::read(d.join("r.toml")).unwrap();
    input_error(
        &reco(&["run", "r.toml", "--out", "out2", "--junit", "r.toml"], d),
        &["--junit", "r.toml", "nothing written"],
    );
    assert_eq!(std::fs::read(d.join("r.toml")).unwrap(), recipe);
    assert!(!d.join("out2").exists());
}
