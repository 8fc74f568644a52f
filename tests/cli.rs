//! End-to-end tests of the `reco-cli` binary as a user runs it: a tiny pipeline built once and
//! shared, and one test per kind of bad input (exit code 2, one-line error naming the file or
//! column, nothing half-written).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[path = "support/mod.rs"]
mod support;
use support::{PLACES, USERS, copy_dir, interactions};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn reco(args: &[&str], cwd: &Path) -> Out {
    reco_env(args, cwd, &[])
}

/// `reco(args, cwd)` with extra environment variables.
fn reco_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(args)
        .arg("--quiet")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("run reco-cli");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(o: Out) -> Out {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o
}

/// Exit code 2, and exactly one stderr line that contains every `needles` entry.
fn input_error(o: &Out, needles: &[&str]) {
    assert_eq!(o.code, 2, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got: {}", o.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{:?} not in {:?}", n, lines[0]);
    }
}

/// `reco-cli predict` that must succeed.
fn predict(model: &Path, data: &Path, out: &Path, cwd: &Path) {
    ok(reco(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        cwd,
    ));
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny recipe run once: <tmp>/run/{raw,features,teacher,report.json}.
fn pipeline() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let recipe = repo().join("recipes/tiny.toml");
        ok(reco(&["run", recipe.to_str().unwrap(), "--out", "run", "--json"], dir.path()));
        dir
    })
    .path()
}

fn run_dir() -> PathBuf {
    pipeline().join("run")
}

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
fn eval_json_matches_report_and_predict_writes_one_row_per_input_row() {
    let run = run_dir();
    let teacher = run.join("teacher");
    let test = run.join("features/test.parquet");
    let o = ok(reco(&["eval", teacher.to_str().unwrap(), "--data", test.to_str().unwrap(), "--json"], pipeline()));
    let eval: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let report = read_json(&run.join("report.json"));
    assert_eq!(eval["models"][0]["auc"], report["eval"]["models"][0]["auc"]);
    let rows = eval["models"][0]["rows"].as_u64().unwrap() as usize;

    let out = pipeline().join("pred.parquet");
    predict(&teacher, &test, &out, pipeline());
    let file = std::fs::File::open(&out).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    assert!(kv.iter().any(|k| k.key == "reco_cli.model_content_sha256"));
    let mut seen = 0usize;
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let row = batch.column_by_name("row").unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
        let logit =
            batch.column_by_name("logit").unwrap().as_any().downcast_ref::<arrow::array::Float32Array>().unwrap();
        let prob =
            batch.column_by_name("probability").unwrap().as_any().downcast_ref::<arrow::array::Float32Array>().unwrap();
        for i in 0..batch.num_rows() {
            assert_eq!(row.value(i) as usize, seen + i);
            let want = 1.0 / (1.0 + (-logit.value(i)).exp());
            assert!((prob.value(i) - want).abs() < 1e-6);
        }
        seen += batch.num_rows();
    }
    assert_eq!(seen, rows);
}

#[test]
fn same_seed_gives_byte_identical_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    for out in ["a", "b"] {
        ok(reco(&["datasets", "synth", "--out", out, "--users", "30", "--places", "20", "--days", "7"], dir.path()));
    }
    for t in ["users.parquet", "places.parquet", "interactions.parquet"] {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(t)).unwrap(),
            std::fs::read(dir.path().join("b").join(t)).unwrap(),
            "{t}"
        );
    }
}

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
fn distill_rejects_bad_settings_and_inputs_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["teacher", "features", "student"] {
        copy_dir(&run_dir().join(d), &root.join(if d == "student" { "not-a-teacher" } else { d }));
    }
    let cases: [(&[&str], &str); 6] = [
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

/// Writes `batch` to `path` as Parquet (parent folders created).
fn write_parquet_batch(path: &Path, batch: &arrow::array::RecordBatch) {
    write_parquet_groups(path, batch, 1 << 20);
}

/// Writes `batch` to `path` as Parquet with row groups of `group_rows` rows.
fn write_parquet_groups(path: &Path, batch: &arrow::array::RecordBatch, group_rows: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props =
        parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(group_rows)).build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Every row of a Parquet file as one batch.
fn read_batch(path: &Path) -> arrow::array::RecordBatch {
    let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Writes `all` as two hive-partitioned parts, `day=1/a.parquet` (rows before `first`) and
/// `day=2/b.parquet`, with row groups of `group_rows` rows.
fn write_parts(all: &arrow::array::RecordBatch, parts: &Path, first: usize, group_rows: usize) {
    write_parquet_groups(&parts.join("day=1/a.parquet"), &all.slice(0, first), group_rows);
    write_parquet_groups(&parts.join("day=2/b.parquet"), &all.slice(first, all.num_rows() - first), group_rows);
}

/// `all` with column `name` (Float32) replaced by `f` of its values.
fn with_f32_column(
    all: &arrow::array::RecordBatch,
    name: &str,
    f: impl FnOnce(&mut Vec<f32>),
) -> arrow::array::RecordBatch {
    let mut cols = all.columns().to_vec();
    let at = all.schema().index_of(name).unwrap();
    let mut d: Vec<f32> = cols[at].as_any().downcast_ref::<arrow::array::Float32Array>().unwrap().values().to_vec();
    f(&mut d);
    cols[at] = std::sync::Arc::new(arrow::array::Float32Array::from(d));
    arrow::array::RecordBatch::try_new(all.schema(), cols).unwrap()
}

/// The tiny run's teacher, and its test split also written as two parts (the second from row
/// `first`) with row groups of `group_rows`, in a fresh directory.
struct TestParts {
    teacher: PathBuf,
    test: PathBuf,
    all: arrow::array::RecordBatch,
    first: usize,
    parts: PathBuf,
    dir: tempfile::TempDir,
}

fn test_parts(group_rows: usize) -> TestParts {
    let run = run_dir();
    let (teacher, test) = (run.join("teacher"), run.join("features/test.parquet"));
    let dir = tempfile::tempdir().unwrap();
    let all = read_batch(&test);
    let first = all.num_rows() / 3;
    let parts = dir.path().join("parts");
    write_parts(&all, &parts, first, group_rows);
    TestParts { teacher, test, all, first, parts, dir }
}

#[test]
fn predict_streams_a_directory_of_parts_in_order_and_names_a_bad_row_by_its_file_and_row() {
    let TestParts { teacher, test, all, first, parts, dir } = test_parts(1 << 20);
    let (whole, split) = (dir.path().join("whole.parquet"), dir.path().join("split.parquet"));
    predict(&teacher, &test, &whole, dir.path());
    predict(&teacher, &parts, &split, dir.path());
    assert_eq!(read_logits(&split), read_logits(&whole), "parts scored in order, as one file");
    assert_eq!(read_logits(&whole).len(), all.num_rows());
    let rows: Vec<u64> = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&split).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            let r = b.column_by_name("row").unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
            r.values().to_vec()
        })
        .collect();
    assert_eq!(rows, (0..all.num_rows() as u64).collect::<Vec<_>>(), "one row number per input row, across parts");

    // A NaN in row 3 of the second part: the error names that file and row; nothing is written.
    let bad = with_f32_column(&all, "distance_km", |d| d[first + 3] = f32::NAN);
    write_parquet_batch(&parts.join("day=2/b.parquet"), &bad.slice(first, all.num_rows() - first));
    let out = dir.path().join("bad.parquet");
    let args = [
        "predict",
        "--model",
        teacher.to_str().unwrap(),
        "--data",
        parts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = reco(&args, dir.path());
    input_error(&o, &["b.parquet", "distance_km", "row 3", "NaN"]);
    assert!(!out.exists(), "nothing written");
}

