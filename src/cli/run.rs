//! `reco-cli run RECIPE [--out DIR] [--force | --from STAGE] [--metrics-out FILE]`: the whole
//! pipeline with gates, reusing unchanged stages; exit 1 if a gate fails.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::outputs::{Format, OutputGuard, Written};
use reco::pipeline::eval::table;
use reco::pipeline::run::reuse::{Mode, Stage};
use reco::pipeline::run::{RunOptions, run};
use reco::progress::Progress;

use super::Global;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Recipe file (TOML), e.g. recipes/quickstart.toml.
    recipe: PathBuf,
    /// Output root for raw data, features, artifacts and report (default artifacts/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue trainings a killed run left unfinished from their last epoch checkpoint
    /// (same final weights as an uninterrupted run).
    #[arg(long)]
    resume: bool,
    /// Recompute every stage, even those whose inputs and configuration are unchanged.
    #[arg(long, conflicts_with = "from")]
    force: bool,
    /// Recompute this stage and every one after it (earlier ones are reused when unchanged).
    #[arg(long, value_enum)]
    from: Option<Stage>,
    /// Also write the metrics as Prometheus text (node-exporter textfile style), atomically.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    #[command(flatten)]
    overrides: super::Overrides,
}

pub fn exec(args: RunArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let RunArgs { recipe: recipe_path, out, resume, force, from, metrics_out, overrides } = args;
    let recipe = super::load_recipe(&recipe_path, &overrides)?;
    let paths = super::out_dir(&recipe, out.as_ref())?;
    if let Some(path) = &metrics_out {
        let raw = reco::pipeline::run::raw_locations(&recipe);
        let mut reads: Vec<&std::path::Path> = raw.iter().map(PathBuf::as_path).collect();
        reads.push(&recipe_path);
        OutputGuard::new("--metrics-out", path, Written::File(Format::Prometheus))
            .reads(&reads)
            .writes(paths.written())
            .check()?;
    }
    let _lock = reco::outputs::OutputLock::acquire(&paths.out)?;
    paths.check_replaceable(matches!(recipe.data, reco::recipe::DataConfig::Synth(_)))?;
    let reuse = match (force, from) {
        (true, _) => Mode::Force,
        (false, Some(stage)) => Mode::From(stage),
        (false, None) => Mode::Auto,
    };
    let report = run(&recipe, &paths, RunOptions { resume, reuse }, progress)?;
    if let Some(path) = &metrics_out {
        reco::outputs::prom::write(path, &reco::outputs::prom::for_run(&report))?;
    }
    if g.json {
        super::print_json(&report)?;
    } else {
        for s in &report.stages {
            let how = if s.reused { "  reused" } else { "" };
            println!("{:<8} {:>7.1}s{how}", s.name, s.seconds);
        }
        print!("{}", table(&report.eval));
        for gate in &report.gates {
            println!(
                "gate {:<28} on {:<14} {} (threshold {:.4}, by {})  {}",
                gate.name,
                gate.artifact,
                gate.value.map_or_else(|| "not measurable".into(), |v| format!("{v:.4}")),
                gate.threshold,
                gate.judged_on,
                gate.verdict()
            );
        }
        for d in &report.dominated {
            println!("do not ship {}: {} is no larger and at least as good on AUC and NDCG@10", d.model, d.by);
        }
        println!(
            "ship: {}",
            report.recommended.as_deref().unwrap_or("none (no artifact passes its own and its ancestors' gates)")
        );
        println!("report: {}", paths.report().display());
        println!("reports: {} and {}", paths.out.join("report.md").display(), paths.out.join("report.html").display());
    }
    if report.passed {
        Ok(0)
    } else {
        progress.log("a quality gate failed (see the report)");
        Ok(1)
    }
}
