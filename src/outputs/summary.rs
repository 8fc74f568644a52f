//! The CI summary of `run`: a short Markdown block — the verdict, the gates, the models beside
//! the baselines, the artifact to ship — appended to `$GITHUB_STEP_SUMMARY` (GitHub Actions
//! shows it on the run's page) or to `--summary FILE`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::pipeline::run::RunReport;
use reco_runtime::error::{IoContext, Result};

fn cell(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "not measurable".into(), |v| format!("{v:.4}"))
}

/// Table cells may not hold `|` or line breaks.
fn plain(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The Markdown block.
pub fn markdown(r: &RunReport) -> String {
    let failed = r.gates.iter().filter(|g| !g.passed).count();
    let mut s = String::new();
    let verdict = match failed {
        0 => "every gate passed".to_string(),
        1 => "**1 gate failed**".to_string(),
        n => format!("**{n} gates failed**"),
    };
    let _ = writeln!(s, "### reco-cli run `{}`: {verdict}\n", plain(&r.recipe));
    if !r.gates.is_empty() {
        s.push_str("| gate | artifact | value | threshold | judged on | verdict |\n|---|---|---|---|---|---|\n");
        for g in &r.gates {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                plain(&g.name),
                plain(&g.artifact),
                cell(g.value),
                g.threshold,
                g.judged_on,
                g.verdict()
            );
        }
        s.push('\n');
    }
    s.push_str("| model | kind | AUC | NDCG@10 | bytes |\n|---|---|---|---|---|\n");
    for m in &r.eval.models {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            plain(&m.name),
            m.kind,
            cell(m.auc),
            cell(m.ndcg10),
            m.size_bytes
        );
    }
    for b in &r.eval.baselines {
        let _ = writeln!(s, "| {} | baseline | {} | {} | – |", b.name, cell(b.auc), cell(b.ndcg10));
    }
    if let Some(o) = r.eval.oracle_auc {
        let _ = writeln!(s, "| oracle (true probability) | – | {o:.4} | – | – |");
    }
    match &r.recommended {
        Some(a) => {
            let _ = writeln!(
                s,
                "\nShip: `{}` (the smallest deliverable whose gates, and its ancestors', all hold).",
                plain(a)
            );
        }
        None => s.push_str("\nNo artifact to ship: none passed every gate.\n"),
    }
    s
}

/// Appends the block to `path` (created when missing).
pub fn append(path: &Path, r: &RunReport) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).at(path)?;
    f.write_all(markdown(r).as_bytes()).at(path)?;
    f.write_all(b"\n").at(path)
}

/// The block of a run that stopped with `error` at `stage`.
pub fn append_failure(path: &Path, recipe: &str, stage: &str, error: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).at(path)?;
    let text = format!("### reco-cli run `{}`: **stopped at stage `{stage}`**\n\n{}\n\n", plain(recipe), plain(error));
    f.write_all(text.as_bytes()).at(path)
}