#[test]
fn eval_streams_parts_in_row_groups_with_the_whole_file_metrics_and_names_a_bad_label_by_file_and_row() {
    let TestParts { teacher, test, all, first, parts, dir } = test_parts(500);
    let ranking = run_dir().join("features/ranking.parquet");
    let eval = |data: &Path| {
        let args = ["eval", teacher.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"];
        let mut v: serde_json::Value = serde_json::from_str(
            &ok(reco(&[&args[..], &["--ranking", ranking.to_str().unwrap()]].concat(), dir.path())).stdout,
        )
        .unwrap();
        for m in v["models"].as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("us_per_row");
        }
        v
    };
    let (whole, streamed) = (eval(&test), eval(&parts));
    assert_eq!(streamed["models"][0]["rows"], all.num_rows());
    assert!(whole["baselines"].as_array().is_some_and(|b| !b.is_empty()), "{whole}");
    assert_eq!(streamed, whole, "metrics, intervals, calibration and baselines from row groups of parts");

    // A label of 2 in row 700 of the second part (its second row group) is named by file and row.
    let bad = with_f32_column(&all, "label", |y| y[first + 700] = 2.0);
    write_parquet_groups(&parts.join("day=2/b.parquet"), &bad.slice(first, all.num_rows() - first), 500);
    let o = reco(&["eval", teacher.to_str().unwrap(), "--data", parts.to_str().unwrap()], dir.path());
    input_error(&o, &["b.parquet", "`label` row 700", "expected 0 or 1"]);
}

#[test]
fn train_past_max_rows_in_memory_reads_shuffled_row_groups_reproducibly_and_learns_as_well() {
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    let recipe = dir.path().join("chunked.toml");
    let settings = "[train]\nmax_rows_in_memory = 0\nshuffle_buffer_rows = 2000\n";
    std::fs::write(&recipe, tiny.replace("[train]\n", settings)).unwrap();
    let all = read_batch(&run.join("features/train.parquet"));
    for out in ["a", "b"] {
        let features = dir.path().join(out).join("features");
        copy_dir(&run.join("features"), &features);
        std::fs::remove_file(features.join("train.parquet")).unwrap();
        write_parts(&all, &features.join("train.parquet"), all.num_rows() / 3, 700);
        ok(reco(&["train", "--recipe", recipe.to_str().unwrap(), "--out", out], dir.path()));
    }
    let weights = |root: &Path| std::fs::read(root.join("teacher/model.safetensors")).unwrap();
    assert_eq!(weights(&dir.path().join("a")), weights(&dir.path().join("b")), "same seed, same weights");
    assert_ne!(weights(&dir.path().join("a")), weights(&run), "the row-group path ran, not the in-memory one");
    let auc = |root: &Path| read_json(&root.join("teacher/metrics.json"))["valid_auc"].as_f64().unwrap();
    let (chunked, whole) = (auc(&dir.path().join("a")), auc(&run));
    assert!((chunked - whole).abs() < 0.02, "valid AUC {chunked} from row groups against {whole} in memory");

    // A label of 2 in a later row group of the second part shows up only as it is read: exit
    // 2 naming the part and row, and neither a teacher nor an empty checkpoint folder left.
    let features = dir.path().join("c/features");
    copy_dir(&run.join("features"), &features);
    std::fs::remove_file(features.join("train.parquet")).unwrap();
    let first = all.num_rows() / 3;
    let bad = with_f32_column(&all, "label", |y| y[first + 1500] = 2.0);
    write_parts(&bad, &features.join("train.parquet"), first, 700);
    let o = reco(&["train", "--recipe", recipe.to_str().unwrap(), "--out", "c"], dir.path());
    input_error(&o, &["b.parquet", "`label` row 1500", "expected 0 or 1"]);
    assert!(!dir.path().join("c/teacher").exists() && !dir.path().join("c/checkpoints").exists());

    // Read whole (the tiny recipe), a part without a column the other has is named with it.
    let without: Vec<usize> =
        (0..all.num_columns()).filter(|&i| all.schema().field(i).name() != "distance_km").collect();
    write_parquet_batch(
        &features.join("train.parquet/day=2/b.parquet"),
        &all.slice(first, all.num_rows() - first).project(&without).unwrap(),
    );
    let tiny_recipe = repo().join("recipes/tiny.toml");
    let o = reco(&["train", "--recipe", tiny_recipe.to_str().unwrap(), "--out", "c"], dir.path());
    input_error(&o, &["b.parquet", "no column `distance_km`", "a.parquet"]);
}

fn read_logits(path: &Path) -> Vec<f32> {
    let file = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
        let batch = batch.unwrap();
        let l = batch.column_by_name("logit").unwrap().as_any().downcast_ref::<arrow::array::Float32Array>().unwrap();
        out.extend(l.values().iter().copied());
    }
    out
}

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

// ---- bad input -------------------------------------------------------------------------

/// A directory with the three CSV tables (optionally replaced) and a recipe reading them.
fn csv_case(users: &str, places: &str, inter: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("users.csv"), users).unwrap();
    std::fs::write(raw.join("places.csv"), places).unwrap();
    std::fs::write(raw.join("interactions.csv"), inter).unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[prepare]\nnegatives_per_positive = 1\n",
    )
    .unwrap();
    dir
}

fn prepare_case(dir: &Path) -> Out {
    reco(&["prepare", "--recipe", "r.toml", "--out", "out"], dir)
}

fn nothing_written(dir: &Path) {
    let out = dir.join("out");
    if out.exists() {
        let names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }
}

#[test]
fn valid_csv_tables_prepare_with_sampled_negatives() {
    let dir = csv_case(USERS, PLACES, &interactions());
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["sampled_negatives"], true);
    // 28 positives, each with one sampled negative.
    let total: u64 = ["train", "valid", "test"].iter().map(|s| v["rows"][s].as_u64().unwrap()).sum();
    assert_eq!(total, 56);
    assert!(dir.path().join("out/features/feature_spec.json").is_file());
}

#[test]
fn missing_column_names_file_and_column() {
    let dir = csv_case(USERS, &PLACES.replace(",lat,", ",latitude,"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "missing column `lat`"]);
    nothing_written(dir.path());
}

#[test]
fn wrong_column_type_names_column_and_expected_type() {
    let dir = csv_case(USERS, &PLACES.replace("52.51,13.40", "north,13.40"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "column `lat`", "expected a number"]);
    nothing_written(dir.path());
}

#[test]
fn empty_table_is_rejected() {
    let dir = csv_case(USERS, PLACES, "user_id,place_id,timestamp\n");
    input_error(&prepare_case(dir.path()), &["interactions.csv", "empty"]);
    nothing_written(dir.path());
}

#[test]
fn nan_and_infinity_in_numeric_columns_are_rejected() {
    let dir = csv_case(USERS, &PLACES.replace("13.42", "NaN"), &interactions());
    input_error(&prepare_case(dir.path()), &["places.csv", "column `lon` line 3", "finite"]);
    let dir = csv_case(&USERS.replace("52.52", "inf"), PLACES, &interactions());
    input_error(&prepare_case(dir.path()), &["users.csv", "column `home_lat` line 3", "finite"]);
    nothing_written(dir.path());
}

#[test]
fn unknown_references_are_rejected() {
    let dir = csv_case(USERS, PLACES, &interactions().replace("\n2,11,", "\n2,99,"));
    input_error(&prepare_case(dir.path()), &["interactions.csv", "column `place_id` line 3 is 99", "places.csv"]);
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
fn nonexistent_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    input_error(&reco(&["run", "nope.toml"], dir.path()), &["nope.toml"]);
    input_error(&reco(&["eval", "no-model", "--data", "x.parquet"], dir.path()), &["no-model", "no such artifact"]);
    input_error(
        &reco(
            &[
                "predict",
                "--model",
                run_dir().join("teacher").to_str().unwrap(),
                "--data",
                "missing.parquet",
                "--out",
                "p.parquet",
            ],
            dir.path(),
        ),
        &["missing.parquet", "no such file"],
    );
    assert!(!dir.path().join("p.parquet").exists());
}

