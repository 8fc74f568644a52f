//! Fixtures shared by the integration test crates (`tests/cli.rs`, `tests/reliability/`):
//! small valid CSV tables and a directory copy.

use std::path::Path;

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
