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