#[test]
fn truncated_parquet_is_rejected_and_training_leaves_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("out/features");
    copy_dir(&run_dir().join("features"), &features);
    let train = features.join("train.parquet");
    let bytes = std::fs::read(&train).unwrap();
    std::fs::write(&train, &bytes[..bytes.len() / 2]).unwrap();
    let recipe = repo().join("recipes/tiny.toml");
    let o = reco(&["train", "--recipe", recipe.to_str().unwrap(), "--out", "out"], dir.path());
    input_error(&o, &["train.parquet", "not a readable Parquet file"]);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "features" && n != "checkpoints" && n != ".reco-cli.lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn training_refuses_a_feature_spec_with_an_unsorted_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("out/features");
    copy_dir(&run_dir().join("features"), &features);
    let spath = features.join("feature_spec.json");
    let mut spec = read_json(&spath);
    spec["categorical"][0]["vocabulary"].as_array_mut().unwrap().swap(0, 1);
    let column = spec["categorical"][0]["name"].as_str().unwrap().to_string();
    write_json(&spath, &spec);
    let recipe = repo().join("recipes/tiny.toml");
    let o = reco(&["train", "--recipe", recipe.to_str().unwrap(), "--out", "out"], dir.path());
    input_error(&o, &["feature_spec.json", &column, "strictly ascending"]);
    assert!(!dir.path().join("out/teacher").exists());
}

/// Built with `--features wgpu` only (CI does not build it): with every Vulkan and EGL driver
/// hidden, `--backend wgpu` is a one-line input error before anything is written (burn itself
/// panics in its device thread and left a half-made output behind).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_without_a_gpu_adapter_is_a_clean_input_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&run_dir().join("features"), &dir.path().join("out/features"));
    let recipe = repo().join("recipes/tiny.toml");
    let o = reco_env(
        &["train", "--recipe", recipe.to_str().unwrap(), "--out", "out", "--backend", "wgpu"],
        dir.path(),
        &[("VK_ICD_FILENAMES", "/nonexistent/icd.json"), ("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")],
    );
    input_error(&o, &["--backend wgpu", "no usable GPU adapter"]);
    let written: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written, ["features"], "nothing but the copied features");
}

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

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest_json(dir: &Path) -> serde_json::Value {
    read_json(&dir.join("manifest.json"))
}

/// A JSON file (report, manifest, feature spec) as a value.
fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes a value back over a JSON file (tests that corrupt one field).
fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
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

#[test]
fn a_closed_stdout_pipe_ends_the_process_quietly_instead_of_panicking() {
    use std::process::Stdio;
    let teacher = run_dir().join("teacher");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(["inspect", teacher.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child has hashed its files and written anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bench_pairs_int8_with_its_float_parent_and_runs_concurrent_callers() {
    let run = run_dir();
    let (t, q, s) = (run.join("teacher"), run.join("teacher-int8"), run.join("student"));
    let args = |threads: &str, scope: &str| {
        vec![
            "bench".to_string(),
            "--scope".into(),
            scope.into(),
            t.to_str().unwrap().into(),
            q.to_str().unwrap().into(),
            s.to_str().unwrap().into(),
            "--batch-sizes".into(),
            "1,8".into(),
            "--seconds".into(),
            "0.6".into(),
            "--threads".into(),
            threads.into(),
            "--json".into(),
        ]
    };
    // Both scopes: raw columns to logits, and the dense layers alone on prepared MLP inputs.
    for (threads, scope) in [("1", "end-to-end"), ("2", "dense")] {
        let a = args(threads, scope);
        let o = ok(reco(&a.iter().map(String::as_str).collect::<Vec<_>>(), pipeline()));
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["threads"], threads.parse::<u64>().unwrap());
        assert_eq!(v["scope"], scope);
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 6, "3 models × 2 batch sizes: {results:?}");
        for r in results {
            let (model, rps) = (r["model"].as_str().unwrap(), r["rows_per_s"].as_f64().unwrap());
            assert!(rps > 0.0 && (r["us_per_row"].as_f64().unwrap() * rps - 1e6).abs() < 1.0, "{r}");
            // GMAC/s: rows/s × Σ in·out over the dense layers, from the manifest's architecture.
            let m = manifest_json(&run.join(model));
            let arch = &m["architecture"];
            let input: u64 =
                arch["embedding_dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).sum::<u64>()
                    + m["feature_spec"]["numeric"].as_array().unwrap().len() as u64;
            let mut dims = vec![input];
            dims.extend(arch["hidden"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()));
            dims.push(1);
            let macs: u64 = dims.windows(2).map(|w| w[0] * w[1]).sum();
            let gmac = r["gmac_per_s"].as_f64().unwrap();
            assert!((gmac - rps * macs as f64 / 1e9).abs() <= 1e-9 * gmac.max(1.0), "{r} ({macs} MACs/row)");
            // Only INT8 rows get a ratio, over their own float parent at the same batch (the
            // student's lineage parent, the teacher, is in the run too, but both are float).
            if model == "teacher-int8" {
                let parent = results.iter().find(|p| p["model"] == "teacher" && p["batch"] == r["batch"]).unwrap();
                let want = rps / parent["rows_per_s"].as_f64().unwrap();
                assert!((r["speedup_vs_float"].as_f64().unwrap() - want).abs() < 1e-9 * want, "{r}");
            } else {
                assert!(r["speedup_vs_float"].is_null(), "{r}");
            }
        }
    }
    let bad = reco(&["bench", t.to_str().unwrap(), "--batch-sizes", "0"], pipeline());
    input_error(&bad, &["batch-sizes"]);
    let bad = reco(&["bench", t.to_str().unwrap(), "--scope", "layers"], pipeline());
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--scope") && bad.stderr.contains("dense"), "{}", bad.stderr);
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

// --- Real-data shapes: a check-in log (tests/fixtures/checkins), declared schema, bad input ---

/// The check-in fixture copied into a fresh directory (tests may edit it), recipe `r.toml`.
fn checkins_case() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("tests/fixtures/checkins"), dir.path());
    std::fs::rename(dir.path().join("recipe.toml"), dir.path().join("r.toml")).unwrap();
    dir
}

/// The fixture's venues: id -> [category, latitude, longitude].
fn venues_by_id(dir: &Path) -> std::collections::HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(dir.join("venues.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<String> = l.split(',').map(str::to_string).collect();
            (f[0].clone(), f[1..].to_vec())
        })
        .collect()
}

