//! `report`: the run report a person reads — `report.md` (with its charts as SVG files under
//! `report/`) and a self-contained `report.html` (the same charts inline, no network) — built
//! from what the run wrote: `report.json`, `timings.json` and the artifacts' manifests.
//!
//! Every number in a table of the HTML carries its source: `data-source` (`report` or
//! `timings`), `data-key` (a JSON pointer into `report.json`, or a key of `timings.json`) and
//! `data-value` (the exact value), so a reader — or a test — can check the report against the
//! JSON. The reports hold timings, so unlike `report.json` they differ from run to run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::artifact::manifest::Manifest;
use crate::error::{Error, IoContext, Result};
use crate::pipeline::eval::{EvalReport, ModelEval};
use crate::pipeline::gates::{Dominated, GateReport};
use crate::plots::{self, Chart, Mark, Series};

/// Where a reported number comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A JSON pointer into `report.json`.
    Report(String),
    /// A key of `timings.json`.
    Timings(String),
}

/// One table cell: text, and for a number its exact value and source.
#[derive(Debug, Clone)]
struct Cell {
    text: String,
    number: Option<(f64, Source)>,
}

impl Cell {
    fn text(s: impl Into<String>) -> Self {
        Self { text: s.into(), number: None }
    }

    /// `v` shown with `decimals` digits, from `source`; "not measurable" without a value.
    fn number(v: Option<f64>, decimals: usize, source: Source) -> Self {
        match v.filter(|v| v.is_finite()) {
            Some(v) => Self { text: format!("{v:.decimals$}"), number: Some((v, source)) },
            None => Self::text("not measurable"),
        }
    }
}

/// A piece of the report, rendered to both Markdown and HTML.
#[derive(Debug, Clone)]
enum Block {
    Heading(usize, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<Cell>>),
    Figure { id: String, caption: String, svg: String, points: usize },
}

/// What the run wrote, read back.
struct Inputs {
    report: Value,
    timings: Value,
    eval: EvalReport,
    manifests: Vec<Option<Manifest>>,
    verdict: Verdict,
}

/// The run's gates and what it recommends, as `report.json` holds them.
#[derive(serde::Deserialize)]
struct Verdict {
    gates: Vec<GateReport>,
    recommended: Option<String>,
    dominated: Vec<Dominated>,
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
    let report = read_json(&out.join("report.json"))?;
    if !report.is_object() {
        return Err(Error::input(format!("{}: not a JSON object (a run's report)", out.join("report.json").display())));
    }
    // No timings file: nothing was timed ("not measurable"); a broken one is an error.
    let timings_path = out.join("timings.json");
    let timings = if timings_path.exists() { read_json(&timings_path)? } else { Value::Null };
    let timed = timings_of(&timings, &timings_path)?;
    let restored = crate::outputs::stable::restore(report.clone(), &timed);
    let eval: EvalReport = serde_json::from_value(restored["eval"].clone()).map_err(|e| {
        Error::input(format!("{}: `eval` is not a run's evaluation: {e}", out.join("report.json").display()))
    })?;
    let manifests = eval.models.iter().map(|m| crate::artifact::open(&out.join(&m.path)).ok()).collect();
    let verdict = verdict_of(&report, &out.join("report.json"))?;
    Ok(Inputs { report, timings, eval, manifests, verdict })
}

/// The gates and the recommendation of a report; one written before they existed is refused
/// (a headline rebuilt from missing keys would say the wrong thing).
fn verdict_of(report: &Value, path: &Path) -> Result<Verdict> {
    for key in ["recommended", "dominated"] {
        if report.get(key).is_none() {
            return Err(Error::input(format!(
                "{}: no `{key}` (written by an older reco-cli); run the recipe again to rebuild its report",
                path.display()
            )));
        }
    }
    serde_json::from_value(report.clone()).map_err(|e| {
        Error::input(format!(
            "{}: its gates or recommendation do not read as a run's ({e}); run the recipe again",
            path.display()
        ))
    })
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
    let title = format!("{}: {}", inputs.report["recipe"].as_str().unwrap_or("?"), verdict(&inputs));
    let (markdown, html) = (out.join("report.md"), out.join("report.html"));
    write_text(&markdown, &to_markdown(&title, &blocks))?;
    write_text(&html, &to_html(&title, &blocks))?;
    Ok(ReportFiles { markdown, html, charts })
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::outputs::write_file(path, text.as_bytes())
}

