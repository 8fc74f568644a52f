//! `reco-cli train` (and the train stage of `run`): row groups past `max_rows_in_memory`, a
//! truncated Parquet file, an unsorted vocabulary, `--backend wgpu` without a GPU, divergence,
//! the same weights at any thread count.

use std::path::Path;

#[cfg(feature = "wgpu")]
use crate::support::reco_env;
use crate::support::{
    copy_dir, input_error, ok, read_batch, read_json, reco, repo, run_dir, with_f32_column, write_json,
    write_parquet_batch, write_parts,
};

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

#[test]
fn the_trained_weights_do_not_depend_on_the_thread_count() {
    // Each batch's halves run on two workers when there are two: the weights must be the
    // bytes the shared run trained with every core, on one thread and on three.
    let run = run_dir();
    let dir = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/tiny.toml");
    let weights = |root: &Path| std::fs::read(root.join("teacher/model.safetensors")).unwrap();
    for threads in ["1", "3"] {
        copy_dir(&run.join("features"), &dir.path().join(threads).join("features"));
        let args = ["train", "--recipe", recipe.to_str().unwrap(), "--out", threads, "--threads", threads];
        ok(reco(&args, dir.path()));
        assert!(weights(&dir.path().join(threads)) == weights(&run), "--threads {threads} trained other weights");
    }
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
fn training_that_diverges_is_refused_instead_of_shipping_a_nan_model() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = std::fs::read_to_string(repo().join("recipes/tiny.toml")).unwrap();
    std::fs::write(dir.path().join("r.toml"), recipe.replace("[train]\n", "[train]\nlearning_rate = 1e30\n")).unwrap();
    let o = reco(&["run", "r.toml", "--out", "out"], dir.path());
    input_error(&o, &["training diverged in epoch 1", "learning_rate"]);
    assert!(!dir.path().join("out/teacher").exists(), "a teacher artifact was written");
}