/// Replaces line `n` (0-based, the header is 0) of a file by `f(line)`.
fn edit_line(path: &Path, n: usize, f: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text.lines().enumerate().map(|(i, l)| if i == n { f(l) } else { l.to_string() }).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A numeric column of a Parquet or CSV file as f64 (the feature files are zstd-compressed,
/// which the test's own parquet reader does not build).
fn parquet_f64(path: &Path, column: &str) -> Vec<f64> {
    reco::data::table::Table::file(path).unwrap().floats(column, false).unwrap()
}

#[test]
fn a_checkin_log_prepares_with_string_ids_local_time_and_the_previous_visit_as_context() {
    let dir = checkins_case();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"]["kind"], "implicit");
    assert_eq!(v["context"], "previous_visit");
    assert_eq!(v["sampled_negatives"], true);
    // Each of the 30 users' first check-in has no previous visit: dropped and counted.
    let dropped = v["dropped_no_context"].as_u64().unwrap();
    assert!((30..40).contains(&dropped), "dropped {dropped}");
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let cats: Vec<(&str, &str)> = spec["categorical"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["dtype"].as_str().unwrap()))
        .collect();
    // No users table: no segment. Venue ids and category names stay strings.
    assert_eq!(cats, [("user_id", "int64"), ("place_id", "string"), ("category", "string")]);
    let category = &spec["categorical"][2]["vocabulary"];
    assert!(category.as_array().unwrap().iter().any(|c| c == "Café"), "{category}");
    let numeric: Vec<&str> = spec["numeric"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(numeric.contains(&"distance_km"), "{numeric:?}");
    // No ratings anywhere: no rating features rather than constant ones.
    assert!(!numeric.iter().any(|n| n.contains("rating")), "{numeric:?}");
    let ts = spec["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "timestamp").unwrap();
    assert_eq!((ts["column"].as_str(), ts["dtype"].as_str()), (Some("utc_time"), Some("str")));
    // Local hours (America/New_York, UTC-5 in January-February): every check-in of the fixture
    // is between 06:00 and 23:59 local time; in UTC the evening ones would be 00:00-04:59.
    let train = dir.path().join("out/features/train.parquet");
    let (s, c) = (parquet_f64(&train, "hour_sin"), parquet_f64(&train, "hour_cos"));
    let hours: Vec<f64> = s
        .iter()
        .zip(&c)
        .map(|(s, c)| (s.atan2(*c).rem_euclid(std::f64::consts::TAU)) * 24.0 / std::f64::consts::TAU)
        .collect();
    assert!(
        hours.iter().all(|&h| h > 5.99),
        "a local hour before 06:00: {:?}",
        hours.iter().copied().fold(24.0, f64::min)
    );
    assert!(hours.iter().any(|&h| h >= 19.0), "no evening check-ins");
}

#[test]
fn a_checkin_log_runs_end_to_end_and_is_scored_with_string_ids_beside_the_baselines() {
    let dir = checkins_case();
    let o = ok(reco(&["run", "r.toml", "--out", "out", "--json"], dir.path()));
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let baselines = report["eval"]["baselines"].as_array().unwrap();
    let names: Vec<&str> = baselines.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["popularity", "nearest"]);
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
fn ratings_with_a_threshold_become_labels_and_a_declared_feature_enters_the_spec() {
    let mut inter = String::from("user_id,place_id,timestamp,stars\n");
    for d in 0..14 {
        let t = 1_767_571_200 + d * 86_400;
        inter.push_str(&format!("1,10,{t},5\n1,11,{},2\n2,11,{},4\n2,12,{},1\n", t + 60, t + 3600, t + 3660));
    }
    let dir = csv_case(USERS, PLACES, &inter);
    std::fs::write(
        dir.path().join("r.toml"),
        "name = \"case\"\n[data]\nsource = \"files\"\ndir = \"raw\"\npositive_rating = 4\n\
         [data.interactions]\ncolumns = { rating = \"stars\" }\n\
         [[data.features]]\ntable = \"places\"\ncolumn = \"price_level\"\nname = \"price\"\nkind = \"numeric\"\ntransform = \"log1p\"\n",
    )
    .unwrap();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"], serde_json::json!({"kind": "rating", "threshold": 4.0}));
    assert_eq!(v["sampled_negatives"], false);
    let total: u64 = ["train", "valid", "test"].iter().map(|s| v["rows"][s].as_u64().unwrap()).sum();
    assert_eq!(total, 56, "observed negatives are kept, none sampled");
    let train = dir.path().join("out/features/train.parquet");
    let (label, price) = (parquet_f64(&train, "label"), parquet_f64(&train, "price"));
    assert_eq!(label.iter().filter(|&&y| y == 1.0).count() * 2, label.len(), "half the ratings are >= 4");
    // price_level 2, 3, 1 of places 10, 11, 12, after log1p.
    for p in &price {
        assert!([2f64, 3.0, 1.0].iter().any(|x| (x.ln_1p() - p).abs() < 1e-6), "{p}");
    }
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let src = spec["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "price").unwrap();
    assert_eq!(src["derive"], "log1p");
}

#[test]
fn an_unparseable_timestamp_names_file_column_row_value_and_the_formats() {
    let dir = checkins_case();
    let part = dir.path().join("checkins/month=2026-02/part-0.csv");
    edit_line(&part, 3, |l| format!("{},2026-02-30T25:00:00Z", l.rsplit_once(',').unwrap().0));
    let o = prepare_case(dir.path());
    input_error(&o, &["month=2026-02/part-0.csv", "column `utc_time` line 4", "2026-02-30T25:00:00Z", "ISO-8601"]);
    nothing_written(dir.path());
}

#[test]
fn an_unknown_time_zone_or_a_mapping_to_a_missing_column_is_one_line() {
    let dir = checkins_case();
    edit(&dir.path().join("r.toml"), "America/New_York", "America/Nowhere");
    input_error(&prepare_case(dir.path()), &["America/Nowhere", "IANA"]);
    nothing_written(dir.path());
    let dir = checkins_case();
    edit(&dir.path().join("r.toml"), "place = \"venue_id\", timestamp", "place = \"venue\", timestamp");
    input_error(&prepare_case(dir.path()), &["missing column `venue`", "data.interactions.columns.place", "venue_id"]);
    nothing_written(dir.path());
}

#[test]
fn a_string_column_declared_numeric_or_constant_in_training_is_refused() {
    let dir = checkins_case();
    let feature = "\n[[data.features]]\ntable = \"places\"\ncolumn = \"venue_category_name\"\nkind = \"numeric\"\n";
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, std::fs::read_to_string(&recipe).unwrap() + feature).unwrap();
    input_error(
        &prepare_case(dir.path()),
        &["venues.csv", "column `venue_category_name` line 2 is \"Coffee Shop\"", "expected a number"],
    );
    nothing_written(dir.path());

    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let text = std::fs::read_to_string(&venues).unwrap();
    let with_chain: String =
        text.lines().enumerate().map(|(i, l)| format!("{l},{}\n", if i == 0 { "chain" } else { "7" })).collect();
    std::fs::write(&venues, with_chain).unwrap();
    let feature = "\n[[data.features]]\ntable = \"places\"\ncolumn = \"chain\"\nkind = \"numeric\"\n";
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, std::fs::read_to_string(&recipe).unwrap() + feature).unwrap();
    input_error(&prepare_case(dir.path()), &["data.features \"chain\"", "constant on the training split"]);
    nothing_written(dir.path());
}

#[test]
fn a_latin1_csv_needs_its_encoding_declared() {
    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let latin1: Vec<u8> = std::fs::read_to_string(&venues).unwrap().chars().map(|c| c as u32 as u8).collect();
    std::fs::write(&venues, latin1).unwrap();
    input_error(&prepare_case(dir.path()), &["venues.csv", "line ", "not valid UTF-8", "encoding = \"latin-1\""]);
    nothing_written(dir.path());
    edit(&dir.path().join("r.toml"), "path = \"venues.csv\"", "path = \"venues.csv\"\nencoding = \"latin-1\"");
    ok(prepare_case(dir.path()));
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    assert!(spec["categorical"][2]["vocabulary"].as_array().unwrap().iter().any(|c| c == "Café"));
}

#[test]
fn an_implicit_log_where_every_user_has_one_event_is_refused() {
    let mut inter = String::from("user_id,place_id,timestamp\n");
    for u in 0..20 {
        inter.push_str(&format!("{},{},{}\n", 100 + u, 10 + u % 3, 1_767_571_200 + u * 86_400));
    }
    let users: String = std::iter::once("user_id,segment,home_lat,home_lon\n".to_string())
        .chain((0..20).map(|u| format!("{},1,52.52,13.40\n", 100 + u)))
        .collect();
    let dir = csv_case(&users, PLACES, &inter);
    input_error(&prepare_case(dir.path()), &["interactions.csv", "every user has one event"]);
    nothing_written(dir.path());
}

#[test]
fn interaction_coordinates_that_are_the_venue_itself_are_refused_as_a_leak() {
    // A check-in log that repeats each venue's coordinates on every row, read as the user's
    // own location: distance would be 0 on every visit.
    let dir = checkins_case();
    let venues: std::collections::HashMap<String, String> =
        venues_by_id(dir.path()).into_iter().map(|(id, f)| (id, format!("{},{}", f[1], f[2]))).collect();
    for month in ["2026-01", "2026-02"] {
        let part = dir.path().join(format!("checkins/month={month}/part-0.csv"));
        let text = std::fs::read_to_string(&part).unwrap();
        let rows: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{l},lat,lon\n")
                } else {
                    format!("{l},{}\n", venues[l.split(',').nth(1).unwrap()])
                }
            })
            .collect();
        std::fs::write(&part, rows).unwrap();
    }
    edit(&dir.path().join("r.toml"), "context = \"previous_visit\"", "context = \"auto\"");
    input_error(&prepare_case(dir.path()), &["equal the visited place's coordinates", "previous_visit"]);
    nothing_written(dir.path());
}

