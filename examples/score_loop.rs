//! A fixed amount of scoring work for profilers: scores `ROWS` rows of the model's test split in
//! batches of `BATCH`, end to end (encoding included), single-threaded, and prints rows/s.
//! Its instruction count under `valgrind --tool=callgrind` is the same from run to run, which
//! makes it the noise-free way to compare two versions of the runtime on a busy machine:
//!
//! `valgrind --tool=callgrind target/release/examples/score_loop artifacts/quickstart/teacher-int8 64 100000`

use std::path::{Path, PathBuf};
use std::time::Instant;

use reco::data::features::FeatureFrame;
use reco::pipeline::bench::batches_of;
use reco_runtime::runtime::Model;

fn main() -> reco::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || reco::Error::input("usage: score_loop MODEL_DIR [BATCH=64] [ROWS=100000]");
    let dir = PathBuf::from(args.get(1).ok_or_else(usage)?);
    let batch: usize = args.get(2).map_or(Ok(64), |s| s.parse()).map_err(|_| usage())?;
    let rows: usize = args.get(3).map_or(Ok(100_000), |s| s.parse()).map_err(|_| usage())?;
    let (_, model) = Model::open(&dir)?;
    let data = dir.parent().unwrap_or(Path::new(".")).join("features").join("test.parquet");
    let frame = FeatureFrame::read(&data, model.spec(), false)?;
    let batches = batches_of(&frame.columns, batch, (1024 / batch).max(1));
    let start = Instant::now();
    let mut done = 0;
    let mut i = 0;
    while done < rows {
        std::hint::black_box(model.logits(&batches[i % batches.len()])?);
        done += batch;
        i += 1;
    }
    println!("{:.0} rows/s", done as f64 / start.elapsed().as_secs_f64());
    Ok(())
}
