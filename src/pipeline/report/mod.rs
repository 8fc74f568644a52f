//! `report`: the run report a person reads — `report.md` (with its charts as SVG files under
//! `report/`) and a self-contained `report.html` (the same charts inline, no network) — built
//! from what the run wrote: `report.json`, `timings.json` and the artifacts' manifests.
//!
//! Every number in a table of the HTML carries its source: `data-source` (`report` or
//! `timings`), `data-key` (a JSON pointer into `report.json`, or a key of `timings.json`) and
//! `data-value` (the exact value), so a reader — or a test — can check the report against the
//! JSON. The reports hold timings, so unlike `report.json` they differ from run to run.

mod blocks;
mod cards;
mod charts;
pub mod plot;
mod summary;

use std::path::{Path, PathBuf};

use serde_json::Value;

use self::blocks::{Block, to_html, to_markdown};
use crate::pipeline::run::record::RunReport;
use reco_runtime::artifact::manifest::Manifest;
use reco_runtime::error::{Error, IoContext, Result};

/// What the run wrote, read back: its report (with the timings put back), the timings by key
/// (the HTML cites them), and each evaluated model's manifest.
struct Inputs {
    run: RunReport,
    timings: std::collections::BTreeMap<String, f64>,
    manifests: Vec<Option<Manifest>>,
}

/// Paths of the files [`write`] produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportFiles {
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The self-contained HTML report.
    pub html: PathBuf,
    /// The charts as SVG files (the Markdown links them).
    pub charts: Vec<PathBuf>,
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).at(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::input(format!("{}: not valid JSON: {e}", path.display())))
}

fn load(out: &Path) -> Result<Inputs> {
    let path = out.join("report.json");
    let report = read_json(&path)?;
    if !report.is_object() {
        return Err(Error::input(format!("{}: not a JSON object (a run's report)", path.display())));
    }
    // A report written before the gates' verdicts and the recommendation existed: its headline
    // would be rebuilt from missing keys and say the wrong thing.
    for key in ["recommended", "dominated"] {
        if report.get(key).is_none() {
            return Err(Error::input(format!(
                "{}: no `{key}` (written by an older reco-cli); run the recipe again to rebuild its report",
                path.display()
            )));
        }
    }
    // No timings file: nothing was timed ("not measurable"); a broken one is an error.
    let timings_path = out.join("timings.json");
    let timings = if timings_path.exists() { read_json(&timings_path)? } else { Value::Null };
    let timings = timings_of(&timings, &timings_path)?;
    let restored = crate::outputs::stable::restore(report, &timings);
    let timings = timings.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect();
    let run: RunReport = serde_json::from_value(restored).map_err(|e| {
        Error::input(format!("{}: does not read as a run's report ({e}); run the recipe again", path.display()))
    })?;
    let manifests = run.eval.models.iter().map(|m| reco_runtime::artifact::open(&out.join(&m.path)).ok()).collect();
    Ok(Inputs { run, timings, manifests })
}

/// The timings of `timings.json` (none when it is absent): an object of numbers by location;
/// anything else is that file's error, named with the key and value at fault.
fn timings_of(timings: &Value, path: &Path) -> Result<crate::outputs::stable::Timings> {
    let map = match timings {
        Value::Null => return Ok(Default::default()),
        Value::Object(m) => m,
        other => {
            return Err(Error::input(format!("{}: expected a JSON object of timings, found {other}", path.display())));
        }
    };
    if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_number()) {
        return Err(Error::input(format!(
            "{}: `{k}` is {v}, expected a number (seconds, rows/s or µs/row)",
            path.display()
        )));
    }
    Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Writes `report.md`, `report.html` and `report/*.svg` under `out` from the run's files there.
pub fn write(out: &Path) -> Result<ReportFiles> {
    let inputs = load(out)?;
    let blocks = build(&inputs)?;
    let charts_dir = out.join("report");
    std::fs::create_dir_all(&charts_dir).at(&charts_dir)?;
    // Charts of an earlier report (a model or layer this run no longer has) go.
    for e in std::fs::read_dir(&charts_dir).at(&charts_dir)?.filter_map(std::result::Result::ok) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "svg") {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    let mut charts = Vec::new();
    for b in &blocks {
        if let Block::Figure { id, svg, .. } = b {
            let path = charts_dir.join(format!("{id}.svg"));
            write_text(&path, svg)?;
            charts.push(path);
        }
    }
    let title = format!("{}: {}", inputs.run.recipe, summary::verdict(&inputs));
    let (markdown, html) = (out.join("report.md"), out.join("report.html"));
    write_text(&markdown, &to_markdown(&title, &blocks))?;
    write_text(&html, &to_html(&title, &blocks))?;
    Ok(ReportFiles { markdown, html, charts })
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::outputs::write_file(path, text.as_bytes())
}

fn build(i: &Inputs) -> Result<Vec<Block>> {
    let mut b = summary::summary(i);
    b.extend(summary::stages(i));
    b.extend(summary::models_table(i));
    b.extend(charts::training_charts(i)?);
    b.extend(charts::tradeoff_charts(i)?);
    for (n, m) in i.run.eval.models.iter().enumerate() {
        b.extend(cards::model_card(i, n, m)?);
    }
    b.extend(summary::gates(i));
    Ok(b)
}
