//! `reco-cli predict --model DIR --data FILE --out FILE.parquet`.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::predict::predict;

use super::Global;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Artifact directory.
    #[arg(long)]
    model: PathBuf,
    /// Feature file to score (Parquet or CSV with the spec's columns).
    #[arg(long)]
    data: PathBuf,
    /// Output Parquet file: row, logit, probability (input order).
    #[arg(long)]
    out: PathBuf,
    /// Score with a model whose status is failed (a quality gate failed on it or an ancestor)
    /// or that is stale (made from a parent that was replaced since).
    #[arg(long)]
    allow_failed: bool,
}

pub fn exec(args: PredictArgs, g: &Global, progress: &dyn reco::progress::Progress) -> Result<u8> {
    let PredictArgs { model, data, out, allow_failed } = args;
    let summary = predict(&model, &data, &out, allow_failed, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        println!("scored {} rows -> {}", summary.rows, summary.out);
    }
    Ok(0)
}
