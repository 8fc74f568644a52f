//! Paths and settings refused the same way across subcommands (`run`, `eval`, `predict`,
//! `export`, `quantize`, `distill`, `prepare`, `bench`): missing inputs named, an output onto an input
//! or into an artifact, an ambiguous table, runaway bench settings.

use crate::support::{
    PLACES, USERS, copy_dir, csv_case, input_error, interactions, nothing_written, ok, prepare_case, reco, run_dir,
};

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
