//! Same recipe, data and seed -> the same bytes in every file a run writes, whether it runs
//! again in place or into another `--out` from another working directory; only
//! the files that hold timings differ (`timings.json`, the reports, the stage records).

use super::common::{changed, ok, read_json, reco, repo, tiny_run, without_timings};

/// Every string in a JSON value.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn two_runs_of_one_recipe_write_identical_bytes_except_timings() {
    let first = tiny_run();
    let other = tempfile::tempdir().unwrap();
    let cwd = other.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let recipe = repo().join("recipes/tiny.toml");
    ok(reco(&["run", recipe.to_str().unwrap(), "--out", "../second"], &cwd));
    let second = other.path().join("second");
    let (a, b) = (without_timings(first), without_timings(&second));
    assert!(a.len() > 30, "only {} entries", a.len());
    assert_eq!(changed(&a, &b), Vec::<String>::new(), "files that differ between two identical runs");
    // Again in place, recomputing (not reusing) every stage.
    ok(reco(&["run", recipe.to_str().unwrap(), "--out", "../second", "--force"], &cwd));
    assert_eq!(changed(&a, &without_timings(&second)), Vec::<String>::new(), "a rerun in place changed files");

    // The timings exist, in their own file, and nowhere else.
    let timings = read_json(&second.join("timings.json"));
    for key in
        ["/seconds", "/stages/train/seconds", "/stages/train/detail/rows_per_s", "/eval/models/teacher/us_per_row"]
    {
        assert!(timings[key].as_f64().is_some_and(|s| s > 0.0), "{key} in {timings}");
    }
    for file in ["report.json", "teacher/manifest.json", "student-int8/manifest.json", "features/prepare.json"] {
        let text = std::fs::read_to_string(second.join(file)).unwrap();
        for field in ["\"seconds\"", "\"rows_per_s\"", "\"us_per_row\""] {
            assert!(!text.contains(field), "{file} holds {field}");
        }
        let mut all = Vec::new();
        strings(&read_json(&second.join(file)), &mut all);
        let root = other.path().to_string_lossy().into_owned();
        assert!(all.iter().all(|s| !s.contains(&root)), "{file} holds an absolute path under {root}");
    }
    let student = read_json(&second.join("student-int8/manifest.json"));
    assert_eq!(student["lineage"]["parent_path"], "../student");
}
