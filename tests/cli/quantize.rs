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
    // The kept layers are stored as float tensors (fp16 weights, f32 biases); the middle one
    // as int8.
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
    assert_eq!(dtype("dense.0.weight").as_deref(), Some("F16"), "{}", v["tensors"]);
    assert_eq!(dtype("dense.0.bias").as_deref(), Some("F32"), "{}", v["tensors"]);
    assert_eq!(dtype("dense.1.weight_q").as_deref(), Some("I8"), "{}", v["tensors"]);
}

/// A safetensors file's header (tensor name → dtype, shape, offsets) and its data bytes.
fn safetensors_header(path: &Path) -> (serde_json::Value, usize) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&b[8..8 + n]).unwrap(), b.len() - 8 - n)
}

/// `inspect --json`'s size report against bytes worked out here from the layouts: each part,
/// the header (the rest of the file), the deployable total (every file in the folder), and a
/// manifest that holds each vocabulary on one line.
fn inspect_sizes(model: &Path, names: &[String], dims: &[usize], cwd: &Path) {
    let out = ok(reco(&["inspect", model.to_str().unwrap(), "--json"], cwd));
    let size = &serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["size"];
    let parts = size["parts"].as_array().unwrap();
    let u = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    for (p, (name, &dim)) in parts.iter().zip(names.iter().zip(dims)) {
        assert_eq!(p["name"], format!("embedding.{name}"));
        let rows = u(&p["shape"][0]);
        let want = match p["precision"].as_str().unwrap() {
            "f32" => rows * dim * 4,
            "int8" => rows * (dim + 4),
            "int8-table" => rows * dim + 4,
            "int4" => rows * (dim.div_ceil(2) + 4),
            other => panic!("{other}"),
        };
        assert_eq!(u(&p["bytes"]), want, "{name}");
    }
    for p in &parts[names.len()..] {
        let (o, i) = (u(&p["shape"][0]), u(&p["shape"][1]));
        // int8: codes, fp16 scales, i32 biases, the input's scale and zero point; a layer
        // kept in float: fp16 weights (f16) or f32 ones (a float model), f32 biases.
        let want = match p["precision"].as_str().unwrap() {
            "int8" => o * i + 6 * o + 5,
            "f16" => 2 * o * i + 4 * o,
            _ => 4 * (o * i + o),
        };
        assert_eq!(u(&p["bytes"]), want, "{}", p["name"]);
    }
    let file = |n: &str| std::fs::metadata(model.join(n)).unwrap().len() as usize;
    let data: usize = parts.iter().map(|p| u(&p["bytes"])).sum();
    assert_eq!(data + u(&size["weights_header_bytes"]), file("model.safetensors"));
    // Every file but the export (shown apart) and the manifest, which counts as its stage
    // wrote it: byte for byte when nothing was added since, without the export record else.
    let files: usize = std::fs::read_dir(model)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !["model.onnx", "manifest.json"].contains(&e.file_name().to_str().unwrap()))
        .map(|e| e.metadata().unwrap().len() as usize)
        .sum();
    let exported = model.join("model.onnx").exists();
    assert_eq!(u(&size["export_bytes"]), if exported { file("model.onnx") } else { 0 });
    let manifest = u(&size["manifest_bytes"]);
    if exported {
        assert!(manifest < file("manifest.json"), "{manifest}");
    } else {
        assert_eq!(manifest, file("manifest.json"));
    }
    assert_eq!(u(&size["deployable_bytes"]), files + manifest);
    let text = std::fs::read_to_string(model.join("manifest.json")).unwrap();
    let vocab_lines: Vec<&str> = text.lines().filter(|l| l.contains("\"vocabulary\"")).collect();
    assert_eq!(vocab_lines.len(), names.len());
    assert!(vocab_lines.iter().all(|l| l.trim_end().ends_with(']')), "each vocabulary on one line");
    assert!(u(&size["vocabulary_bytes"]) < u(&size["manifest_bytes"]));
}

