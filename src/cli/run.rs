//! `reco-cli run RECIPE [--out DIR]`: the whole pipeline with gates; exit 1 if a gate fails.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::pipeline::eval::table;
use reco::pipeline::run::run;
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
}

pub fn exec(args: RunArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let RunArgs { recipe, out, resume } = args;
    let recipe = super::load_recipe(&recipe, g)?;
    let paths = super::out_dir(&recipe, out.as_ref());
    let _lock = reco::pipeline::paths::OutputLock::acquire(&paths.out)?;
    let report = run(&recipe, &paths, resume, progress)?;
    if g.json {
        super::print_json(&report)?;
    } else {
        for s in &report.stages {
            println!("{:<8} {:>7.1}s", s.name, s.seconds);
        }
        print!("{}", table(&report.eval));
        for gate in &report.gates {
            println!(
                "gate {:<28} {} (threshold {:.4})  {}",
                gate.name,
                gate.value.map_or_else(|| "not measurable".into(), |v| format!("{v:.4}")),
                gate.threshold,
                if gate.passed { "PASS" } else { "FAIL" }
            );
        }
        println!("report: {}", paths.report().display());
    }
    if report.passed {
        Ok(0)
    } else {
        progress.log("a quality gate failed (see the report)");
        Ok(1)
    }
}
