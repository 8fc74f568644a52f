//! The report's words and tables: the verdict line, the summary (what to ship, what failed,
//! what not to ship), the stages, the models beside the baselines, and the gates.

use std::fmt::Write as _;

use super::Inputs;
use super::blocks::{Block, Cell, Source, ci};
use crate::pipeline::eval::ModelEval;

/// Indices of the gates that judge the model named `name`.
pub(super) fn gates_of(i: &Inputs, name: &str) -> Vec<usize> {
    i.run.gates.iter().enumerate().filter(|(_, g)| g.artifact == name).map(|(n, _)| n).collect()
}

/// The failed gates, as the manifests record them.
fn failed_gates(i: &Inputs) -> Vec<String> {
    i.run.gates.iter().filter(|g| !g.passed).map(|g| g.failure().to_string()).collect()
}

/// The run's verdict in one line: which gates failed (or that all pass) and what to ship.
pub(super) fn verdict(i: &Inputs) -> String {
    let failed = failed_gates(i);
    let ship = match &i.run.recommended {
        Some(r) if failed.is_empty() => format!("ship {r}"),
        Some(r) => format!("ship {r} instead"),
        None => "nothing here is fit to ship".into(),
    };
    match failed.len() {
        0 if i.run.gates.is_empty() => format!("no gate set; {ship}"),
        0 => format!("every gate passes; {ship}"),
        _ => format!("FAILED {}; {ship}", failed.join("; ")),
    }
}

/// Whether the model named `name` may be shipped: a deliverable whose manifest says `ok`.
fn shippable(i: &Inputs, name: &str) -> bool {
    let n = i.run.eval.models.iter().position(|m| m.name == name);
    let ok = n
        .and_then(|n| i.manifests[n].as_ref())
        .is_some_and(|m| m.status == reco_runtime::artifact::manifest::Status::Ok);
    ok && !crate::pipeline::distill::is_scratch(name)
}

pub(super) fn us_per_row(i: &Inputs, m: &ModelEval) -> (Option<f64>, Source) {
    let key = format!("/eval/models/{}/us_per_row", m.name);
    (i.timings.get(&key).copied(), Source::Timings(key))
}

fn size_of(i: &Inputs, name: &str) -> String {
    i.run.eval.models.iter().find(|m| m.name == name).map_or_else(|| "?".into(), |m| kib(m.size_bytes))
}

pub(super) fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

pub(super) fn summary(i: &Inputs) -> Vec<Block> {
    let mut text = match &i.run.recommended {
        Some(r) => format!(
            "Ship **{r}** ({}): the smallest artifact whose own gates and its ancestors' all hold. {}",
            size_of(i, r),
            below_baselines(i, r)
        ),
        None => "No artifact passes its own gates and its ancestors': nothing here is fit to ship. ".into(),
    };
    let failed = failed_gates(i);
    if !failed.is_empty() {
        let _ = write!(
            text,
            "Failed: {}; the artifacts they judge and every artifact made from them are marked `failed` in their manifests (`serve`, `predict`, `precompute` and `export` refuse them). ",
            failed.join("; ")
        );
    }
    for d in &i.run.dominated {
        let (m, by) = (d.model.as_str(), d.by.as_str());
        let _ = write!(
            text,
            "Do not ship **{m}** ({}): **{by}** ({}) is no larger and at least as good on AUC and NDCG@10. ",
            size_of(i, m),
            size_of(i, by)
        );
    }
    let timed =
        i.run.eval.models.iter().filter(|m| shippable(i, &m.name)).filter_map(|m| us_per_row(i, m).0.map(|t| (t, m)));
    if let Some((t, m)) = timed.min_by(|a, b| a.0.total_cmp(&b.0)) {
        let _ = write!(text, "Fastest artifact fit to ship: {} ({t:.3} µs/row, 1 thread).", m.name);
    }
    vec![Block::Heading(2, "Summary".into()), Block::Para(text)]
}

/// A warning when the model named `name` ranks below a baseline on AUC or NDCG@10 (a gate
/// set holds it to its teacher, not to what needs no model at all).
fn below_baselines(i: &Inputs, name: &str) -> String {
    let Some(m) = i.run.eval.models.iter().find(|m| m.name == name) else { return String::new() };
    let below = |x: Option<f64>, y: Option<f64>| x.zip(y).is_some_and(|(x, y)| x < y);
    let worse: Vec<String> = i
        .run
        .eval
        .baselines
        .iter()
        .filter_map(|b| {
            let on: Vec<&str> = [("AUC", below(m.auc, b.auc)), ("NDCG@10", below(m.ndcg10, b.ndcg10))]
                .into_iter()
                .filter_map(|(metric, w)| w.then_some(metric))
                .collect();
            (!on.is_empty()).then(|| format!("the {} baseline on {}", b.name, on.join(" and ")))
        })
        .collect();
    if worse.is_empty() {
        String::new()
    } else {
        format!("But it ranks below {}: a model that needs no training does better. ", worse.join(", "))
    }
}

