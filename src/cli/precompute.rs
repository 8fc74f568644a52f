//! `reco-cli precompute --model DIR --features DIR --out FILE.parquet [--cells N --k 20]`.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::precompute::{PrecomputeJob, precompute};

use super::Global;

#[derive(Debug, Args)]
pub struct PrecomputeArgs {
    /// Artifact directory (an INT8 model scores with the integer kernels).
    #[arg(long)]
    model: PathBuf,
    /// Features directory written by `prepare` (places.parquet, prepare.json).
    #[arg(long)]
    features: PathBuf,
    /// Output Parquet file (zstd): one row per key and rank.
    #[arg(long)]
    out: PathBuf,
    /// Most-visited grid cells to cover.
    #[arg(long, default_value_t = 100)]
    cells: usize,
    /// Places per key.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Grid cell size in degrees of latitude and longitude.
    #[arg(long, default_value_t = 0.01)]
    cell_deg: f64,
    /// Also one key per place category.
    #[arg(long)]
    by_category: bool,
    /// Local hour of the requests (0-23).
    #[arg(long, default_value_t = 18)]
    hour: u32,
    /// Local day of week of the requests (0 = Monday).
    #[arg(long, default_value_t = 5)]
    dow: u32,
    /// Users a segment's score averages over (its most active in the training split).
    #[arg(long, default_value_t = 16)]
    users_per_segment: usize,
    /// Use a model whose status is failed (a quality gate failed on it or an ancestor) or that
    /// is stale (made from a parent that was replaced since).
    #[arg(long)]
    allow_failed: bool,
}

pub fn exec(a: PrecomputeArgs, g: &Global) -> Result<u8> {
    // Every field, by name: a new flag cannot be silently ignored.
    let PrecomputeArgs {
        model,
        features,
        out,
        cells,
        k,
        cell_deg,
        by_category,
        hour,
        dow,
        users_per_segment,
        allow_failed,
    } = a;
    let job = PrecomputeJob {
        model,
        features,
        out,
        cells,
        k,
        cell_deg,
        by_category,
        hour,
        dow,
        users_per_segment,
        allow_failed,
    };
    let s = precompute(&job)?;
    if g.json {
        super::print_json(&s)?;
    } else {
        println!(
            "{} keys ({} cells) -> {}: {} candidates scored, {:.0} rows/s",
            s.keys, s.cells, s.out, s.rows_scored, s.rows_per_s
        );
    }
    Ok(0)
}
