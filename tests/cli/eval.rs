//! `reco-cli eval`: the JSON matches the run's report (and `predict` writes one row per input row);
//! parts read in row groups give the whole file's metrics, a bad label is named by file and row.

use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::{
    TestParts, input_error, ok, pipeline, predict, read_json, reco, run_dir, test_parts, with_f32_column,
    write_parquet_groups,
};

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
