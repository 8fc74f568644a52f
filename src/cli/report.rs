//! `reco-cli report OUT_DIR`: regenerate `report.md`, `report.html` and `report/*.svg` from
//! what a run left in OUT_DIR (`report.json`, `timings.json`, the artifacts).

use std::path::PathBuf;

use clap::Args;
use reco::Result;

use super::Global;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run's output root (holds report.json).
    out: PathBuf,
}

pub fn exec(args: ReportArgs, g: &Global) -> Result<u8> {
    // The lock first: a run that holds it has removed its old report.json meanwhile.
    let _lock = args.out.is_dir().then(|| reco::outputs::OutputLock::acquire(&args.out)).transpose()?;
    if !args.out.join("report.json").is_file() {
        return Err(reco::Error::input(format!(
            "{}: no report.json (not the --out of a finished `reco-cli run`)",
            args.out.display()
        )));
    }
    // The charts' folder may be a link somewhere else: never into an artifact.
    reco::outputs::check_root("report", &args.out.join("report"), &[])?;
    let files = reco::pipeline::report::write(&args.out)?;
    if g.json {
        super::print_json(&files)?;
    } else {
        println!("{}\n{}", files.markdown.display(), files.html.display());
    }
    Ok(0)
}
