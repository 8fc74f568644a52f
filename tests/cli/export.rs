//! `reco-cli export`: the ONNX file recorded in the manifest without changing the content hash,
//! or written elsewhere leaving the artifact alone; bad input refused.

use crate::support::{copy_dir, input_error, manifest_json, ok, reco, run_dir};

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn export_records_the_onnx_file_in_the_manifest_without_changing_the_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    for stage in ["teacher", "teacher-int8"] {
        let model = dir.path().join(stage);
        copy_dir(&run_dir().join(stage), &model);
        let before: serde_json::Value =
            serde_json::from_str(&ok(reco(&["inspect", stage, "--json"], dir.path())).stdout).unwrap();
        let out = ok(reco(&["export", "--model", stage, "--format", "onnx", "--json"], dir.path()));
        let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let bytes = std::fs::read(model.join("model.onnx")).unwrap();
        let digest = sha256_hex(&bytes);
        assert_eq!(s["sha256"], digest.as_str());
        assert_eq!(s["recorded_in_manifest"], true);
        assert_eq!(s["graph"], if stage == "teacher" { "fp32" } else { "qdq-int8" });
        let m = manifest_json(&model);
        assert_eq!(m["exports"]["onnx"]["sha256"], digest.as_str());
        assert_eq!(m["exports"]["onnx"]["file"], "model.onnx");
        assert_eq!(m["exports"]["onnx"]["bytes"], bytes.len() as u64);
        // The model itself is unchanged: same content hash, still verified and scored.
        let after: serde_json::Value =
            serde_json::from_str(&ok(reco(&["inspect", stage, "--json"], dir.path())).stdout).unwrap();
        assert_eq!(before["content_sha256"], after["content_sha256"]);
        // No temporary directories left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    // A changed byte in the export is caught on load.
    let onnx = dir.path().join("teacher/model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&onnx, bytes).unwrap();
    input_error(&reco(&["inspect", "teacher"], dir.path()), &["model.onnx", "sha256 mismatch"]);
}

#[test]
fn export_elsewhere_leaves_the_artifact_alone_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("student");
    copy_dir(&run_dir().join("student-scratch"), &model);
    let manifest_before = std::fs::read(model.join("manifest.json")).unwrap();
    let out = ok(reco(&["export", "--model", "student", "--out", "out/s.onnx", "--json"], dir.path()));
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(s["recorded_in_manifest"], false);
    assert_eq!(s["sha256"], sha256_hex(&std::fs::read(dir.path().join("out/s.onnx")).unwrap()).as_str());
    assert_eq!(std::fs::read(model.join("manifest.json")).unwrap(), manifest_before);
    assert!(!model.join("model.onnx").exists());

    input_error(&reco(&["export", "--model", "nope"], dir.path()), &["nope", "no such artifact"]);
    let mut m = manifest_json(&model);
    m["status"] = serde_json::Value::String("failed".into());
    std::fs::write(model.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    input_error(&reco(&["export", "--model", "student"], dir.path()), &["manifest.json", "failed", "refusing"]);
    assert!(!model.join("model.onnx").exists());
}

/// Every file below `dir`, relative, with its bytes.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn tflite_export_records_the_model_and_its_inputs_file_beside_onnx_byte_for_byte_again() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("teacher-int8");
    copy_dir(&run_dir().join("teacher-int8"), &model);
    let content = || -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&ok(reco(&["inspect", "teacher-int8", "--json"], dir.path())).stdout)
            .unwrap()["content_sha256"]
            .clone()
    };
    let before = content();
    ok(reco(&["export", "--model", "teacher-int8"], dir.path()));
    let out = ok(reco(&["export", "--model", "teacher-int8", "--format", "tflite", "--json"], dir.path()));
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((s["graph"].as_str(), s["ir_version"].as_i64()), (Some("tflite-int8"), Some(3)), "{s}");
    let bytes = std::fs::read(model.join("model.tflite")).unwrap();
    // A flatbuffer with LiteRT's file identifier (LiteRT itself runs it in scripts/check_tflite.py).
    assert_eq!(&bytes[4..8], b"TFL3");
    let m = manifest_json(&model);
    assert_eq!(m["exports"]["tflite"]["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(m["exports"]["tflite"]["graph"], "tflite-int8");
    let inputs = std::fs::read(model.join("model.tflite.inputs.json")).unwrap();
    assert_eq!(m["exports"]["tflite.inputs"]["sha256"], sha256_hex(&inputs).as_str());
    assert_eq!(m["exports"]["onnx"]["file"], "model.onnx", "the ONNX export stays recorded");
    assert_eq!(content(), before, "exporting changed the model's content hash");
    // The inputs file: every spec column, vocabularies as the manifest holds them, in order.
    let doc: serde_json::Value = serde_json::from_slice(&inputs).unwrap();
    let spec = &m["feature_spec"];
    let cats = spec["categorical"].as_array().unwrap();
    let nums = spec["numeric"].as_array().unwrap();
    let listed = doc["inputs"].as_array().unwrap();
    assert_eq!(listed.len(), cats.len() + nums.len());
    for (c, l) in cats.iter().zip(listed) {
        assert_eq!(
            (&c["name"], &c["vocabulary"], l["tensor_type"].as_str()),
            (&l["name"], &l["vocabulary"], Some("int32"))
        );
    }
    for (n, l) in nums.iter().zip(&listed[cats.len()..]) {
        assert_eq!((&n["name"], &n["mean"], &n["std"]), (&l["name"], &l["mean"], &l["std"]));
        assert_eq!(l["shape"], serde_json::json!([-1, 1]));
    }
    // Same artifact, same bytes (into another directory too).
    ok(reco(&["export", "--model", "teacher-int8", "--format", "tflite", "--out", "again/m.tflite"], dir.path()));
    assert_eq!(std::fs::read(dir.path().join("again/m.tflite")).unwrap(), bytes);
    assert_eq!(std::fs::read(dir.path().join("again/m.tflite.inputs.json")).unwrap(), inputs);
    ok(reco(&["inspect", "teacher-int8"], dir.path()));
}

#[test]
fn tflite_export_refuses_what_it_cannot_express_and_paths_it_must_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for stage in ["teacher", "student"] {
        copy_dir(&run_dir().join(stage), &d.join(stage));
    }
    copy_dir(&run_dir().join("features"), &d.join("features"));
    let cal = "features/calibration.parquet";
    let loose = ["--max-auc-drop", "1", "--max-ndcg-drop", "1"];
    let mixed = ["quantize", "--model", "teacher", "--calibration", cal, "--keep-float", "1", "--out", "mixed"];
    ok(reco(&[&mixed[..], &loose[..]].concat(), d));
    let dynamic = ["quantize", "--model", "teacher", "--calibration", cal, "--dynamic", "--out", "dyn"];
    ok(reco(&[&dynamic[..], &loose[..]].concat(), d));
    let before = tree(d);
    let export = |args: &[&str]| reco(&[&["export", "--format", "tflite"][..], args].concat(), d);
    input_error(&export(&["--model", "mixed"]), &["layer 1", "kept in float", "export ONNX"]);
    input_error(&export(&["--model", "dyn"]), &["layer 0", "dynamically"]);
    input_error(
        &export(&["--model", "teacher", "--out", "student/model.tflite"]),
        &["student", "inside", "nothing written"],
    );
    input_error(&export(&["--model", "teacher", "--out", "t.onnx"]), &["t.onnx", "TFLite", "nothing written"]);
    input_error(
        &export(&["--model", "teacher", "--out", "teacher/manifest.json"]),
        &["manifest.json", "nothing written"],
    );
    assert_eq!(tree(d), before, "a refused export wrote something");
}

