//! `reco-cli quantize`: INT8 lineage and scheme, scores close to the float parent (static,
//! dynamic, per-tensor), bad input refused, a failed gate marked, `--keep-float` layers.

use std::path::Path;
use std::process::Command;

use crate::support::{input_error, manifest_json, ok, pipeline, predict, read_logits, reco, run_dir};

#[test]
fn int8_artifacts_record_lineage_and_scheme_and_score_close_to_their_parent() {
    let run = run_dir();
    for parent in ["teacher", "student"] {
        let q = run.join(format!("{parent}-int8"));
        let o = ok(reco(&["inspect", q.to_str().unwrap(), "--json"], pipeline()));
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let p = ok(reco(&["inspect", run.join(parent).to_str().unwrap(), "--json"], pipeline()));
        let pv: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
        let m = &v["manifest"];
        assert_eq!(m["kind"], format!("{parent}-int8"));
        assert_eq!(m["lineage"]["parent_content_sha256"], pv["content_sha256"]);
        let qz = &m["quantization"];
        assert_eq!(qz["weight_bits"], 7);
        assert_eq!(qz["activations"].as_array().unwrap().len(), 3);
        assert_eq!(qz["layer_sqnr_db"].as_array().unwrap().len(), 3);
        let dtypes: Vec<String> =
            v["tensors"].as_array().unwrap().iter().map(|t| t["dtype"].as_str().unwrap().to_string()).collect();
        assert!(
            dtypes.contains(&"I8".to_string())
                && dtypes.contains(&"I32".to_string())
                && dtypes.contains(&"U8".to_string()),
            "{dtypes:?}"
        );
    }
    // INT8 predictions track the float parent's, and every kernel gives identical integers.
    let test = run.join("features/test.parquet");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (model, kernel) in [("teacher", ""), ("teacher-int8", ""), ("teacher-int8", "scalar")] {
        let out = dir.path().join(format!("{model}-{kernel}.parquet"));
        let o = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
            .args(["predict", "--model", run.join(model).to_str().unwrap(), "--data", test.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--quiet"])
            .env("RECO_KERNEL", if kernel.is_empty() { "auto" } else { kernel })
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        files.push(read_logits(&out));
    }
    assert_eq!(files[1], files[2], "SIMD and scalar INT8 logits differ");
    let max_diff = files[0].iter().zip(&files[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 0.25, "INT8 logits drift from float by {max_diff}");
}

#[test]
fn dynamic_and_per_tensor_8_bit_variants_score_close_to_the_float_parent() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let cal = run.join("features/calibration.parquet");
    let test = run.join("features/test.parquet");
    let teacher = run.join("teacher");
    let float_out = dir.path().join("float.parquet");
    predict(&teacher, &test, &float_out, dir.path());
    let reference = read_logits(&float_out);
    for (name, extra) in
        [("dyn", vec!["--dynamic"]), ("pt8", vec!["--per-tensor", "--weight-bits", "8", "--calibrator", "mse"])]
    {
        let mut args = vec![
            "quantize",
            "--model",
            teacher.to_str().unwrap(),
            "--calibration",
            cal.to_str().unwrap(),
            "--out",
            name,
        ];
        args.extend(extra.iter().copied());
        args.extend(["--max-auc-drop", "1", "--max-ndcg-drop", "1", "--json"]);
        let o = ok(reco(&args, dir.path()));
        let s: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(s["float_layers"], serde_json::json!([]), "{name}: loose gate must keep every layer INT8");
        let m = manifest_json(&dir.path().join(name));
        assert_eq!(m["quantization"]["dynamic_activations"], name == "dyn");
        assert_eq!(m["quantization"]["per_channel"], name != "pt8");
        let out = dir.path().join(format!("{name}.parquet"));
        predict(Path::new(name), &test, &out, dir.path());
        let got = read_logits(&out);
        let max_diff = reference.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_diff < 0.3, "{name}: INT8 logits drift from float by {max_diff}");
        assert!(max_diff > 0.0, "{name}: identical to float, so nothing was quantized");
    }
}

#[test]
fn quantize_refuses_bad_input_and_marks_a_failed_gate() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let cal = run.join("features/calibration.parquet");
    let (cal, test) = (cal.to_str().unwrap(), run.join("features/test.parquet"));
    let teacher = run.join("teacher");
    let int8 = run.join("teacher-int8");
    input_error(
        &reco(&["quantize", "--model", int8.to_str().unwrap(), "--calibration", cal, "--out", "x"], dir.path()),
        &["already INT8"],
    );
    input_error(
        &reco(
            &[
                "quantize",
                "--model",
                teacher.to_str().unwrap(),
                "--calibration",
                cal,
                "--weight-bits",
                "4",
                "--out",
                "x",
            ],
            dir.path(),
        ),
        &["--weight-bits 4"],
    );
    input_error(
        &reco(
            &[
                "quantize",
                "--model",
                teacher.to_str().unwrap(),
                "--calibration",
                "nope.parquet",
                "--data",
                test.to_str().unwrap(),
                "--out",
                "x",
            ],
            dir.path(),
        ),
        &["nope.parquet"],
    );
    assert!(!dir.path().join("x").exists());
    // Zero tolerance: the gate falls back layer by layer; if even all-float layers (row-wise
    // INT8 embeddings remain) move AUC or NDCG, it exits 1 with a written, failed artifact.
    let o = reco(
        &[
            "quantize",
            "--model",
            teacher.to_str().unwrap(),
            "--calibration",
            cal,
            "--max-auc-drop",
            "0",
            "--max-ndcg-drop",
            "0",
            "--out",
            "strict",
            "--json",
        ],
        dir.path(),
    );
    let s: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let m = manifest_json(&dir.path().join("strict"));
    if o.code == 1 {
        assert_eq!(m["status"], "failed");
        assert_eq!(s["float_layers"], serde_json::json!([0, 1, 2]));
    } else {
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!((s["delta_auc"].as_f64(), s["delta_ndcg"].as_f64()), (Some(0.0), Some(0.0)));
        assert_eq!(m["status"], "ok");
    }
}

#[test]
fn keep_float_layers_stay_float_and_are_recorded_and_bad_indices_are_refused() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let cal = run.join("features/calibration.parquet");
    let teacher = run.join("teacher");
    let base = ["quantize", "--model", teacher.to_str().unwrap(), "--calibration", cal.to_str().unwrap()];
    let mut bad = base.to_vec();
    bad.extend(["--keep-float", "0,7", "--out", "bad"]);
    input_error(&reco(&bad, dir.path()), &["--keep-float 7", "dense layers 0 to 2"]);
    assert!(!dir.path().join("bad").exists());
    let mut args = base.to_vec();
    args.extend(["--keep-float", "2,0,2", "--max-auc-drop", "1", "--max-ndcg-drop", "1", "--out", "mixed"]);
    ok(reco(&args, dir.path()));
    let q = &manifest_json(&dir.path().join("mixed"))["quantization"];
    assert_eq!(q["requested_float_layers"], serde_json::json!([0, 2]));
    assert_eq!(q["float_layers"], serde_json::json!([0, 2]), "a gate this loose adds nothing");
    // The kept layers are stored as float tensors; the middle one as int8.
    let o = ok(reco(&["inspect", dir.path().join("mixed").to_str().unwrap(), "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let dtype = |name: &str| {
        v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["dtype"].as_str().unwrap().to_string())
    };
    assert_eq!(dtype("dense.0.weight").as_deref(), Some("F32"), "{}", v["tensors"]);
    assert_eq!(dtype("dense.1.weight_q").as_deref(), Some("I8"), "{}", v["tensors"]);
}
