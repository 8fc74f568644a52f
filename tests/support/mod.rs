//! Helpers shared by the integration test binaries (`tests/cli/`, `tests/reliability/`): small
//! valid CSV tables and a directory copy (below); running the binary and judging how it ended
//! (`command`); the tiny recipe run once per binary (`tiny`); reading and editing Parquet, JSON
//! and text files (`files`); inputs of `prepare` (`cases`).

#![allow(dead_code, reason = "each test binary uses a part: tests/reliability/ only the fixtures below")]

use std::path::Path;

mod cases;
mod command;
mod files;
mod tiny;

#[allow(unused_imports, reason = "tests/reliability/ uses none of these")]
pub use cases::{checkins_case, csv_case, nothing_written, prepare_case};
#[allow(unused_imports, reason = "tests/reliability/ uses none of these")]
pub use command::{Out, bin, input_error, ok, predict, reco, reco_env, repo};
#[allow(unused_imports, reason = "tests/reliability/ uses none of these")]
pub use files::{
    edit, edit_line, manifest_json, parquet_f64, parquet_metadata, read_batch, read_json, read_logits, texts,
    with_f32_column, write_json, write_parquet_batch, write_parquet_groups, write_parts,
};
#[allow(unused_imports, reason = "tests/reliability/ uses none of these")]
pub use tiny::{TestParts, pipeline, run_dir, test_parts};

/// Two users with home locations.
pub const USERS: &str = "user_id,segment,home_lat,home_lon\n1,0,52.50,13.40\n2,1,52.52,13.41\n";
/// Three places in Berlin.
pub const PLACES: &str = "place_id,lat,lon,category,price_level,rating\n10,52.51,13.40,1,2,4.1\n11,52.52,13.42,2,3,3.5\n12,52.50,13.41,1,1,4.8\n";

/// Two weeks of implicit visits, so every split has rows.
pub fn interactions() -> String {
    let mut s = String::from("user_id,place_id,timestamp\n");
    for d in 0..14 {
        s.push_str(&format!("1,10,{}\n2,11,{}\n", 1_767_571_200 + d * 86_400, 1_767_571_200 + d * 86_400 + 3600));
    }
    s
}

/// Copies directory `src` to `dst`, recursively.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}