#[test]
fn triton_export_writes_a_model_folder_with_the_recipes_batching_and_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_dir(&run_dir().join("teacher-int8"), &d.join("teacher-int8"));
    let tiny = std::fs::read_to_string(crate::support::repo().join("recipes/tiny.toml")).unwrap();
    std::fs::write(d.join("r.toml"), format!("{tiny}\n[serve]\nmax_batch = 16\nmax_wait_ms = 3\nthreads = 2\n"))
        .unwrap();
    let args = ["export", "--model", "teacher-int8", "--format", "triton", "--out", "repo", "--recipe", "r.toml"];
    let s: serde_json::Value = serde_json::from_str(&ok(reco(&[&args[..], &["--json"]].concat(), d)).stdout).unwrap();
    let onnx = std::fs::read(d.join("repo/teacher-int8/1/model.onnx")).unwrap();
    assert_eq!(s["onnx_sha256"], sha256_hex(&onnx).as_str());
    let config = std::fs::read_to_string(d.join("repo/teacher-int8/config.pbtxt")).unwrap();
    for line in [
        "name: \"teacher-int8\"",
        "max_batch_size: 16",
        "preferred_batch_size: [ 16 ]",
        "max_queue_delay_microseconds: 3000",
        "count: 2",
    ] {
        assert!(config.contains(line), "{line:?} not in\n{config}");
    }
    assert!(config.contains(&format!("string_value: \"{}\"", sha256_hex(&onnx))), "{config}");
    // Again: the folder is replaced whole, to the same bytes.
    ok(reco(&args, d));
    assert_eq!(std::fs::read_to_string(d.join("repo/teacher-int8/config.pbtxt")).unwrap(), config);
    let before = tree(d);
    let triton =
        |extra: &[&str]| reco(&[&["export", "--model", "teacher-int8", "--format", "triton"][..], extra].concat(), d);
    input_error(&triton(&["--out", "repo", "--name", "../x"]), &["--name", "\"../x\"", "nothing written"]);
    input_error(&triton(&["--out", "repo", "--name", ".hidden"]), &["--name", "nothing written"]);
    input_error(&triton(&[]), &["--out REPO", "required"]);
    std::fs::create_dir_all(d.join("repo/other")).unwrap();
    std::fs::write(d.join("repo/other/notes.txt"), "mine").unwrap();
    let before_other = tree(d);
    input_error(
        &triton(&["--out", "repo", "--name", "other"]),
        &["other", "not a Triton model folder", "nothing written"],
    );
    assert_eq!(tree(d), before_other);
    input_error(&triton(&["--out", "teacher-int8/repo"]), &["teacher-int8", "nothing written"]);
    input_error(
        &reco(&["export", "--model", "teacher-int8", "--name", "x"], d),
        &["--name and --recipe go with --format triton"],
    );
    std::fs::remove_dir_all(d.join("repo/other")).unwrap();
    assert_eq!(tree(d), before, "a refused export wrote something");
}
