//! Resident memory of one loaded model, as a server holds it: `cargo run --release -p
//! reco-runtime --example rss -- MODEL_DIR`. Prints the weights file's size and the growth of
//! the process's resident set (Linux `/proc/self/statm`) from before the load to after it,
//! with the manifest dropped and one row scored (so lazily built lookup tables exist): as
//! measured, and after `malloc_trim(0)` returns the allocator's freed pages (what the load
//! left live, without what glibc keeps of its transient buffers). One model per process.

use std::path::Path;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        // SAFETY: sysconf reads a configuration value; no memory is touched.
        .map_or(0, |pages| pages * u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
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
    let kind = manifest.kind.to_string();
    drop(manifest);
    let spec = model.spec();
    let one = reco_runtime::runtime::Columns {
        rows: 1,
        lists: spec.categorical.iter().map(|c| c.bag.map(|_| vec![0, 1])).collect(),
        categorical: spec
            .categorical
            .iter()
            .map(|c| match c.dtype() {
                reco_runtime::artifact::spec::IdType::Int64 => reco_runtime::artifact::spec::Ids::Int(vec![1]),
                reco_runtime::artifact::spec::IdType::String => {
                    reco_runtime::artifact::spec::Ids::Str(vec!["1".into()])
                }
            })
            .collect(),
        numeric: vec![vec![0.5]; spec.numeric.len()],
    };
    if let Err(e) = model.logits(&one) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let grown = rss_bytes().saturating_sub(before);
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe { libc::malloc_trim(0) };
    let live = rss_bytes().saturating_sub(before);
    let ratio = |b: u64| b as f64 / file as f64;
    println!(
        "{} {kind}: model.safetensors {file} B; RSS +{grown} B ({:.2}x); after malloc_trim +{live} B ({:.2}x); tensors {} B ({:.2}x)",
        dir.display(),
        ratio(grown),
        ratio(live),
        model.resident_bytes(),
        ratio(model.resident_bytes() as u64)
    );
}