fn build(i: &Inputs) -> Result<Vec<Block>> {
    let mut b = summary(i);
    b.extend(stages(i));
    b.extend(models_table(i));
    b.extend(training_charts(i)?);
    b.extend(tradeoff_charts(i)?);
    for (n, m) in i.eval.models.iter().enumerate() {
        b.extend(model_card(i, n, m)?);
    }
    b.extend(gates(i));
    Ok(b)
}

/// Indices of the gates that judge the model named `name`.
fn gates_of(i: &Inputs, name: &str) -> Vec<usize> {
    i.verdict.gates.iter().enumerate().filter(|(_, g)| g.artifact == name).map(|(n, _)| n).collect()
}

/// The failed gates, as the manifests record them.
fn failed_gates(i: &Inputs) -> Vec<String> {
    i.verdict.gates.iter().filter(|g| !g.passed).map(|g| g.failure().to_string()).collect()
}

/// The run's verdict in one line: which gates failed (or that all pass) and what to ship.
fn verdict(i: &Inputs) -> String {
    let failed = failed_gates(i);
    let ship = match &i.verdict.recommended {
        Some(r) if failed.is_empty() => format!("ship {r}"),
        Some(r) => format!("ship {r} instead"),
        None => "nothing here is fit to ship".into(),
    };
    match failed.len() {
        0 if i.verdict.gates.is_empty() => format!("no gate set; {ship}"),
        0 => format!("every gate passes; {ship}"),
        _ => format!("FAILED {}; {ship}", failed.join("; ")),
    }
}

/// Whether the model named `name` may be shipped: a deliverable whose manifest says `ok`.
fn shippable(i: &Inputs, name: &str) -> bool {
    let n = i.eval.models.iter().position(|m| m.name == name);
    let ok = n.and_then(|n| i.manifests[n].as_ref()).is_some_and(|m| m.status == crate::artifact::manifest::Status::Ok);
    ok && name != "student-scratch"
}

fn us_per_row(i: &Inputs, m: &ModelEval) -> (Option<f64>, Source) {
    let key = format!("/eval/models/{}/us_per_row", m.name);
    (i.timings[&key].as_f64(), Source::Timings(key))
}

