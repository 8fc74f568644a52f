//! Artifacts as every subcommand that loads one sees them (`inspect`, `eval`, `predict`,
//! `distill`, `quantize`) and as the library loads them: a changed byte, a manifest whose hashes or
//! feature spec do not hold, an INT8 artifact where a float model is needed, bytes or a directory.

use crate::support::{copy_dir, input_error, read_json, reco, run_dir, write_json};

#[test]
fn a_modified_byte_in_the_weights_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("teacher");
    copy_dir(&run_dir().join("teacher"), &model);
    let w = model.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(&w, bytes).unwrap();
    let test = run_dir().join("features/test.parquet");
    for args in [
        vec!["inspect", "teacher"],
        vec!["eval", "teacher", "--data", test.to_str().unwrap()],
        vec!["predict", "--model", "teacher", "--data", test.to_str().unwrap(), "--out", "p.parquet"],
    ] {
        input_error(&reco(&args, dir.path()), &["model.safetensors", "sha256 mismatch"]);
    }
    assert!(!dir.path().join("p.parquet").exists());
}

#[test]
fn a_manifest_whose_hashes_do_not_match_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("teacher");
    copy_dir(&run_dir().join("teacher"), &model);
    let mpath = model.join("manifest.json");
    let mut m = read_json(&mpath);
    m["files"]["metrics.json"]["sha256"] = serde_json::Value::String("0".repeat(64));
    write_json(&mpath, &m);
    input_error(&reco(&["inspect", "teacher"], dir.path()), &["metrics.json", "sha256 mismatch"]);
}

#[test]
fn a_manifest_with_an_unsorted_vocabulary_or_a_zero_std_is_refused() {
    for (what, edit) in [
        (
            "vocabulary",
            &(|m: &mut serde_json::Value| {
                let v = m["feature_spec"]["categorical"][0]["vocabulary"].as_array_mut().unwrap();
                v.swap(0, 1);
            }) as &dyn Fn(&mut serde_json::Value),
        ),
        ("std 0", &|m: &mut serde_json::Value| m["feature_spec"]["numeric"][0]["std"] = serde_json::json!(0.0)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("teacher");
        copy_dir(&run_dir().join("teacher"), &model);
        let mpath = model.join("manifest.json");
        let mut m = read_json(&mpath);
        edit(&mut m);
        let column = if what == "vocabulary" {
            m["feature_spec"]["categorical"][0]["name"].as_str().unwrap().to_string()
        } else {
            m["feature_spec"]["numeric"][0]["name"].as_str().unwrap().to_string()
        };
        write_json(&mpath, &m);
        let test = run_dir().join("features/test.parquet");
        for args in [
            vec!["inspect", "teacher"],
            vec!["predict", "--model", "teacher", "--data", test.to_str().unwrap(), "--out", "p.parquet"],
        ] {
            input_error(&reco(&args, dir.path()), &["manifest.json", &column, what]);
        }
        assert!(!dir.path().join("p.parquet").exists());
    }
}

#[test]
fn an_int8_artifact_where_a_float_model_is_needed_names_its_float_parent() {
    let dir = tempfile::tempdir().unwrap();
    let t8 = run_dir().join("teacher-int8");
    let o = reco(&["distill", "--teacher", t8.to_str().unwrap(), "--out", "out"], dir.path());
    input_error(&o, &["teacher-int8", "an INT8 artifact", "expected a float model", "teacher"]);
    assert!(!o.stderr.contains("missing tensor"));
    let q = reco(
        &[
            "quantize",
            "--model",
            t8.to_str().unwrap(),
            "--calibration",
            run_dir().join("features/calibration.parquet").to_str().unwrap(),
            "--out",
            "q",
        ],
        dir.path(),
    );
    input_error(&q, &["is already INT8", "expected a float artifact"]);
    assert!(!dir.path().join("out").exists() && !dir.path().join("q").exists());
}

#[test]
fn a_model_loads_from_bytes_as_from_its_directory_and_scores_the_same_on_any_thread_count() {
    use reco_runtime::runtime::Model;
    let run = run_dir();
    let data = reco::data::features::FeatureFrame::read(
        &run.join("features/test.parquet"),
        Model::open(&run.join("teacher")).unwrap().1.spec(),
        false,
    )
    .unwrap();
    for stage in ["teacher", "teacher-int8", "student-int8"] {
        let dir = run.join(stage);
        let (m1, from_dir) = Model::open(&dir).unwrap();
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
        let mut weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let (m2, from_bytes) = Model::from_bytes(stage, &manifest, &weights).unwrap();
        assert_eq!(m1.content_hash(), m2.content_hash());
        let want = from_dir.logits(&data.columns).unwrap();
        assert_eq!(from_bytes.logits(&data.columns).unwrap(), want, "{stage}");
        for threads in [1, 2, 3, 7] {
            assert_eq!(from_dir.logits_threads(&data.columns.view(), threads).unwrap(), want, "{stage} x{threads}");
        }
        // One flipped byte: refused by its hash, naming the file.
        let last = weights.len() - 1;
        weights[last] ^= 1;
        let e = Model::from_bytes(stage, &manifest, &weights).unwrap_err().to_string();
        assert!(e.contains("model.safetensors") && e.contains("sha256 mismatch"), "{e}");
    }
}
