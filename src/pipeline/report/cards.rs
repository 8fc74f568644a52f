//! One card per model: what it is, its data and split dates, features, architecture, lineage,
//! status (with the gates that failed it), parameters, bytes, metrics with intervals, its
//! gates, its reliability diagram and, for an INT8 model, its quantization.

use super::Inputs;
use super::blocks::{Block, Cell, Source, ci};
use super::charts::{quantization, quantize_detail, reliability};
use super::summary::gates_of;
use crate::pipeline::eval::ModelEval;
use crate::pipeline::run::reuse::StageDetail;
use reco_runtime::artifact::manifest::Kind;
use reco_runtime::error::Result;

/// A stage's summary, by the stage.
fn detail<T>(i: &Inputs, pick: impl Fn(&StageDetail) -> Option<&T>) -> Option<&T> {
    i.run.stages.iter().find_map(|s| pick(&s.detail))
}

fn distill(i: &Inputs) -> Option<&crate::pipeline::distill::DistillSummary> {
    detail(i, |d| if let StageDetail::Distill(d) = d { Some(&**d) } else { None })
}

fn describe(kind: Kind, i: &Inputs) -> String {
    let d = distill(i);
    match kind {
        Kind::Teacher => "The teacher: embeddings + MLP trained on the labels.".into(),
        Kind::Student => format!(
            "The student: a smaller MLP distilled from the teacher (temperature {}, KL weight {}, listwise weight {}{}).",
            d.map_or("?".into(), |d| d.temperature.to_string()),
            d.map_or("?".into(), |d| d.alpha.to_string()),
            d.map_or("?".into(), |d| d.listwise.to_string()),
            d.and_then(|d| d.ensemble.as_ref())
                .map_or(String::new(), |e| format!(", soft targets from {} teachers", e.seeds.len()))
        ),
        Kind::StudentScratch => {
            "The student's architecture trained on labels only: the comparison that shows what distillation adds."
                .into()
        }
        k => format!("INT8 post-training quantization of the {}.", k.as_str().trim_end_matches("-int8")),
    }
}

fn split_dates(i: &Inputs) -> String {
    let prepare = detail(i, |d| if let StageDetail::Prepare(p) = d { Some(&**p) } else { None });
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    match prepare.map(|p| p.split_times) {
        Some([a, b]) => format!("train before {}, validation until {}, test from {}", date(a), date(b), date(b)),
        None => "split times not recorded".into(),
    }
}

/// Where the model's bytes go: each table and layer with its precision, the header, the
/// manifest and the total a server loads.
fn size_table(n: usize, m: &ModelEval) -> Vec<Block> {
    let Some(sizes) = &m.sizes else { return Vec::new() };
    let rows = sizes
        .rows()
        .into_iter()
        .map(|r| {
            let key = Source::Report(format!("/eval/models/{n}/sizes/{}", r.key));
            vec![
                Cell::text(r.part),
                Cell::text(r.what),
                Cell::text(r.shape),
                Cell::number(Some(r.bytes as f64), 0, key),
            ]
        })
        .collect();
    let head = ["part", "precision", "shape", "bytes"].map(String::from).to_vec();
    vec![Block::Heading(3, format!("Size of {}", m.name)), Block::Table(head, rows)]
}