#[test]
fn movielens_grouplens_files_import_as_raw_tables_and_a_recipe_labels_them_by_rating() {
    let dir = tempfile::tempdir().unwrap();
    let ml = dir.path().join("ml");
    std::fs::create_dir_all(&ml).unwrap();
    let mut data = String::new();
    for d in 0..20i64 {
        let t = 880_000_000 + d * 86_400;
        data.push_str(&format!("1\t1\t5\t{t}\n1\t2\t2\t{}\n2\t2\t4\t{}\n2\t3\t1\t{}\n", t + 9, t + 60, t + 99));
    }
    std::fs::write(ml.join("u.data"), data).unwrap();
    std::fs::write(ml.join("u.user"), "1|24|M|technician|85711\n2|53|F|other|T8H1N\n").unwrap();
    std::fs::write(ml.join("u.genre"), "unknown|0\nAction|1\nComedy|2\n\n").unwrap();
    // Latin-1 title (0xE9 = é), as GroupLens ships u.item.
    let mut item = b"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Les Mis".to_vec();
    item.extend([0xE9]);
    item.extend(b"rables (1995)|01-Jan-1995||http://x|0|1|1\n3|Heat (1995)|01-Jan-1995||http://x|0|1|0\n");
    std::fs::write(ml.join("u.item"), item).unwrap();
    std::fs::write(ml.join("zipcodes.csv"), "zip_code,latitude,longitude,city\n85711,32.2,-110.9,Tucson\n").unwrap();
    let o =
        ok(reco(&["datasets", "import", "movielens-100k", "--from", "ml", "--out", "tables", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!((v["users"].as_u64(), v["places"].as_u64(), v["interactions"].as_u64()), (Some(2), Some(3), Some(80)));
    // The Canadian zip code has no coordinates: one user with a home.
    assert_eq!((v["users_with_home"].as_u64(), v["layout"].as_str()), (Some(1), Some("grouplens")));
    let places = reco::data::table::Table::file(&dir.path().join("tables/places.parquet")).unwrap();
    let reco::artifact::spec::Ids::Str(titles) = places.ids("title").unwrap() else { panic!("titles") };
    assert_eq!(titles[1], "Les Misérables");
    let reco::artifact::spec::Ids::Str(genre) = places.ids("genre").unwrap() else { panic!("genre") };
    assert_eq!(genre, ["Comedy", "Action", "Action"]);
    std::fs::write(
        dir.path().join("r.toml"),
        "name = \"ml\"\n[data]\nsource = \"files\"\ndir = \"tables\"\npositive_rating = 4\n\
         [data.places]\ncolumns = { place = \"item_id\", category = \"genre\" }\n\
         [data.interactions]\ncolumns = { place = \"item_id\" }\n",
    )
    .unwrap();
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["labels"]["kind"], "rating");
    // Movies have no coordinates: no context, no distance feature.
    assert_eq!(v["context"], serde_json::Value::Null);
    assert!(!v["features"].as_array().unwrap().iter().any(|f| f == "distance_km"));
}

#[test]
fn a_places_section_without_a_path_reads_the_log_itself_and_takes_only_mapped_roles() {
    // One file: every check-in repeats its venue's attributes, and carries a per-visit rating.
    let dir = checkins_case();
    let venues: std::collections::HashMap<String, String> =
        venues_by_id(dir.path()).into_iter().map(|(id, f)| (id, f.join(","))).collect();
    let mut log = String::from("user_id,venue_id,utc_time,venue_category_name,latitude,longitude,rating\n");
    for month in ["2026-01", "2026-02"] {
        let text = std::fs::read_to_string(dir.path().join(format!("checkins/month={month}/part-0.csv"))).unwrap();
        for (i, l) in text.lines().skip(1).enumerate() {
            log.push_str(&format!("{l},{},{}\n", venues[l.split(',').nth(1).unwrap()], 1 + i % 5));
        }
    }
    std::fs::write(dir.path().join("log.csv"), log).unwrap();
    let recipe = dir.path().join("r.toml");
    edit(&recipe, "path = \"checkins\"", "path = \"log.csv\"");
    edit(&recipe, "path = \"venues.csv\"\n", "");
    let o = ok(reco(&["prepare", "--recipe", "r.toml", "--out", "out", "--json"], dir.path()));
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let features: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(features.contains(&"category") && features.contains(&"distance_km"), "{features:?}");
    // The log's per-visit rating is the interactions' (trailing window), never a place attribute.
    assert!(features.contains(&"place_rating_w") && !features.contains(&"place_rating"), "{features:?}");
    edit(&recipe, "lon = \"longitude\" }", "lon = \"longitude\", rating = \"rating\" }");
    input_error(&prepare_case(dir.path()), &["data.places.columns.rating", "each row's rating is that visit's"]);
}

#[test]
fn partitions_that_disagree_on_a_column_or_shadow_one_are_refused() {
    let dir = checkins_case();
    // February's user ids become text (a letter): one id column with two types.
    let feb = dir.path().join("checkins/month=2026-02/part-0.csv");
    edit_line(&feb, 1, |l| format!("u{l}"));
    input_error(
        &prepare_case(dir.path()),
        &["month=2026-02/part-0.csv", "column `user_id` reads as str here", "month=2026-01"],
    );
    nothing_written(dir.path());
    // A partition key that is also a column of the files.
    let dir = checkins_case();
    let jan = dir.path().join("checkins/month=2026-01");
    std::fs::rename(&jan, dir.path().join("checkins/user_id=1")).unwrap();
    input_error(&prepare_case(dir.path()), &["has a column `user_id`", "`user_id=1` folder"]);
    nothing_written(dir.path());
}

#[test]
fn millisecond_timestamps_read_as_seconds_are_refused_with_the_unit_named() {
    let mut inter = String::from("user_id,place_id,timestamp\n");
    for d in 0..14i64 {
        let t = (1_767_571_200 + d * 86_400) * 1000;
        inter.push_str(&format!("1,10,{t}\n2,11,{}\n", t + 3_600_000));
    }
    let dir = csv_case(USERS, PLACES, &inter);
    input_error(&prepare_case(dir.path()), &["column `timestamp` line 2", "outside 1900-2200", "timestamp_unit"]);
    nothing_written(dir.path());
    let recipe = dir.path().join("r.toml");
    edit(&recipe, "dir = \"raw\"\n", "dir = \"raw\"\ntimestamp_unit = \"ms\"\n");
    ok(prepare_case(dir.path()));
}

#[test]
fn a_byte_order_mark_and_missing_categories_are_read_as_a_spreadsheet_user_expects() {
    let dir = checkins_case();
    let venues = dir.path().join("venues.csv");
    let text = std::fs::read_to_string(&venues).unwrap();
    // Excel's UTF-8 export starts with a BOM; one venue has no category.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let parts: Vec<&str> = lines[1].split(',').collect();
    lines[1] = format!("{},,{},{}", parts[0], parts[2], parts[3]);
    std::fs::write(&venues, format!("\u{feff}{}\n", lines.join("\n"))).unwrap();
    ok(prepare_case(dir.path()));
    let spec = read_json(&dir.path().join("out/features/feature_spec.json"));
    let category = spec["categorical"][2]["vocabulary"].as_array().unwrap();
    // The missing category is a category of its own: the empty string, first in byte order.
    assert_eq!(category[0], "", "{category:?}");
}

#[test]
fn training_that_diverges_is_refused_instead_of_shipping_a_nan_model() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    std::fs::write(dir.path().join("r.toml"), recipe.replace("[train]\n", "[train]\nlearning_rate = 1e30\n")).unwrap();
    let o = reco(&["run", "r.toml", "--out", "out"], dir.path());
    input_error(&o, &["training diverged in epoch 1", "learning_rate"]);
    assert!(!dir.path().join("out/teacher").exists(), "a teacher artifact was written");
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
    let o = reco(&["run", "r.toml", "--out", "out", "--json"], dir.path());
    assert_eq!(o.code, 1, "{}", o.stderr);
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
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
fn an_output_onto_an_input_or_into_an_artifact_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&run_dir().join("teacher"), &dir.path().join("teacher"));
    copy_dir(&run_dir().join("features"), &dir.path().join("features"));
    let before = std::fs::read(dir.path().join("teacher/model.safetensors")).unwrap();
    let manifest = std::fs::read(dir.path().join("teacher/manifest.json")).unwrap();
    let cases: [&[&str]; 5] = [
        &["export", "--model", "teacher", "--out", "teacher/model.safetensors"],
        &["export", "--model", "teacher", "--out", "teacher/manifest.json"],
        &["quantize", "--model", "teacher", "--calibration", "features/calibration.parquet", "--out", "teacher"],
        &["predict", "--model", "teacher", "--data", "features/test.parquet", "--out", "features/test.parquet"],
        &["distill", "--teacher", "teacher", "--out", "teacher"],
    ];
    for args in cases {
        let o = reco(args, dir.path());
        input_error(&o, &["--out", "nothing written"]);
        assert_eq!(std::fs::read(dir.path().join("teacher/model.safetensors")).unwrap(), before, "{args:?}");
        assert_eq!(std::fs::read(dir.path().join("teacher/manifest.json")).unwrap(), manifest, "{args:?}");
    }
    // distill --teacher X --out Y writes under Y, not beside X.
    ok(reco(&["distill", "--teacher", "teacher", "--out", "elsewhere", "--epochs", "1", "--no-scratch"], dir.path()));
    assert!(dir.path().join("elsewhere/student/manifest.json").is_file());
    assert!(!dir.path().join("student").exists());
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
    let lock = reco::pipeline::paths::OutputLock::acquire(&out).unwrap();
    let o = reco(&["run", recipe.to_str().unwrap(), "--out", "out"], dir.path());
    input_error(&o, &["another reco-cli process is writing there", ".reco-cli.lock"]);
    assert!(!out.join("teacher").exists() && !out.join("raw").exists());
    drop(lock);
    ok(reco(&["run", recipe.to_str().unwrap(), "--out", "out"], dir.path()));
}

