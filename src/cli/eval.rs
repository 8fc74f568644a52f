//! `reco-cli eval MODEL_DIR... --data FILE [--ranking FILE] [--metrics-out FILE] [--junit FILE]`:
//! the side-by-side table.

use std::path::{Path, PathBuf};

use clap::Args;
use reco::Result;
use reco::outputs::{Format, OutputGuard, Written};
use reco::pipeline::eval::{default_ranking, evaluate, table};

use super::Global;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Artifact directories to compare.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Feature file with labels (e.g. <out>/features/test.parquet).
    #[arg(long)]
    data: PathBuf,
    /// Ranking set for HR@10/NDCG@10 (default: ranking.parquet next to --data, if present).
    #[arg(long)]
    ranking: Option<PathBuf>,
    /// Also write the metrics as Prometheus text (node-exporter textfile style), atomically.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    /// Also write JUnit XML: one test case per model, failing when a metric could not be
    /// computed.
    #[arg(long)]
    junit: Option<PathBuf>,
}

pub fn exec(args: EvalArgs, g: &Global, progress: &dyn reco::progress::Progress) -> Result<u8> {
    let EvalArgs { models, data, ranking, metrics_out, junit } = args;
    let ranking = ranking.or_else(|| default_ranking(&data));
    let mut reads: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    reads.push(&data);
    reads.extend(ranking.as_deref());
    for (flag, path, format) in
        [("--metrics-out", &metrics_out, Format::Prometheus), ("--junit", &junit, Format::Junit)]
    {
        if let Some(path) = path {
            OutputGuard::new(flag, path, Written::File(format)).reads(&reads).check()?;
        }
    }
    let report = evaluate(&models, &data, ranking.as_deref(), progress)?;
    if let Some(path) = &metrics_out {
        let recipe = reco::outputs::prom::recipe_of(&models[0]);
        reco::outputs::prom::write(path, &reco::outputs::prom::for_eval(&recipe, &report))?;
    }
    if let Some(path) = &junit {
        let suites = reco::outputs::junit::for_eval(&report, ranking.is_some());
        reco::outputs::junit::write(path, "reco-cli eval", &suites)?;
    }
    if g.json {
        super::print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    Ok(0)
}