pub(super) fn stages(i: &Inputs) -> Vec<Block> {
    let rows = i
        .run
        .stages
        .iter()
        .map(|s| {
            let key = format!("/stages/{}/seconds", s.name);
            vec![
                Cell::text(&s.name),
                Cell::text(if s.reused { "reused" } else { "ran" }),
                Cell::number(i.timings.get(&key).copied(), 2, Source::Timings(key)),
            ]
        })
        .collect();
    vec![
        Block::Heading(2, "Stages".into()),
        Block::Table(vec!["stage".into(), "this run".into(), "seconds".into()], rows),
    ]
}

pub(super) fn models_table(i: &Inputs) -> Vec<Block> {
    let head = [
        "model",
        "kind",
        "AUC",
        "AUC 95% CI",
        "NDCG@10",
        "NDCG@10 95% CI",
        "HR@10",
        "logloss",
        "ECE",
        "bytes",
        "µs/row",
    ];
    let rows = i
        .run
        .eval
        .models
        .iter()
        .enumerate()
        .map(|(n, m)| {
            let k = |f: &str| Source::Report(format!("/eval/models/{n}/{f}"));
            let (t, ts) = us_per_row(i, m);
            vec![
                Cell::text(&m.name),
                Cell::text(m.kind.as_str()),
                Cell::number(m.auc, 4, k("auc")),
                Cell::text(ci(m.auc_ci95)),
                Cell::number(m.ndcg10, 4, k("ndcg@10")),
                Cell::text(ci(m.ndcg10_ci95)),
                Cell::number(m.hr10, 4, k("hr@10")),
                Cell::number(Some(m.logloss), 4, k("logloss")),
                Cell::number(Some(m.ece), 4, k("ece")),
                Cell::number(Some(m.size_bytes as f64), 0, k("size_bytes")),
                Cell::number(t, 3, ts),
            ]
        })
        .chain(i.run.eval.baselines.iter().enumerate().map(|(n, b)| {
            let k = |f: &str| Source::Report(format!("/eval/baselines/{n}/{f}"));
            let na = || Cell::text("n/a");
            vec![
                Cell::text(b.name.to_string()),
                Cell::text("baseline (no model)"),
                Cell::number(b.auc, 4, k("auc")),
                Cell::text(ci(b.auc_ci95)),
                Cell::number(b.ndcg10, 4, k("ndcg@10")),
                Cell::text(ci(b.ndcg10_ci95)),
                Cell::number(b.hr10, 4, k("hr@10")),
                na(),
                na(),
                na(),
                na(),
            ]
        }))
        .collect();
    let mut b = vec![Block::Heading(2, "Models".into()), Block::Table(head.map(String::from).to_vec(), rows)];
    let mut notes = String::from(
        "Baselines rank without a model (history: the places the user visited most before first, ties by popularity; popularity: most visited in the trailing window first; nearest: closest first): a model should beat them. ",
    );
    if let Some(o) = i.run.eval.oracle_auc {
        let _ = write!(notes, "Oracle AUC (the true visit probability of the synthetic data): {o:.4}.");
    }
    b.push(Block::Para(notes));
    b
}

pub(super) fn gates(i: &Inputs) -> Vec<Block> {
    let rows = i
        .run
        .gates
        .iter()
        .enumerate()
        .map(|(g, gate)| {
            vec![
                Cell::text(&gate.name),
                Cell::text(&gate.artifact),
                Cell::number(gate.value, 4, Source::Report(format!("/gates/{g}/value"))),
                Cell::text(gate.interval.map_or_else(|| "not measured".into(), |[a, b]| format!("[{a:.4}, {b:.4}]"))),
                Cell::number(Some(gate.threshold), 4, Source::Report(format!("/gates/{g}/threshold"))),
                Cell::text(gate.judged_on.to_string()),
                Cell::text(gate.verdict()),
            ]
        })
        .collect();
    let head =
        ["gate", "judges", "value", "95% interval", "threshold", "decided by", "verdict"].map(String::from).to_vec();
    vec![Block::Heading(2, "Gates".into()), Block::Table(head, rows)]
}
