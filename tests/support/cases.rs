//! Inputs of `prepare`: small CSV tables with a recipe, the check-in fixture, and the check that
//! a refused `prepare` wrote nothing.

use std::path::Path;

use super::{Out, copy_dir, reco, repo};

/// A directory with the three CSV tables (optionally replaced) and a recipe reading them.
pub fn csv_case(users: &str, places: &str, inter: &str) -> tempfile::TempDir {
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

pub fn prepare_case(dir: &Path) -> Out {
    reco(&["prepare", "--recipe", "r.toml", "--out", "out"], dir)
}

pub fn nothing_written(dir: &Path) {
    let out = dir.join("out");
    if out.exists() {
        let names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }
}

/// The check-in fixture copied into a fresh directory (tests may edit it), recipe `r.toml`.
pub fn checkins_case() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("tests/fixtures/checkins"), dir.path());
    std::fs::rename(dir.path().join("recipe.toml"), dir.path().join("r.toml")).unwrap();
    dir
}