#[test]
fn an_ambiguous_table_and_runaway_bench_settings_are_refused() {
    let dir = csv_case(USERS, PLACES, &interactions());
    std::fs::copy(run_dir().join("raw/interactions.parquet"), dir.path().join("raw/interactions.parquet")).unwrap();
    input_error(&prepare_case(dir.path()), &["both interactions.parquet and interactions.csv"]);
    nothing_written(dir.path());
    let teacher = run_dir().join("teacher");
    let t = teacher.to_str().unwrap();
    input_error(&reco(&["bench", t, "--threads", "1000000"], dir.path()), &["--threads 1000000"]);
    input_error(&reco(&["bench", t, "--batch-sizes", "1,100000000"], dir.path()), &["--batch-sizes 100000000"]);
    input_error(&reco(&["bench", t, "--seconds", "1e9"], dir.path()), &["--seconds"]);
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
fn an_unknown_or_unsupported_reco_kernel_is_an_input_error_not_a_silent_fallback() {
    let run = run_dir();
    let (model, data) = (run.join("teacher-int8"), run.join("features/test.parquet"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    let args = ["predict", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let args: Vec<&str> = args.iter().copied().chain(["--out", out.to_str().unwrap()]).collect();
    input_error(&reco_env(&args, dir.path(), &[("RECO_KERNEL", "avx3")]), &["RECO_KERNEL", "avx3", "expected auto"]);
    assert!(!out.exists());
    // A kernel this CPU lacks is refused too (every x86-64 CPU here has scalar; VNNI maybe not).
    let vnni = reco_env(&args, dir.path(), &[("RECO_KERNEL", "vnni")]);
    if vnni.code != 0 {
        input_error(&vnni, &["RECO_KERNEL=vnni", "does not support"]);
    }
    ok(reco_env(&args, dir.path(), &[("RECO_KERNEL", "scalar")]));
}

#[test]
fn a_model_loads_from_bytes_as_from_its_directory_and_scores_the_same_on_any_thread_count() {
    use reco::runtime::Model;
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

/// `b` with only the columns `keep`.
fn project(b: &arrow::array::RecordBatch, keep: &[&str]) -> arrow::array::RecordBatch {
    let idx: Vec<usize> = keep.iter().map(|c| b.schema().index_of(c).unwrap()).collect();
    b.project(&idx).unwrap()
}

/// The tiny run's synthetic tables in a fresh directory: the interactions (columns `inter`)
/// as three Parquet parts in `inter/` with row groups of 700 rows, `places.parquet`
/// (columns `places`) and, with `users`, `users.parquet`. Two recipes prepare them: `mem.toml`
/// as usual and `stream.toml` with `max_rows_in_memory = 0`; `extra` is `[data]` and
/// `[prepare]` settings.
fn streamed_case(inter: &[&str], places: &[&str], users: bool, extra: [&str; 2]) -> tempfile::TempDir {
    let [data_extra, extra] = extra;
    let raw = run_dir().join("raw");
    let dir = tempfile::tempdir().unwrap();
    let all = project(&read_batch(&raw.join("interactions.parquet")), inter);
    let third = all.num_rows() / 3;
    for (k, (start, n)) in [(0, third), (third, third), (2 * third, all.num_rows() - 2 * third)].into_iter().enumerate()
    {
        write_parquet_groups(&dir.path().join(format!("inter/part-{k}.parquet")), &all.slice(start, n), 700);
    }
    write_parquet_batch(&dir.path().join("places.parquet"), &project(&read_batch(&raw.join("places.parquet")), places));
    let mut data = format!(
        "[data]\nsource = \"files\"\n{data_extra}\n[data.interactions]\npath = \"inter\"\n[data.places]\npath = \"places.parquet\"\n"
    );
    if users {
        std::fs::copy(raw.join("users.parquet"), dir.path().join("users.parquet")).unwrap();
        data.push_str("[data.users]\npath = \"users.parquet\"\n");
    }
    let prepare =
        format!("[prepare]\ncalibration_rows = 300\nranking_queries = 200\nranking_candidates = 19\n{extra}\n");
    for (name, more) in [("mem", ""), ("stream", "max_rows_in_memory = 0\n")] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!("name = \"s\"\nseed = 7\n{data}{prepare}{more}"),
        )
        .unwrap();
    }
    dir
}

/// Prepares `case` both ways; every file of the two feature directories is equal byte for
/// byte. Returns the streamed run's stderr and `prepare.json`.
fn prepare_both_ways(case: &Path) -> (String, serde_json::Value) {
    ok(reco(&["prepare", "--recipe", "mem.toml", "--out", "mem"], case));
    // Not quiet: the streamed path says so on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_reco-cli"))
        .args(["prepare", "--recipe", "stream.toml", "--out", "stream"])
        .current_dir(case)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (mem, stream) = (case.join("mem/features"), case.join("stream/features"));
    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&mem), names(&stream));
    for n in names(&mem) {
        assert!(std::fs::read(mem.join(&n)).unwrap() == std::fs::read(stream.join(&n)).unwrap(), "{n} differs");
    }
    (stderr, read_json(&stream.join("prepare.json")))
}

#[test]
fn a_streamed_prepare_writes_the_same_bytes_as_the_in_memory_one_for_labelled_implicit_and_popularity_data() {
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    // Labelled, the interaction's own location as context, the true probability carried.
    let case = streamed_case(&all, &places, true, ["", ""]);
    let (stderr, record) = prepare_both_ways(case.path());
    assert!(stderr.contains("streaming them through disk in") && stderr.contains("buckets"), "{stderr}");
    let buckets: usize = stderr.split(" buckets").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(buckets > 1, "{stderr}");
    assert_eq!(record["summary"]["labels"]["kind"], "column");
    assert_eq!(record["summary"]["context"], "interaction");

    // A part written with narrower types (int32 ids, float32 coordinates): read as the stacked
    // table has them, so even the recorded source types are the same.
    let part = case.path().join("inter/part-0.parquet");
    let b = read_batch(&part);
    let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols = b.columns().to_vec();
    for (name, to) in [("user_id", arrow::datatypes::DataType::Int32), ("lat", arrow::datatypes::DataType::Float32)] {
        let at = b.schema().index_of(name).unwrap();
        cols[at] = arrow::compute::cast(&cols[at], &to).unwrap();
        fields[at] = arrow::datatypes::Field::new(name, to, true);
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    for d in ["mem", "stream"] {
        std::fs::remove_dir_all(case.path().join(d)).unwrap();
    }
    prepare_both_ways(case.path());

    // Visits only: negatives drawn within the radius, visits outside it dropped.
    let visits = ["user_id", "place_id", "timestamp", "lat", "lon", "rating"];
    let case = streamed_case(&visits, &places, true, ["", "radius_km = 1.0"]);
    // The synthetic log holds non-visits too; as a visits-only log they are visits.
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["labels"]["kind"], "implicit");
    assert!(record["summary"]["dropped_outside_radius"].as_u64().unwrap() > 0, "{record}");

    // No coordinates anywhere and no users table: popularity negatives, ids from the log.
    let case = streamed_case(&["user_id", "place_id", "timestamp"], &["place_id", "category"], false, ["", ""]);
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["context"], serde_json::Value::Null);
    assert_eq!(record["summary"]["labels"]["kind"], "implicit");

    // A check-in log's shape: visits only, no user location; the previous visit's place as
    // context, found across parts (each user's visits are spread over all three).
    let checkins = ["user_id", "place_id", "timestamp"];
    let case = streamed_case(&checkins, &places, false, ["context = \"previous_visit\"", ""]);
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["context"], "previous_visit");
    assert!(record["summary"]["dropped_no_context"].as_u64().unwrap() > 0, "{record}");

    // One check-in file that repeats its venue's attributes on every row, no places file: the
    // places are the first row of each venue, gathered across parts.
    let case = streamed_case(&checkins, &places, false, ["context = \"previous_visit\"", ""]);
    with_venue_columns(case.path());
    let (_, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["input_sha256"]["places"], record["summary"]["input_sha256"]["interactions"]);
    assert!(record["summary"]["features"].as_array().unwrap().iter().any(|f| f == "category"), "{record}");
    // Two roles on one column (the venue id as its category too): refused by the recipe check,
    // before any table is read, on both paths.
    for r in ["mem.toml", "stream.toml"] {
        edit(&case.path().join(r), "category = \"venue_category\"", "category = \"place_id\"");
        let o = reco(&["prepare", "--recipe", r, "--out", "again"], case.path());
        input_error(&o, &["data.places.columns", "`place` and `category`", "`place_id`"]);
    }
}

