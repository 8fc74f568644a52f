//! `reco-cli predict --model DIR --data FILE [--raw FEATURES_DIR] --out FILE.parquet`.

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
    /// Feature file to score (Parquet or CSV with the spec's columns); with --raw, raw
    /// requests (user_id, place_id, timestamp, lat, lon, and the declared columns).
    #[arg(long)]
    data: PathBuf,
    /// Score raw requests: featurized with this `prepare` features directory (its
    /// featurizer.json, places.parquet and events.parquet), each row from the events before its
    /// time, as `serve --features` does.
    #[arg(long, value_name = "FEATURES_DIR")]
    raw: Option<PathBuf>,
    /// Output Parquet file: row, logit, probability (input order).
    #[arg(long)]
    out: PathBuf,
    /// Score with a model whose status is failed (a quality gate failed on it or an ancestor)
    /// or that is stale (made from a parent that was replaced since).
    #[arg(long)]
    allow_failed: bool,
}

pub fn exec(args: PredictArgs, g: &Global, progress: &dyn reco::progress::Progress) -> Result<u8> {
    let PredictArgs { model, data, raw, out, allow_failed } = args;
    let summary = predict(&model, (&data, raw.as_deref()), &out, allow_failed, progress)?;
    if g.json {
        super::print_json(&summary)?;
    } else {
        println!("scored {} rows -> {}", summary.rows, summary.out);
    }
    Ok(0)
}
