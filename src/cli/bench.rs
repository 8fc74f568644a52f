//! `reco-cli bench MODEL_DIR... [--batch-sizes 1,64,1024] [--data FILE] [--seconds S] [--scope S]`.

use std::path::{Path, PathBuf};

use clap::Args;
use reco::Result;
use reco::outputs::{Format, OutputGuard, Written};
use reco::pipeline::bench::{Scope, bench, table};

use super::Global;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Artifact directories (float and INT8), measured interleaved.
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// Rows to score (default: features/test.parquet next to the first model).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    batch_sizes: Vec<usize>,
    /// Total measuring time in seconds, split over every model and batch size.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// What each timed call covers: raw columns to logits, or the dense layers alone on MLP
    /// inputs built before timing (to hold against another runtime given the same layers).
    #[arg(long, value_enum, default_value_t = Scope::EndToEnd)]
    scope: Scope,
    /// Also write the metrics as Prometheus text (node-exporter textfile style), atomically.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
}

pub fn exec(args: BenchArgs, g: &Global) -> Result<u8> {
    let BenchArgs { models, data, batch_sizes, seconds, scope, metrics_out } = args;
    let data = data.unwrap_or_else(|| {
        let first = &models[0];
        first.parent().map(|p| p.join("features").join("test.parquet")).unwrap_or_default()
    });
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(reco::Error::input(format!("--seconds {seconds}: expected a number in (0, 3600]")));
    }
    if let Some(path) = &metrics_out {
        let mut reads: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
        reads.push(&data);
        OutputGuard::new("--metrics-out", path, Written::File(Format::Prometheus)).reads(&reads).check()?;
    }
    let threads = g.threads.unwrap_or(1);
    if let Some(b) = batch_sizes.iter().find(|&&b| b == 0 || b > 1 << 20) {
        return Err(reco::Error::input(format!("--batch-sizes {b}: expected sizes from 1 to 1048576 rows")));
    }
    let report = bench(&models, &data, &batch_sizes, seconds, threads, scope)?;
    if let Some(path) = &metrics_out {
        let recipe = reco::outputs::prom::recipe_of(&models[0]);
        reco::outputs::prom::write(path, &reco::outputs::prom::for_bench(&recipe, &report))?;
    }
    if g.json {
        super::print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    Ok(0)
}
