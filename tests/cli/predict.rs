//! `reco-cli predict`: a directory of parts scored in order, a bad row named by file and row;
//! `RECO_KERNEL` values it cannot honour refused.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::{
    TestParts, input_error, ok, predict, read_logits, reco, reco_env, run_dir, test_parts, with_f32_column,
    write_parquet_batch,
};

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
