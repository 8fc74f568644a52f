//! Command-line surface: the clap definitions shared by all subcommands, global options, and
//! dispatch. One file per subcommand holds its arguments and `exec`.

mod bench;
mod datasets;
mod distill;
mod eval;
mod export;
mod inspect;
mod precompute;
mod predict;
mod prepare;
mod progress;
mod quantize;
mod report;
mod run;
mod serve;
mod train;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use reco::recipe::Recipe;
use reco::{Error, Result};

/// Compressed place-recommendation models for serving systems.
#[derive(Debug, Parser)]
#[command(name = "reco-cli", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars or log lines on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Worker threads (training backend, data preparation). Default: all cores.
    #[arg(long, global = true)]
    threads: Option<usize>,
}

/// What overrides a recipe on the commands that train or draw data: the seed, and for the
/// training commands the backend (offered only where they change something).
#[derive(Debug, Args, Clone, Default)]
pub struct Overrides {
    /// Override the recipe's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Training backend: flex (default), ndarray, or wgpu (built with --features wgpu).
    #[arg(long)]
    backend: Option<reco::model::Backend>,
}

/// The seed alone, for commands that draw data but train nothing.
#[derive(Debug, Args, Clone, Default)]
pub struct SeedOnly {
    /// Override the recipe's seed.
    #[arg(long)]
    seed: Option<u64>,
}

impl From<SeedOnly> for Overrides {
    fn from(s: SeedOnly) -> Self {
        Self { seed: s.seed, backend: None }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate or import raw tables.
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Raw tables -> feature files (train/valid/test/calibration/ranking) + feature spec.
    Prepare(prepare::PrepareArgs),
    /// Train the teacher model -> <out>/teacher.
    Train(train::TrainArgs),
    /// Train a compressed student from a teacher (temperature-scaled Bernoulli KL + BCE).
    Distill(distill::DistillArgs),
    /// INT8 post-training quantization with calibration and an accuracy gate.
    Quantize(quantize::QuantizeArgs),
    /// Scoring throughput of float and INT8 artifacts, interleaved in one run.
    Bench(bench::BenchArgs),
    /// Side-by-side metrics of artifacts on a feature file.
    Eval(eval::EvalArgs),
    /// Export an artifact to ONNX (FP32, or QDQ for INT8) with preprocessing in the graph.
    Export(export::ExportArgs),
    /// Score a feature file into Parquet (row, logit, probability).
    Predict(predict::PredictArgs),
    /// Show and verify an artifact (manifest, tensors, checksums).
    Inspect(inspect::InspectArgs),
    /// Run a whole recipe: synth (if needed), prepare, train, distill, quantize, eval, gates, ONNX export.
    Run(run::RunArgs),
    /// Regenerate a run's report.md and report.html (charts, model cards) from its files.
    Report(report::ReportArgs),
    /// Top-K places per segment x busiest grid cell (x category), scored offline, to Parquet.
    Precompute(precompute::PrecomputeArgs),
    /// Serve a model over HTTP (POST /v1/score, GET /v1/recommendations, /metrics, /healthz) with request coalescing.
    Serve(serve::PassArgs),
    /// Concurrent single-row clients against the coalescer and against running servers.
    Loadtest(serve::PassArgs),
}

/// The most threads `--threads` may ask for (each one is an OS thread in every pool).
const MAX_THREADS: usize = 256;

/// Runs the parsed command; returns the exit code for outcomes that are not errors.
pub fn run(cli: Cli) -> Result<u8> {
    let g = cli.global;
    if let Some(n) = g.threads {
        if !(1..=MAX_THREADS).contains(&n) {
            return Err(Error::input(format!("--threads {n}: expected 1 to {MAX_THREADS}")));
        }
        // Set before any polars or rayon pool starts; nothing else runs yet.
        // SAFETY: single-threaded at this point of start-up.
        unsafe { std::env::set_var("POLARS_MAX_THREADS", n.to_string()) };
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| Error::Internal(e.to_string()))?;
    }
    let progress = progress::Bars::new(g.quiet);
    match cli.command {
        Command::Datasets(c) => datasets::exec(c, &g, &progress),
        Command::Prepare(a) => prepare::exec(a, &g, &progress),
        Command::Train(a) => train::exec(a, &g, &progress),
        Command::Distill(a) => distill::exec(a, &g, &progress),
        Command::Quantize(a) => quantize::exec(a, &g, &progress),
        Command::Bench(a) => bench::exec(a, &g),
        Command::Eval(a) => eval::exec(a, &g, &progress),
        Command::Export(a) => export::exec(a, &g),
        Command::Predict(a) => predict::exec(a, &g, &progress),
        Command::Inspect(a) => inspect::exec(a, &g),
        Command::Run(a) => run::exec(a, &g, &progress),
        Command::Report(a) => report::exec(a, &g),
        Command::Precompute(a) => precompute::exec(a, &g),
        Command::Serve(a) => serve::exec("serve", a),
        Command::Loadtest(a) => serve::exec("loadtest", a),
    }
}

/// Loads a recipe and applies the command's overrides (`--seed`, `--backend`).
fn load_recipe(path: &Path, o: &Overrides) -> Result<Recipe> {
    let mut recipe = Recipe::load(path)?;
    o.apply(&mut recipe);
    reco::model::device(recipe.train.backend)?;
    Ok(recipe)
}

impl Overrides {
    /// Sets what was given on the command line.
    fn apply(&self, recipe: &mut Recipe) {
        if let Some(seed) = self.seed {
            recipe.seed = seed;
        }
        if let Some(b) = self.backend {
            recipe.train.backend = b;
        }
    }
}

/// Prints a value as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// `--out` or the recipe default.
fn out_dir(recipe: &Recipe, out: Option<&PathBuf>) -> Result<reco::outputs::RunPaths> {
    let paths = reco::outputs::RunPaths::new(recipe, out.map(PathBuf::as_path));
    let raw = reco::pipeline::run::raw_locations(recipe);
    let reads: Vec<&Path> = raw.iter().map(PathBuf::as_path).collect();
    reco::outputs::check_root("--out", &paths.out, &reads)?;
    Ok(paths)
}
