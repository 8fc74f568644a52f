//! `reco-cli run RECIPE [--out DIR] [--force | --from STAGE] [--metrics-out FILE] [--junit FILE]`:
//! the whole pipeline with gates, reusing unchanged stages; exit 1 if a gate fails.

use std::path::PathBuf;

use clap::Args;
use reco::Result;
use reco::outputs::{Format, OutputGuard, Written};
use reco::pipeline::eval::table;
use reco::pipeline::run::reuse::{Mode, Stage};
use reco::pipeline::run::{RunOptions, RunReport, Trace, run_traced};
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
    /// Also write JUnit XML: one test case per gate and per stage (a stage that stopped the run
    /// is an error case), atomically.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Append a Markdown summary (gates, models beside baselines, the artifact to ship) to this
    /// file [default: $GITHUB_STEP_SUMMARY when set].
    #[arg(long)]
    summary: Option<PathBuf>,
    #[command(flatten)]
    overrides: super::Overrides,
}

/// The files a CI reads besides the run's own: Prometheus text, JUnit XML, the Markdown summary.
struct CiOutputs<'a> {
    metrics_out: Option<&'a std::path::Path>,
    junit: Option<&'a std::path::Path>,
    summary: Option<&'a std::path::Path>,
}

impl CiOutputs<'_> {
    /// After a finished run.
    fn write(&self, recipe: &str, report: &RunReport) -> Result<()> {
        if let Some(path) = self.metrics_out {
            reco::outputs::prom::write(path, &reco::outputs::prom::for_run(report))?;
        }
        if let Some(path) = self.junit {
            reco::outputs::junit::write(
                path,
                &format!("reco-cli run {recipe}"),
                &reco::outputs::junit::for_run(report),
            )?;
        }
        if let Some(path) = self.summary {
            reco::outputs::summary::append(path, report)?;
        }
        Ok(())
    }

    /// After a run that stopped with `e`: the JUnit file and the summary say where. The run's
    /// own error is the one reported; a failure to write these is logged.
    fn failed(&self, recipe: &str, trace: &Trace, e: &reco::Error, progress: &dyn Progress) {
        if let Some(path) = self.junit {
            let suites = reco::outputs::junit::for_failed_run(&trace.done, trace.stage, &e.to_string());
            if let Err(w) = reco::outputs::junit::write(path, &format!("reco-cli run {recipe}"), &suites) {
                progress.log(&format!("--junit {}: {w}", path.display()));
            }
        }
        if let Some(path) = self.summary
            && let Err(w) = reco::outputs::summary::append_failure(path, recipe, trace.stage, &e.to_string())
        {
            progress.log(&format!("--summary {}: {w}", path.display()));
        }
    }
}

/// Logs the run to the recipe's MLflow server, if it has one: a failure is an error with
/// `track.required`, else a warning; the run's files are on disk either way.
fn track(
    recipe: &reco::recipe::Recipe,
    report: &RunReport,
    out: &std::path::Path,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(server) = reco::pipeline::track::server(&recipe.track) else { return Ok(()) };
    let shown = reco::pipeline::track::redacted(&server);
    match reco::pipeline::track::track(&server, recipe, report, out) {
        Ok(t) => {
            let reg = t.registered.as_ref().map_or_else(String::new, |(n, v)| format!(", registered {n} version {v}"));
            progress.log(&format!(
                "tracked in MLflow {shown}: run {} ({} metrics, {} files){reg}",
                t.run_id, t.metrics, t.artifacts
            ));
            Ok(())
        }
        Err(e) if recipe.track.required => Err(reco::Error::input(format!(
            "MLflow tracking ({shown}) failed: {e}; the run's files are in {} (track.required = true)",
            out.display()
        ))),
        Err(e) => {
            eprintln!("warning: MLflow tracking ({shown}) failed: {e}; the run's files are in {}", out.display());
            Ok(())
        }
    }
}

pub fn exec(args: RunArgs, g: &Global, progress: &dyn Progress) -> Result<u8> {
    let RunArgs { recipe: recipe_path, out, resume, force, from, metrics_out, junit, summary, overrides } = args;
    let summary =
        summary.or_else(|| std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()).map(PathBuf::from));
    let recipe = super::load_recipe(&recipe_path, &overrides)?;
    let paths = super::out_dir(&recipe, out.as_ref())?;
    let raw = reco::pipeline::run::raw_locations(&recipe);
    let mut reads: Vec<&std::path::Path> = raw.iter().map(PathBuf::as_path).collect();
    reads.push(&recipe_path);
    let outputs = [
        ("--metrics-out", &metrics_out, Format::Prometheus),
        ("--junit", &junit, Format::Junit),
        ("--summary", &summary, Format::Markdown),
    ];
    for (flag, path, format) in outputs {
        if let Some(path) = path {
            OutputGuard::new(flag, path, Written::File(format)).reads(&reads).writes(paths.written()).check()?;
        }
    }
    let _lock = reco::outputs::OutputLock::acquire(&paths.out)?;
    paths.check_replaceable(matches!(recipe.data, reco::recipe::DataConfig::Synth(_)))?;
    let reuse = match (force, from) {
        (true, _) => Mode::Force,
        (false, Some(stage)) => Mode::From(stage),
        (false, None) => Mode::Auto,
    };
    let mut trace = Trace::default();
    let ci = CiOutputs { metrics_out: metrics_out.as_deref(), junit: junit.as_deref(), summary: summary.as_deref() };
    let report = match run_traced(&recipe, &paths, RunOptions { resume, reuse }, progress, &mut trace) {
        Ok(report) => report,
        Err(e) => {
            ci.failed(&recipe.name, &trace, &e, progress);
            return Err(e);
        }
    };
    ci.write(&recipe.name, &report)?;
    track(&recipe, &report, &paths.out, progress)?;
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