/// Adds each row's venue coordinates and category (`venue_lat`, `venue_lon`,
/// `venue_category`, from `places.parquet`) to every part of `case`, and has both recipes read
/// the places from the parts instead.
fn with_venue_columns(case: &Path) {
    use arrow::array::{Array, Float64Array, Int64Array};
    let places = read_batch(&case.join("places.parquet"));
    let col = |b: &arrow::array::RecordBatch, n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
    let ids = col(&places, "place_id");
    let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
    let (lat, lon, cat) = (col(&places, "lat"), col(&places, "lon"), col(&places, "category"));
    let f64s = |a: &std::sync::Arc<dyn Array>| a.as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec();
    let (lat, lon) = (f64s(&lat), f64s(&lon));
    let cat = cat.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
    let at: std::collections::HashMap<i64, usize> = ids.values().iter().enumerate().map(|(i, &id)| (id, i)).collect();
    for k in 0..3 {
        let part = case.join(format!("inter/part-{k}.parquet"));
        let b = read_batch(&part);
        let rows: Vec<usize> =
            col(&b, "place_id").as_any().downcast_ref::<Int64Array>().unwrap().values().iter().map(|p| at[p]).collect();
        let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols = b.columns().to_vec();
        for (name, values) in [("venue_lat", &lat), ("venue_lon", &lon)] {
            fields.push(arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Float64, false));
            cols.push(std::sync::Arc::new(Float64Array::from(rows.iter().map(|&r| values[r]).collect::<Vec<_>>())));
        }
        fields.push(arrow::datatypes::Field::new("venue_category", arrow::datatypes::DataType::Int64, false));
        cols.push(std::sync::Arc::new(Int64Array::from(rows.iter().map(|&r| cat[r]).collect::<Vec<_>>())));
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    }
    for r in ["mem.toml", "stream.toml"] {
        edit(
            &case.join(r),
            "[data.places]\npath = \"places.parquet\"\n",
            "[data.places]\ncolumns = { place = \"place_id\", lat = \"venue_lat\", lon = \"venue_lon\", category = \"venue_category\" }\n",
        );
    }
    std::fs::remove_file(case.join("places.parquet")).unwrap();
}

#[test]
fn a_streamed_prepare_names_a_bad_row_by_its_part_and_row_and_writes_nothing() {
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    let case = streamed_case(&all, &places, true, ["", ""]);
    let part = case.path().join("inter/part-2.parquet");
    let b = read_batch(&part);
    let mut cols = b.columns().to_vec();
    let at = b.schema().index_of("oracle_p").unwrap();
    let mut v = cols[at].as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().values().to_vec();
    v[1000] = 1.5;
    cols[at] = std::sync::Arc::new(arrow::array::Float64Array::from(v));
    write_parquet_groups(&part, &arrow::array::RecordBatch::try_new(b.schema(), cols).unwrap(), 700);
    let o = reco(&["prepare", "--recipe", "stream.toml", "--out", "stream"], case.path());
    input_error(&o, &["part-2.parquet", "row 1000", "oracle_p", "1.5", "expected a probability"]);
    // A part without a column the others have: the in-memory path's message, before any row.
    let b = read_batch(&case.path().join("inter/part-0.parquet"));
    write_parquet_groups(
        &part,
        &project(&b, &["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating"]),
        700,
    );
    let mem = reco(&["prepare", "--recipe", "mem.toml", "--out", "mem"], case.path());
    let o = reco(&["prepare", "--recipe", "stream.toml", "--out", "stream"], case.path());
    input_error(&o, &["part-2.parquet", "no column `oracle_p`", "part-0.parquet has"]);
    assert_eq!(o.stderr, mem.stderr);
    assert!(
        !case.path().join("stream").exists() || std::fs::read_dir(case.path().join("stream")).unwrap().next().is_none()
    );
}