pub(super) fn model_card(i: &Inputs, n: usize, m: &ModelEval) -> Result<Vec<Block>> {
    let mut rows = vec![vec![Cell::text("what"), Cell::text(describe(m.kind, i))]];
    let k = |f: &str| Source::Report(format!("/eval/models/{n}/{f}"));
    if let Some(man) = &i.manifests[n] {
        let spec = &man.feature_spec;
        let cats: Vec<String> = spec
            .categorical
            .iter()
            .zip(&man.architecture.embedding_dims)
            .map(|(c, d)| match c.bag {
                Some(b) => {
                    format!("{} ({d}-d embeddings of up to {} values, {})", c.name, b.max_values, b.pooling.name())
                }
                None => format!("{} ({d}-d embedding)", c.name),
            })
            .collect();
        let nums: Vec<&str> = spec.numeric.iter().map(|c| c.name.as_str()).collect();
        let arch = &man.architecture;
        let hidden: Vec<String> = arch.hidden.iter().map(usize::to_string).collect();
        let recipe = reco_runtime::artifact::sha256_bytes(&serde_json::to_vec(&man.recipe).unwrap_or_default());
        rows.push(vec![Cell::text("data"), Cell::text(format!("{} rows of test; {}", m.rows, split_dates(i)))]);
        rows.push(vec![
            Cell::text("features"),
            Cell::text(format!("{}; numeric: {}", cats.join(", "), nums.join(", "))),
        ]);
        rows.push(vec![
            Cell::text("architecture"),
            Cell::text(format!(
                "embeddings{} → {} → 1 ({})",
                if arch.interaction.is_none() { "" } else { " + user·place dot" },
                hidden.join(" → "),
                arch.activation
            )),
        ]);
        rows.push(vec![
            Cell::text("lineage"),
            Cell::text(man.lineage.as_ref().map_or_else(
                || "trained in this run".into(),
                |l| {
                    let hash = l.parent_content_sha256.get(..16).unwrap_or(&l.parent_content_sha256);
                    format!("from the {} (content sha256 {hash})", l.parent_kind)
                },
            )),
        ]);
        rows.push(vec![
            Cell::text("recipe sha256 (the sections its stages read)"),
            Cell::text(recipe.get(..16).unwrap_or(&recipe)),
        ]);
        let why: Vec<String> = man.gate_failures.iter().map(ToString::to_string).collect();
        let status =
            if why.is_empty() { man.status.to_string() } else { format!("{} ({})", man.status, why.join("; ")) };
        rows.push(vec![Cell::text("status"), Cell::text(status)]);
    }
    // From the model's own manifest (a sweep has several students of one kind).
    let params = i.manifests[n].as_ref().map(|man| man.architecture.parameter_count(&man.feature_spec));
    rows.push(vec![Cell::text("parameters"), Cell::text(params.map_or("?".into(), |p| p.to_string()))]);
    rows.push(vec![Cell::text("bytes"), Cell::number(Some(m.size_bytes as f64), 0, k("size_bytes"))]);
    rows.push(vec![Cell::text("AUC"), Cell::number(m.auc, 4, k("auc"))]);
    rows.push(vec![Cell::text("AUC 95% CI (bootstrap)"), Cell::text(ci(m.auc_ci95))]);
    rows.push(vec![Cell::text("NDCG@10"), Cell::number(m.ndcg10, 4, k("ndcg@10"))]);
    rows.push(vec![Cell::text("NDCG@10 95% CI (bootstrap)"), Cell::text(ci(m.ndcg10_ci95))]);
    rows.push(vec![Cell::text("HR@10"), Cell::number(m.hr10, 4, k("hr@10"))]);
    rows.push(vec![Cell::text("logloss"), Cell::number(Some(m.logloss), 4, k("logloss"))]);
    rows.push(vec![Cell::text("ECE"), Cell::number(Some(m.ece), 4, k("ece"))]);
    for g in gates_of(i, &m.name) {
        let gate = &i.run.gates[g];
        let value = Cell::number(gate.value, 4, Source::Report(format!("/gates/{g}/value")));
        rows.push(vec![Cell::text(format!("gate {} ({})", gate.name, gate.verdict())), value]);
    }
    let mut b = vec![
        Block::Heading(2, format!("Model card: {}", m.name)),
        Block::Table(vec!["property".into(), "value".into()], rows),
    ];
    b.extend(size_table(n, m));
    b.push(reliability(m)?);
    if let Some(q) = quantize_detail(i, m.kind) {
        b.extend(quantization(m, q)?);
    }
    Ok(b)
}
