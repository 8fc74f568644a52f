//! `reco-cli distill`: the student's lineage, distillation settings and size; bad settings and
//! inputs refused without writing anything.

use crate::support::{copy_dir, input_error, ok, pipeline, read_json, reco, run_dir, write_json};

#[test]
fn student_records_lineage_and_distillation_and_is_evaluated_beside_the_teacher() {
    let run = run_dir();
    let o = ok(reco(&["inspect", run.join("teacher").to_str().unwrap(), "--json"], pipeline()));
    let teacher: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let o = ok(reco(&["inspect", run.join("student").to_str().unwrap(), "--json"], pipeline()));
    let student: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let m = &student["manifest"];
    assert_eq!(m["kind"], "student");
    assert_eq!(m["lineage"]["parent_content_sha256"], teacher["content_sha256"]);
    let d = &m["training"]["distillation"];
    assert_eq!(
        (d["temperature"].as_f64(), d["alpha"].as_f64(), d["ratio"].as_f64()),
        (Some(3.0), Some(0.7), Some(0.5))
    );
    assert!(d["loss"].as_str().unwrap().contains("T^2"));
    // tiny.toml: teacher hidden [32, 16], embeddings 8 (ids) and 2 -> student [16, 8], 4 and 1.
    assert_eq!(m["architecture"]["hidden"], serde_json::json!([16, 8]));
    assert_eq!(m["architecture"]["embedding_dims"], serde_json::json!([4, 4, 1, 1]));
    let t_params = teacher["manifest"]["metrics"]["parameters"].as_u64().unwrap();
    let s_params = m["metrics"]["parameters"].as_u64().unwrap();
    assert!(s_params * 2 < t_params, "student {s_params} vs teacher {t_params}");
    let report = read_json(&run.join("report.json"));
    let kinds: Vec<&str> =
        report["eval"]["models"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["teacher", "student", "student-scratch", "teacher-int8", "student-int8"]);
}

#[test]
fn a_listwise_student_records_its_weight_and_term_and_differs_from_the_pointwise_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["teacher", "features"] {
        copy_dir(&run_dir().join(d), &root.join(d));
    }
    // The tiny run's student, with distill.listwise unset: on, as its rows come in sessions.
    let auto = crate::support::manifest_json(&run_dir().join("student"));
    assert_eq!(auto["training"]["distillation"]["listwise"].as_f64(), Some(1.0));
    let o = ok(reco(&["distill", "--teacher", "teacher", "--listwise", "1.5", "--no-scratch"], root));
    assert!(o.stdout.contains("listwise 1.5"), "{}", o.stdout);
    // Sessions of up to 6 shown places: fewer groups than rows, more than a sixth of them.
    let rows = crate::support::read_batch(&root.join("features/train.parquet")).num_rows();
    let o = ok(reco(&["distill", "--teacher", "teacher", "--listwise", "1.5", "--no-scratch", "--json"], root));
    let summary: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let groups = summary["candidate_groups"].as_u64().unwrap() as usize;
    assert!(groups < rows && groups * 6 >= rows, "{groups} groups of {rows} rows");
    let m = crate::support::manifest_json(&root.join("student"));
    let d = &m["training"]["distillation"];
    assert_eq!(d["listwise"].as_f64(), Some(1.5));
    assert!(d["loss"].as_str().unwrap().contains("softmax_g(t/T)"), "{d}");
    let o =
        ok(reco(&["distill", "--teacher", "teacher", "--listwise", "0", "--no-scratch", "--out", "p", "--json"], root));
    assert!(serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["candidate_groups"].is_null());
    let d = &crate::support::manifest_json(&root.join("p/student"))["training"]["distillation"];
    assert_eq!(d["listwise"].as_f64(), Some(0.0));
    assert!(!d["loss"].as_str().unwrap().contains("softmax_g"), "{d}");
    // Same seed and settings but the listwise term: other weights.
    let bytes = |dir: &str| std::fs::read(root.join(dir).join("model.safetensors")).unwrap();
    assert_ne!(bytes("student"), bytes("p/student"));
}

#[test]
fn listwise_needs_timestamps_when_asked_for_and_is_off_without_them_when_unset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["teacher", "features"] {
        copy_dir(&run_dir().join(d), &root.join(d));
    }
    for split in ["train", "valid"] {
        let path = root.join(format!("features/{split}.parquet"));
        let batch = crate::support::read_batch(&path);
        let keep: Vec<usize> =
            (0..batch.num_columns()).filter(|&i| batch.schema().field(i).name() != "timestamp").collect();
        crate::support::write_parquet_batch(&path, &batch.project(&keep).unwrap());
    }
    input_error(
        &reco(&["distill", "--teacher", "teacher", "--listwise", "1", "--no-scratch"], root),
        &["train.parquet", "no timestamp column", "distill.listwise = 0"],
    );
    assert!(!root.join("student").exists());
    ok(reco(&["distill", "--teacher", "teacher", "--no-scratch"], root));
    let d = &crate::support::manifest_json(&root.join("student"))["training"]["distillation"];
    assert_eq!(d["listwise"].as_f64(), Some(0.0));
}

#[test]
fn distill_rejects_bad_settings_and_inputs_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["teacher", "features", "student"] {
        copy_dir(&run_dir().join(d), &root.join(if d == "student" { "not-a-teacher" } else { d }));
    }
    let cases: [(&[&str], &str); 8] = [
        (&["--listwise", "-1"], "listwise"),
        (&["--listwise", "nan"], "listwise"),
        (&["--temperature", "0"], "temperature"),
        (&["--temperature", "-2"], "temperature"),
        (&["--alpha", "1.5"], "alpha"),
        (&["--alpha", "-0.1"], "alpha"),
        (&["--ratio", "0"], "ratio"),
        (&["--ratio", "1.5"], "ratio"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["distill", "--teacher", "teacher"];
        args.extend_from_slice(extra);
        input_error(&reco(&args, root), &[needle]);
    }
    input_error(&reco(&["distill", "--teacher", "features"], root), &["features", "manifest.json"]);
    input_error(
        &reco(&["distill", "--teacher", "not-a-teacher", "--features", "features"], root),
        &["not-a-teacher", "expected a float teacher"],
    );
    let spec_path = root.join("features/feature_spec.json");
    let mut spec = read_json(&spec_path);
    spec["numeric"][0]["mean"] = serde_json::json!(123.0);
    write_json(&spec_path, &spec);
    input_error(&reco(&["distill", "--teacher", "teacher"], root), &["feature_spec.json", "does not match"]);
    for d in ["student", "student-scratch"] {
        assert!(!root.join(d).exists(), "{d} was written");
    }
}