/// Issue 25: the raw tables of `case` with each column's type chosen by `to` (name, type in
/// the baseline) -> the type to write, `None` to keep; every part keeps its row groups.
fn retype(case: &Path, to: impl Fn(&str, &arrow::datatypes::DataType) -> Option<arrow::datatypes::DataType>) -> usize {
    let mut files: Vec<PathBuf> = (0..3).map(|k| case.join(format!("inter/part-{k}.parquet"))).collect();
    files.extend([case.join("places.parquet"), case.join("users.parquet")]);
    let mut changed = 0;
    for path in files {
        let b = read_batch(&path);
        let mut fields: Vec<arrow::datatypes::Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols = b.columns().to_vec();
        for (i, f) in b.schema().fields().iter().enumerate() {
            if let Some(t) = to(f.name(), f.data_type()) {
                cols[i] = arrow::compute::cast(&cols[i], &t).unwrap();
                fields[i] = arrow::datatypes::Field::new(f.name(), t, true);
                changed += 1;
            }
        }
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        write_parquet_groups(&path, &arrow::array::RecordBatch::try_new(schema, cols).unwrap(), 700);
    }
    changed
}

/// Issue 25: the smallest and largest value of an integer column over the case's tables.
fn int_range(case: &Path, column: &str) -> Option<(i64, i64)> {
    let mut files: Vec<PathBuf> = (0..3).map(|k| case.join(format!("inter/part-{k}.parquet"))).collect();
    files.extend([case.join("places.parquet"), case.join("users.parquet")]);
    let mut out: Option<(i64, i64)> = None;
    for path in files {
        let b = read_batch(&path);
        let Ok(i) = b.schema().index_of(column) else { continue };
        let c = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64).unwrap();
        let c = c.as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let (lo, hi) = (arrow::compute::min(c).unwrap(), arrow::compute::max(c).unwrap());
        out = Some(out.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    out
}

#[test]
fn every_integer_width_and_float16_prepare_to_the_features_of_int64_and_float64_whole_and_streamed() {
    use arrow::datatypes::DataType as T;
    let all = ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"];
    let places = ["place_id", "lat", "lon", "category", "price_level", "rating"];
    let case = streamed_case(&all, &places, true, ["", ""]);
    // The baseline holds only values float16 (ratings, the oracle, homes, price levels) or
    // float32 (coordinates) hold exactly, as float64: every variant holds the same values.
    let half = |n: &str| ["rating", "oracle_p", "home_lat", "home_lon", "price_level"].contains(&n);
    let floats = |n: &str, t: &T| match t {
        T::Float64 | T::Float32 if half(n) => Some(T::Float16),
        T::Float64 => Some(T::Float32),
        _ => None,
    };
    retype(case.path(), |n, t| floats(n, t));
    retype(case.path(), |_, t| matches!(t, T::Float16 | T::Float32).then_some(T::Float64));
    prepare_both_ways(case.path());
    let base = case.path().join("base");
    std::fs::rename(case.path().join("mem/features"), &base).unwrap();
    let baseline: Vec<(PathBuf, Vec<u8>)> = (0..3)
        .map(|k| format!("inter/part-{k}.parquet"))
        .chain(["places.parquet".into(), "users.parquet".into()])
        .map(|f| (case.path().join(&f), std::fs::read(case.path().join(&f)).unwrap()))
        .collect();
    let fits = |t: &T, (lo, hi): (i64, i64)| {
        let (min, max): (i64, i64) = match t {
            T::Int8 => (i8::MIN.into(), i8::MAX.into()),
            T::Int16 => (i16::MIN.into(), i16::MAX.into()),
            T::Int32 => (i32::MIN.into(), i32::MAX.into()),
            T::UInt8 => (0, u8::MAX.into()),
            T::UInt16 => (0, u16::MAX.into()),
            T::UInt32 => (0, u32::MAX.into()),
            _ => (0, i64::MAX),
        };
        min <= lo && hi <= max
    };
    let widths = [T::Int8, T::Int16, T::Int32, T::UInt8, T::UInt16, T::UInt32, T::UInt64, T::Float16];
    let names = ["i8", "i16", "i32", "u8", "u16", "u32", "u64", "f16"];
    for (width, name) in widths.iter().zip(names) {
        for (path, bytes) in &baseline {
            std::fs::write(path, bytes).unwrap();
        }
        for d in ["mem", "stream"] {
            std::fs::remove_dir_all(case.path().join(d)).unwrap();
        }
        let ranges: std::collections::HashMap<String, (i64, i64)> =
            ["user_id", "place_id", "timestamp", "label", "category", "segment", "price_level"]
                .iter()
                .filter_map(|c| Some((c.to_string(), int_range(case.path(), c)?)))
                .collect();
        let changed = retype(case.path(), |n, t| match (width, t) {
            (T::Float16, t) => floats(n, t),
            (w, T::Int64) if ranges.get(n).is_some_and(|r| fits(w, *r)) => Some(w.clone()),
            _ => None,
        });
        assert!(changed >= 5, "{name}: {changed} columns narrowed");
        prepare_both_ways(case.path());
        let features = case.path().join("mem/features");
        for f in ["train", "valid", "test", "ranking", "calibration", "places"] {
            let f = format!("{f}.parquet");
            assert!(std::fs::read(base.join(&f)).unwrap() == std::fs::read(features.join(&f)).unwrap(), "{name}: {f}");
        }
        let (mut a, mut b) =
            (read_json(&base.join("feature_spec.json")), read_json(&features.join("feature_spec.json")));
        let place = b["sources"].as_array().unwrap().iter().find(|s| s["feature"] == "place" && s["table"] == "places");
        let want = if name == "f16" { "i64" } else { name };
        assert_eq!(place.unwrap()["dtype"], want, "{name}: {}", b["sources"]);
        a["sources"] = serde_json::Value::Null;
        b["sources"] = serde_json::Value::Null;
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn prepare_says_on_stderr_when_it_drops_more_than_one_percent_of_the_interactions() {
    // Each user's first check-in has no previous visit: dropped (counted in prepare.json).
    let dir = checkins_case();
    let run = |quiet: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_reco-cli"));
        c.args(["prepare", "--recipe", "r.toml", "--out", if quiet { "q" } else { "out" }]).current_dir(dir.path());
        if quiet {
            c.arg("--quiet");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let stderr = run(false);
    let record = read_json(&dir.path().join("out/features/prepare.json"));
    let n = record["summary"]["dropped_no_context"].as_u64().unwrap();
    let line = stderr.lines().find(|l| l.contains("dropped")).unwrap_or_else(|| panic!("no drop line in {stderr:?}"));
    assert!(
        line.contains("checkins") && line.contains(&format!("{n} (")) && line.contains("dropped_no_context"),
        "{line}"
    );
    assert!(line.contains("interactions (") && line.contains(" %)"), "{line}");
    assert!(!run(true).contains("dropped"));
    // Below 1 %: no line (the synthetic log with its own coordinates drops nothing).
    let case = streamed_case(
        &["user_id", "place_id", "timestamp", "lat", "lon", "label"],
        &["place_id", "lat", "lon"],
        true,
        ["", ""],
    );
    let (stderr, record) = prepare_both_ways(case.path());
    assert_eq!(record["summary"]["dropped_no_context"], 0);
    assert!(!stderr.contains("dropped"), "{stderr}");
}

#[test]
fn header_only_parts_and_cr_line_endings_read_as_the_rows_they_hold() {
    let dir = checkins_case();
    ok(prepare_case(dir.path()));
    // One part with carriage returns only (classic Mac OS line endings), one more month
    // folder with a header and no rows.
    let jan = dir.path().join("checkins/month=2026-01/part-0.csv");
    let text = std::fs::read_to_string(&jan).unwrap();
    std::fs::write(&jan, text.replace('\n', "\r")).unwrap();
    let header = text.lines().next().unwrap().to_string();
    std::fs::create_dir_all(dir.path().join("checkins/month=2026-03")).unwrap();
    std::fs::write(dir.path().join("checkins/month=2026-03/part-0.csv"), format!("{header}\n")).unwrap();
    ok(reco(&["prepare", "--recipe", "r.toml", "--out", "again"], dir.path()));
    for f in ["train", "valid", "test", "ranking", "calibration", "places"] {
        let f = format!("features/{f}.parquet");
        let (a, b) = (dir.path().join("out").join(&f), dir.path().join("again").join(&f));
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{f} differs");
    }
}