fn size_of(i: &Inputs, name: &str) -> String {
    i.eval.models.iter().find(|m| m.name == name).map_or_else(|| "?".into(), |m| kib(m.size_bytes))
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn summary(i: &Inputs) -> Vec<Block> {
    let mut text = match &i.verdict.recommended {
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
    for d in &i.verdict.dominated {
        let (m, by) = (d.model.as_str(), d.by.as_str());
        let _ = write!(
            text,
            "Do not ship **{m}** ({}): **{by}** ({}) is no larger and at least as good on AUC and NDCG@10. ",
            size_of(i, m),
            size_of(i, by)
        );
    }
    let timed =
        i.eval.models.iter().filter(|m| shippable(i, &m.name)).filter_map(|m| us_per_row(i, m).0.map(|t| (t, m)));
    if let Some((t, m)) = timed.min_by(|a, b| a.0.total_cmp(&b.0)) {
        let _ = write!(text, "Fastest artifact fit to ship: {} ({t:.3} µs/row, 1 thread).", m.name);
    }
    vec![Block::Heading(2, "Summary".into()), Block::Para(text)]
}

/// A warning when the model named `name` ranks below a baseline on AUC or NDCG@10 (a gate
/// set holds it to its teacher, not to what needs no model at all).
fn below_baselines(i: &Inputs, name: &str) -> String {
    let Some(m) = i.eval.models.iter().find(|m| m.name == name) else { return String::new() };
    let below = |x: Option<f64>, y: Option<f64>| x.zip(y).is_some_and(|(x, y)| x < y);
    let worse: Vec<String> = i
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

fn stages(i: &Inputs) -> Vec<Block> {
    let rows = i.report["stages"]
        .as_array()
        .map(|stages| {
            stages
                .iter()
                .map(|s| {
                    let name = s["name"].as_str().unwrap_or("?").to_string();
                    let key = format!("/stages/{name}/seconds");
                    let reused = if s["reused"] == Value::Bool(true) { "reused" } else { "ran" };
                    vec![
                        Cell::text(&name),
                        Cell::text(reused),
                        Cell::number(i.timings[&key].as_f64(), 2, Source::Timings(key)),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    vec![
        Block::Heading(2, "Stages".into()),
        Block::Table(vec!["stage".into(), "this run".into(), "seconds".into()], rows),
    ]
}

fn ci(v: Option<[f64; 2]>) -> String {
    v.map_or_else(|| "not measurable".into(), |[a, b]| format!("[{a:.4}, {b:.4}]"))
}

fn models_table(i: &Inputs) -> Vec<Block> {
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
        .eval
        .models
        .iter()
        .enumerate()
        .map(|(n, m)| {
            let k = |f: &str| Source::Report(format!("/eval/models/{n}/{f}"));
            let (t, ts) = us_per_row(i, m);
            vec![
                Cell::text(&m.name),
                Cell::text(&m.kind),
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
        .chain(i.eval.baselines.iter().enumerate().map(|(n, b)| {
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
        "Baselines rank without a model (popularity: most visited in the trailing window first; nearest: closest first): a model should beat them. ",
    );
    if let Some(o) = i.eval.oracle_auc {
        let _ = write!(notes, "Oracle AUC (the true visit probability of the synthetic data): {o:.4}.");
    }
    b.push(Block::Para(notes));
    b
}

/// A figure block from a chart; a chart without data to draw becomes a line that says so
/// (the run's report is still written).
fn figure(id: &str, caption: &str, chart: &Chart) -> Result<Block> {
    let points = chart.series.iter().map(|s| s.points.len()).sum();
    Ok(match plots::svg(chart) {
        Ok(svg) => Block::Figure { id: id.into(), caption: caption.into(), svg, points },
        Err(_) => Block::Para(format!("{caption} Not drawn: nothing measurable to plot.")),
    })
}

/// A trained model's per-epoch history.
struct Curve {
    name: String,
    loss: Vec<f64>,
    auc: Vec<f64>,
}

/// Per-epoch curves of the trained models.
fn curves(i: &Inputs) -> Vec<Curve> {
    let nums = |v: &Value| v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    let mut out = Vec::new();
    for s in i.report["stages"].as_array().into_iter().flatten() {
        let d = &s["detail"];
        match s["name"].as_str() {
            Some("train") => {
                out.push(Curve { name: "teacher".into(), loss: nums(&d["train_loss"]), auc: nums(&d["valid_auc"]) });
            }
            Some("distill") => {
                for (key, name) in [("student", "student"), ("scratch", "student-scratch")] {
                    if d[key].is_object() {
                        let (loss, auc) = (nums(&d[key]["train_loss"]), nums(&d[key]["valid_auc"]));
                        out.push(Curve { name: name.into(), loss, auc });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn per_epoch(values: &[f64]) -> Vec<(f64, f64)> {
    values.iter().enumerate().map(|(e, &v)| ((e + 1) as f64, v)).collect()
}

fn training_charts(i: &Inputs) -> Result<Vec<Block>> {
    let c = curves(i);
    if c.is_empty() {
        return Ok(vec![Block::Para("No training history in this run.".into())]);
    }
    let chart = |title: &str, y: &str, curves: &[&Curve], pick: fn(&Curve) -> &Vec<f64>| Chart {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: y.into(),
        series: curves.iter().map(|t| Series::new(t.name.clone(), per_epoch(pick(t)), Mark::Line)).collect(),
        ..Chart::default()
    };
    // One quantity per axis: the hard-label BCE of the teacher and the scratch student, and
    // the student's distillation objective, which is another loss on another scale.
    let (distilled, bce): (Vec<&Curve>, Vec<&Curve>) = c.iter().partition(|t| t.name == "student");
    let all: Vec<&Curve> = c.iter().collect();
    let mut b = vec![Block::Heading(2, "Training".into())];
    if !bce.is_empty() {
        let caption = "Training loss per epoch: binary cross-entropy on the labels (teacher, and the student architecture trained from scratch).";
        b.push(figure("train-loss", caption, &chart("Training BCE", "BCE", &bce, |t| &t.loss))?);
    }
    if !distilled.is_empty() {
        let caption = "The distilled student's training objective per epoch: α·T²·KL(teacher ‖ student) + (1 − α)·BCE.";
        b.push(figure(
            "distill-loss",
            caption,
            &chart("Distillation objective", "objective", &distilled, |t| &t.loss),
        )?);
    }
    let auc = chart("Validation AUC", "AUC", &all, |t| &t.auc);
    b.push(figure("valid-auc", "Validation AUC per epoch.", &Chart { min_y_span: Some(MIN_AUC_SPAN), ..auc })?);
    Ok(b)
}

/// The narrowest span of an AUC or NDCG axis: narrower, noise between models looks like
/// separation.
const MIN_AUC_SPAN: f64 = 0.05;

/// The baselines' (and the oracle's) values of a metric as labelled reference lines.
fn reference_lines(
    i: &Inputs,
    metric: fn(&crate::pipeline::eval::BaselineEval) -> Option<f64>,
    oracle: bool,
) -> Vec<(f64, String)> {
    let mut lines: Vec<(f64, String)> =
        i.eval.baselines.iter().filter_map(|b| metric(b).map(|v| (v, format!("{} (baseline)", b.name)))).collect();
    if oracle {
        lines.extend(i.eval.oracle_auc.map(|o| (o, "oracle".to_string())));
    }
    lines
}

fn tradeoff_charts(i: &Inputs) -> Result<Vec<Block>> {
    type Pick = fn(&ModelEval) -> (Option<f64>, Option<[f64; 2]>);
    let labelled = |x: &dyn Fn(&ModelEval) -> Option<f64>, y: Pick| -> Vec<Series> {
        i.eval
            .models
            .iter()
            .filter_map(|m| {
                let (v, ci) = y(m);
                Some(Series {
                    name: m.name.clone(),
                    points: vec![(x(m)?, v?)],
                    mark: Mark::Labelled,
                    intervals: vec![ci],
                })
            })
            .collect()
    };
    let chart = |title: &str, x: &str, y: &str, series, h_lines| Chart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        h_lines,
        min_y_span: Some(MIN_AUC_SPAN),
        ..Chart::default()
    };
    let auc: Pick = |m| (m.auc, m.auc_ci95);
    let ndcg: Pick = |m| (m.ndcg10, m.ndcg10_ci95);
    let size = |m: &ModelEval| Some(m.size_bytes as f64 / 1024.0);
    let (auc_lines, ndcg_lines) = (reference_lines(i, |b| b.auc, true), reference_lines(i, |b| b.ndcg10, false));
    let mut b = vec![Block::Heading(2, "Accuracy against cost".into())];
    let note = " Bars: bootstrap 95% intervals; dashed lines: baselines without a model.";
    let c = chart("AUC vs size", "KiB", "test AUC", labelled(&size, auc), auc_lines.clone());
    b.push(figure("auc-vs-size", &format!("Test AUC against artifact size.{note}"), &c)?);
    let c = chart("NDCG@10 vs size", "KiB", "NDCG@10", labelled(&size, ndcg), ndcg_lines);
    b.push(figure("ndcg-vs-size", &format!("NDCG@10 on the ranking queries against artifact size.{note}"), &c)?);
    let speed = labelled(&|m| us_per_row(i, m).0, auc);
    if speed.is_empty() {
        b.push(Block::Para("AUC vs µs/row: not drawn, no timings were recorded.".into()));
    } else {
        let caption = format!("Test AUC against scoring time (1 thread, batches of 4096).{note}");
        b.push(figure("auc-vs-latency", &caption, &chart("AUC vs latency", "µs/row", "test AUC", speed, auc_lines))?);
    }
    Ok(b)
}

fn describe(kind: &str, i: &Inputs) -> String {
    let distill = i.report["stages"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "distill"));
    let t = distill.and_then(|d| d["detail"]["temperature"].as_f64());
    let a = distill.and_then(|d| d["detail"]["alpha"].as_f64());
    match kind {
        "teacher" => "The teacher: embeddings + MLP trained on the labels.".into(),
        "student" => format!(
            "The student: a smaller MLP distilled from the teacher (temperature {}, KL weight {}).",
            t.map_or("?".into(), |t| t.to_string()),
            a.map_or("?".into(), |a| a.to_string())
        ),
        "student-scratch" => {
            "The student's architecture trained on labels only: the comparison that shows what distillation adds."
                .into()
        }
        k if k.ends_with("-int8") => format!("INT8 post-training quantization of the {}.", k.trim_end_matches("-int8")),
        k => format!("A {k} model."),
    }
}

fn parameters(i: &Inputs, kind: &str) -> Option<u64> {
    let stages = i.report["stages"].as_array()?;
    let detail = |name: &str| stages.iter().find(|s| s["name"] == name).map(|s| &s["detail"]);
    match kind.trim_end_matches("-int8") {
        "teacher" => detail("train")?["parameters"].as_u64(),
        "student" => detail("distill")?["student_parameters"].as_u64(),
        "student-scratch" => detail("distill")?["scratch"]["parameters"].as_u64(),
        _ => None,
    }
}

fn split_dates(i: &Inputs) -> String {
    let prepare = i.report["stages"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "prepare"));
    let cuts: Vec<i64> = prepare
        .and_then(|p| p["detail"]["split_times"].as_array())
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    match cuts.as_slice() {
        [a, b] => format!("train before {}, validation until {}, test from {}", date(*a), date(*b), date(*b)),
        _ => "split times not recorded".into(),
    }
}

fn model_card(i: &Inputs, n: usize, m: &ModelEval) -> Result<Vec<Block>> {
    let mut rows = vec![vec![Cell::text("what"), Cell::text(describe(&m.kind, i))]];
    let k = |f: &str| Source::Report(format!("/eval/models/{n}/{f}"));
    if let Some(man) = &i.manifests[n] {
        let spec = &man.feature_spec;
        let cats: Vec<String> = spec
            .categorical
            .iter()
            .zip(&man.architecture.embedding_dims)
            .map(|(c, d)| format!("{} ({d}-d embedding)", c.name))
            .collect();
        let nums: Vec<&str> = spec.numeric.iter().map(|c| c.name.as_str()).collect();
        let arch = &man.architecture;
        let hidden: Vec<String> = arch.hidden.iter().map(usize::to_string).collect();
        let recipe = crate::artifact::sha256_bytes(&serde_json::to_vec(&man.recipe).unwrap_or_default());
        rows.push(vec![Cell::text("data"), Cell::text(format!("{} rows of test; {}", m.rows, split_dates(i)))]);
        rows.push(vec![
            Cell::text("features"),
            Cell::text(format!("{}; numeric: {}", cats.join(", "), nums.join(", "))),
        ]);
        rows.push(vec![
            Cell::text("architecture"),
            Cell::text(format!("embeddings → {} → 1 ({})", hidden.join(" → "), arch.activation)),
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
    rows.push(vec![Cell::text("parameters"), Cell::text(parameters(i, &m.kind).map_or("?".into(), |p| p.to_string()))]);
    rows.push(vec![Cell::text("bytes"), Cell::number(Some(m.size_bytes as f64), 0, k("size_bytes"))]);
    rows.push(vec![Cell::text("AUC"), Cell::number(m.auc, 4, k("auc"))]);
    rows.push(vec![Cell::text("AUC 95% CI (bootstrap)"), Cell::text(ci(m.auc_ci95))]);
    rows.push(vec![Cell::text("NDCG@10"), Cell::number(m.ndcg10, 4, k("ndcg@10"))]);
    rows.push(vec![Cell::text("NDCG@10 95% CI (bootstrap)"), Cell::text(ci(m.ndcg10_ci95))]);
    rows.push(vec![Cell::text("HR@10"), Cell::number(m.hr10, 4, k("hr@10"))]);
    rows.push(vec![Cell::text("logloss"), Cell::number(Some(m.logloss), 4, k("logloss"))]);
    rows.push(vec![Cell::text("ECE"), Cell::number(Some(m.ece), 4, k("ece"))]);
    for g in gates_of(i, &m.name) {
        let gate = &i.verdict.gates[g];
        let value = Cell::number(gate.value, 4, Source::Report(format!("/gates/{g}/value")));
        rows.push(vec![Cell::text(format!("gate {} ({})", gate.name, gate.verdict())), value]);
    }
    let mut b = vec![
        Block::Heading(2, format!("Model card: {}", m.name)),
        Block::Table(vec!["property".into(), "value".into()], rows),
        reliability(m)?,
    ];
    if let Some(q) = quantize_detail(i, &m.kind) {
        b.extend(quantization(m, q)?);
    }
    Ok(b)
}

fn reliability(m: &ModelEval) -> Result<Block> {
    let points: Vec<(f64, f64)> =
        m.calibration.iter().filter_map(|b| Some((b.mean_predicted?, b.observed_rate?))).collect();
    let chart = Chart {
        title: format!("Reliability: {}", m.name),
        x_label: "mean predicted probability".into(),
        y_label: "observed visit rate".into(),
        series: vec![Series::new(m.name.clone(), points, Mark::Line)],
        diagonal: true,
        x_range: Some((0.0, 1.0)),
        y_range: Some((0.0, 1.0)),
        ..Chart::default()
    };
    let caption = format!(
        "Reliability diagram of {} on the test split (10 bins; the diagonal is perfect calibration; ECE {:.4}).",
        m.name, m.ece
    );
    figure(&format!("reliability-{}", m.name), &caption, &chart)
}

/// The quantize stage's summary for an INT8 kind.
fn quantize_detail<'a>(i: &'a Inputs, kind: &str) -> Option<&'a Value> {
    let parent = kind.strip_suffix("-int8")?;
    let stages = i.report["stages"].as_array()?;
    stages.iter().find(|s| s["name"] == format!("quantize-{parent}")).map(|s| &s["detail"])
}

fn quantization(m: &ModelEval, q: &Value) -> Result<Vec<Block>> {
    let mut b = Vec::new();
    for layer in q["layers"].as_array().into_iter().flatten() {
        let h = &layer["histogram"];
        let (lo, hi) = (h["lo"].as_f64().unwrap_or(0.0), h["hi"].as_f64().unwrap_or(1.0));
        let counts: Vec<f64> =
            h["counts"].as_array().map(|c| c.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        let width = (hi - lo) / counts.len().max(1) as f64;
        let bars = counts.iter().enumerate().map(|(k, &c)| (lo + k as f64 * width, c)).collect();
        let n = layer["layer"].as_u64().unwrap_or(0);
        let sqnr = layer["sqnr_db"].as_f64().map_or_else(|| "exact".into(), |s| format!("{s:.1} dB"));
        let range = layer["range"].as_array().map(|r| r.iter().filter_map(Value::as_f64).collect::<Vec<_>>());
        let markers = match range.as_deref() {
            Some([a, b]) => vec![(*a, format!("{a:.2}")), (*b, format!("{b:.2}"))],
            _ => Vec::new(),
        };
        let range_text = match range.as_deref() {
            Some([a, b]) => format!("calibrated range [{a:.3}, {b:.3}]"),
            _ => "dynamic range (per batch)".into(),
        };
        let chart = Chart {
            title: format!("{} layer {n} input: SQNR {sqnr}", m.name),
            x_label: "activation value".into(),
            y_label: "count".into(),
            series: vec![Series::new(format!("layer {n}"), bars, Mark::Bars(width))],
            markers,
            ..Chart::default()
        };
        let caption =
            format!("Layer {n}'s input on the first calibration chunk, {range_text}; SQNR of its INT8 output {sqnr}.");
        b.push(figure(&format!("activations-{}-layer{n}", m.name), &caption, &chart)?);
    }
    let scatter: Vec<(f64, f64)> =
        q["scatter"].as_array().into_iter().flatten().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
    let steps = q["steps"].as_array().map_or(&[][..], Vec::as_slice);
    let agreement = steps.last().and_then(|s| s["top10_jaccard"].as_f64());
    let chart = Chart {
        title: format!("{}: INT8 vs float logits", m.name),
        x_label: "float logit".into(),
        y_label: "INT8 logit".into(),
        series: vec![Series::new("test rows (sampled)", scatter, Mark::Points)],
        diagonal: true,
        ..Chart::default()
    };
    let caption = format!(
        "INT8 against float logits on sampled test rows; top-10 agreement (Jaccard@10 over ranking queries) of the final model: {}.",
        agreement.map_or_else(|| "not measurable".into(), |j| format!("{j:.4}"))
    );
    b.push(figure(&format!("scatter-{}", m.name), &caption, &chart)?);
    let rows = steps
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_f64();
            vec![
                Cell::text(format!("{}", s["float_layers"])),
                Cell::text(f("delta_auc").map_or("not measurable".into(), |v| format!("{v:+.5}"))),
                Cell::text(f("delta_ndcg").map_or("not measurable".into(), |v| format!("{v:+.5}"))),
                Cell::text(f("top10_jaccard").map_or("not measurable".into(), |v| format!("{v:.4}"))),
                Cell::text(if s["passed"] == Value::Bool(true) { "holds" } else { "fails" }),
            ]
        })
        .collect();
    let head = ["float layers", "ΔAUC", "ΔNDCG@10", "Jaccard@10", "gate"].map(String::from).to_vec();
    b.push(Block::Para("Accuracy gate, one row per fallback step:".into()));
    b.push(Block::Table(head, rows));
    Ok(b)
}

fn gates(i: &Inputs) -> Vec<Block> {
    let rows = i
        .verdict
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

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn to_markdown(title: &str, blocks: &[Block]) -> String {
    let mut s = format!("# {title}\n\n");
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "{} {t}\n", "#".repeat(*level));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "{t}\n");
            }
            Block::Table(head, rows) => {
                let _ = writeln!(s, "| {} |", head.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | "));
                let _ = writeln!(s, "|{}|", vec!["---"; head.len()].join("|"));
                for r in rows {
                    let _ = writeln!(s, "| {} |", r.iter().map(|c| md_escape(&c.text)).collect::<Vec<_>>().join(" | "));
                }
                s.push('\n');
            }
            Block::Figure { id, caption, .. } => {
                let _ = writeln!(s, "![{caption}](report/{id}.svg)\n\n*{caption}*\n");
            }
        }
    }
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown's `**bold**` as `<strong>` (the only inline markup the report uses).
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (k, part) in html_escape(s).split("**").enumerate() {
        if k % 2 == 1 {
            let _ = write!(out, "<strong>{part}</strong>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn html_cell(c: &Cell) -> String {
    match &c.number {
        Some((v, src)) => {
            let (source, key) = match src {
                Source::Report(k) => ("report", k),
                Source::Timings(k) => ("timings", k),
            };
            format!(
                "<td class=\"num\" data-source=\"{source}\" data-key=\"{}\" data-value=\"{v}\">{}</td>",
                html_escape(key),
                html_escape(&c.text)
            )
        }
        None => format!("<td>{}</td>", inline(&c.text)),
    }
}

/// The SVG without its XML declaration, to sit inside HTML.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |at| &svg[at..])
}

fn to_html(title: &str, blocks: &[Block]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        html_escape(title),
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}figcaption{color:#555;font-size:.9em}",
        html_escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, t) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", html_escape(t));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "<p>{}</p>", inline(t));
            }
            Block::Table(head, rows) => {
                s.push_str("<table>\n<tr>");
                for h in head {
                    let _ = write!(s, "<th>{}</th>", html_escape(h));
                }
                s.push_str("</tr>\n");
                for r in rows {
                    let _ = writeln!(s, "<tr>{}</tr>", r.iter().map(html_cell).collect::<String>());
                }
                s.push_str("</table>\n");
            }
            Block::Figure { id, caption, svg, points } => {
                let _ = writeln!(
                    s,
                    "<figure data-plot=\"{}\" data-points=\"{points}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
                    html_escape(id),
                    inline_svg(svg),
                    html_escape(caption)
                );
            }
        }
    }
    s.push_str("</body>\n</html>\n");
    s
}