#[test]
fn embedding_tables_take_the_precision_asked_or_the_one_the_gate_chooses() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let (teacher, cal) = (run.join("teacher"), run.join("features/calibration.parquet"));
    let quantize = |extra: &[&str], out: &str| -> serde_json::Value {
        let mut args = vec!["quantize", "--model", teacher.to_str().unwrap(), "--calibration", cal.to_str().unwrap()];
        args.extend_from_slice(&["--out", out, "--json"]);
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(reco(&args, dir.path())).stdout).unwrap()
    };
    let loose = ["--max-auc-drop", "1", "--max-ndcg-drop", "1"];
    let s8 = quantize(&["--embedding-bits", "8"], "q8");
    let s4 = quantize(&[&["--embedding-bits", "4"][..], &loose].concat(), "q4");
    let auto = quantize(&loose, "auto");
    let mixed = quantize(&[&["--table-bits", "user_id=8"][..], &loose].concat(), "mixed");

    let m = manifest_json(&dir.path().join("q8"));
    let names: Vec<String> = m["feature_spec"]["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().into())
        .collect();
    let dims: Vec<usize> =
        m["architecture"]["embedding_dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let (h8, data8) = safetensors_header(&dir.path().join("q8/model.safetensors"));
    let (h4, data4) = safetensors_header(&dir.path().join("q4/model.safetensors"));
    let mut saved = 0;
    for (name, &dim) in names.iter().zip(&dims) {
        let codes = &h8[format!("embedding.{name}.codes")];
        let rows = codes["shape"][0].as_u64().unwrap() as usize;
        assert_eq!(codes["shape"], serde_json::json!([rows, dim]));
        assert!(h8[format!("embedding.{name}.codes4")].is_null());
        let packed = &h4[format!("embedding.{name}.codes4")];
        assert_eq!(packed["dtype"], "U8");
        assert_eq!(packed["shape"], serde_json::json!([rows, dim.div_ceil(2)]), "two codes a byte");
        assert!(h4[format!("embedding.{name}.codes")].is_null());
        for h in [&h8, &h4] {
            let sb = &h[format!("embedding.{name}.scale_bias")];
            assert_eq!((&sb["dtype"], &sb["shape"]), (&serde_json::json!("F16"), &serde_json::json!([rows, 2])));
        }
        saved += rows * (dim - dim.div_ceil(2));
    }
    assert_eq!(data8 - data4, saved, "only the codes shrink");
    // What each run chose, in the summary and the manifest alike.
    let chosen = |s: &serde_json::Value, out: &str| {
        let m = manifest_json(&dir.path().join(out));
        assert_eq!(s["embedding_precision"], m["quantization"]["embedding_precision"]);
        names.iter().map(|n| s["embedding_precision"][n].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(chosen(&s8, "q8"), vec!["int8"; names.len()]);
    assert_eq!(chosen(&s4, "q4"), vec!["int4"; names.len()]);
    // A loose gate holds with every table at its smallest: int8 codes with one scale pair for
    // the table where rows are narrow (dim bytes a row), else int4 (dim/2 + 4).
    let rows = |n: &str| h8[format!("embedding.{n}.codes")]["shape"][0].as_u64().unwrap() as usize;
    let smallest: Vec<&str> = names
        .iter()
        .zip(&dims)
        .map(|(n, &d)| if rows(n) * d + 4 <= rows(n) * (d.div_ceil(2) + 4) { "int8-table" } else { "int4" })
        .collect();
    assert_eq!(chosen(&auto, "auto"), smallest);
    assert_eq!(auto["embedding_sensitivity"], serde_json::json!([]), "not measured when the smallest holds");
    let (ha, _) = safetensors_header(&dir.path().join("auto/model.safetensors"));
    for (n, l) in names.iter().zip(&smallest) {
        let want = if *l == "int8-table" { serde_json::json!([1, 2]) } else { serde_json::json!([rows(n), 2]) };
        assert_eq!(ha[format!("embedding.{n}.scale_bias")]["shape"], want, "{n}");
    }
    let user = names.iter().position(|n| n == "user_id").unwrap();
    let mixed = chosen(&mixed, "mixed");
    assert_eq!(mixed[user], "int8", "the override");
    assert!(mixed.iter().zip(&smallest).enumerate().all(|(i, (m, s))| i == user || m == s), "{mixed:?}");
    // The size report adds up to the tensor data in the file.
    let sizes: usize = s4["sizes"].as_array().unwrap().iter().map(|t| t["bytes"].as_u64().unwrap() as usize).sum();
    assert_eq!(sizes, data4);
    inspect_sizes(&dir.path().join("mixed"), &names, &dims, dir.path());
    inspect_sizes(&teacher, &names, &dims, dir.path());
    // With a float first layer (no input grid to align the rows to) the 4-bit model scores
    // differently from the 8-bit one (its tables are used), yet close.
    quantize(&["--embedding-bits", "8", "--keep-float", "0"], "f8");
    quantize(&[&["--embedding-bits", "4", "--keep-float", "0"][..], &loose].concat(), "f4");
    let test = run.join("features/test.parquet");
    let logits: Vec<Vec<f32>> = ["f8", "f4"]
        .iter()
        .map(|q| {
            let out = dir.path().join(format!("{q}.parquet"));
            predict(&dir.path().join(q), &test, &out, dir.path());
            read_logits(&out)
        })
        .collect();
    let max_diff = logits[0].iter().zip(&logits[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff > 0.0 && max_diff < 0.5, "{max_diff}");

    let t = teacher.to_str().unwrap();
    let c = cal.to_str().unwrap();
    input_error(
        &reco(&["quantize", "--model", t, "--calibration", c, "--table-bits", "nope=4", "--out", "x"], dir.path()),
        &["embedding_table_bits", "`nope`", "user_id"],
    );
    input_error(
        &reco(
            &["quantize", "--model", t, "--calibration", c, "--table-bits", "user_id=8,user_id=4", "--out", "x"],
            dir.path(),
        ),
        &["--table-bits", "`user_id` given twice"],
    );
    let o = reco(&["quantize", "--model", t, "--calibration", c, "--embedding-bits", "3", "--out", "x"], dir.path());
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("`3`: expected \"auto\", 8 or 4"), "{}", o.stderr);
    assert!(!dir.path().join("x").exists());
}
