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
    if !args.out.join("report.json").is_file() {
        return Err(reco::Error::input(format!(
            "{}: no report.json (not the --out of a finished `reco-cli run`)",
            args.out.display()
        )));
    }
    let _lock = reco::pipeline::paths::OutputLock::acquire(&args.out)?;
    let files = reco::pipeline::report::write(&args.out)?;
    if g.json {
        super::print_json(&files)?;
    } else {
        println!("{}\n{}", files.markdown.display(), files.html.display());
    }
    Ok(0)
}
