//! Resident memory of one loaded model: `cargo run --release -p reco-runtime --example rss
//! -- MODEL_DIR`. Prints the weights file's size, the process's resident set growth over
//! the load (Linux `/proc/self/statm`), and the tensor bytes the model reports holding. One
//! model per process, so the allocator's earlier pages do not hide a load's growth.

use std::path::Path;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: rss MODEL_DIR");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    let file = std::fs::metadata(dir.join("model.safetensors")).map_or(0, |m| m.len());
    let before = rss_bytes();
    let (manifest, model) = match reco_runtime::runtime::Model::open(dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let after = rss_bytes();
    let held = model.resident_bytes();
    println!(
        "{} {}: model.safetensors {file} B, RSS +{} B ({:.2}x the file), tensors held {held} B ({:.2}x)",
        dir.display(),
        manifest.kind,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / file as f64,
        held as f64 / file as f64
    );
}
