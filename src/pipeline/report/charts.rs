//! The report's charts: training curves (one quantity per axis), accuracy against size and
//! speed with interval bars and the baselines, reliability diagrams, and per INT8 model its
//! activation histograms, INT8-vs-float scatter and fallback steps.

use super::Inputs;
use super::blocks::{Block, Cell, figure};
use super::plot::{Chart, Mark, Series};
use super::summary::us_per_row;
use crate::pipeline::eval::{BaselineEval, ModelEval};
use crate::pipeline::quantize::QuantizeSummary;
use crate::pipeline::run::reuse::StageDetail;
use reco_runtime::artifact::manifest::Kind;
use reco_runtime::error::Result;

/// A trained model's per-epoch history.
struct Curve {
    name: String,
    loss: Vec<f64>,
    auc: Vec<f64>,
}

/// Per-epoch curves of the trained models.
fn curves(i: &Inputs) -> Vec<Curve> {
    let curve = |name: &str, t: &crate::pipeline::train::TrainSummary| Curve {
        name: name.into(),
        loss: t.train_loss.clone(),
        auc: t.valid_auc.clone(),
    };
    let mut out = Vec::new();
    for s in &i.run.stages {
        match &s.detail {
            StageDetail::Train(t) => out.push(curve("teacher", t)),
            StageDetail::Distill(d) => {
                out.push(curve("student", &d.student));
                out.extend(d.scratch.as_ref().map(|t| curve("student-scratch", t)));
            }
            _ => {}
        }
    }
    out
}

fn per_epoch(values: &[f64]) -> Vec<(f64, f64)> {
    values.iter().enumerate().map(|(e, &v)| ((e + 1) as f64, v)).collect()
}

pub(super) fn training_charts(i: &Inputs) -> Result<Vec<Block>> {
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
fn reference_lines(i: &Inputs, metric: fn(&BaselineEval) -> Option<f64>, oracle: bool) -> Vec<(f64, String)> {
    let mut lines: Vec<(f64, String)> =
        i.run.eval.baselines.iter().filter_map(|b| metric(b).map(|v| (v, format!("{} (baseline)", b.name)))).collect();
    if oracle {
        lines.extend(i.run.eval.oracle_auc.map(|o| (o, "oracle".to_string())));
    }
    lines
}

pub(super) fn tradeoff_charts(i: &Inputs) -> Result<Vec<Block>> {
    type Pick = fn(&ModelEval) -> (Option<f64>, Option<[f64; 2]>);
    let labelled = |x: &dyn Fn(&ModelEval) -> Option<f64>, y: Pick| -> Vec<Series> {
        i.run
            .eval
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
    b.extend(sizes_chart(i)?);
    let speed = labelled(&|m| us_per_row(i, m).0, auc);
    if speed.is_empty() {
        b.push(Block::Para("AUC vs µs/row: not drawn, no timings were recorded.".into()));
    } else {
        let caption = format!("Test AUC against scoring time (1 thread, batches of 4096).{note}");
        b.push(figure("auc-vs-latency", &caption, &chart("AUC vs latency", "µs/row", "test AUC", speed, auc_lines))?);
    }
    Ok(b)
}

/// NDCG@10 against size of the distilled students and of the scratch students, one line each
/// (a size sweep, `distill.ratios`: a point per ratio); nothing without a scratch student.
fn sizes_chart(i: &Inputs) -> Result<Vec<Block>> {
    let line = |name: &str, kind: Kind| -> Option<Series> {
        let mut points: Vec<(f64, f64)> = (i.run.eval.models.iter())
            .filter(|m| m.kind == kind)
            .filter_map(|m| Some((m.size_bytes as f64 / 1024.0, m.ndcg10?)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        (!points.is_empty()).then(|| Series::new(name, points, Mark::Line))
    };
    let (Some(distilled), Some(scratch)) = (line("distilled", Kind::Student), line("scratch", Kind::StudentScratch))
    else {
        return Ok(Vec::new());
    };
    let chart = Chart {
        title: "Distilled and scratch students by size".into(),
        x_label: "KiB".into(),
        y_label: "NDCG@10".into(),
        series: vec![distilled, scratch],
        h_lines: reference_lines(i, |b| b.ndcg10, false),
        min_y_span: Some(MIN_AUC_SPAN),
        ..Chart::default()
    };
    let caption = "NDCG@10 of the distilled students and of the same networks trained on the labels alone, at each size (`distill.ratios`); the distilled-minus-scratch intervals are in the evaluation table.";
    Ok(vec![figure("students-by-size", caption, &chart)?])
}

pub(super) fn reliability(m: &ModelEval) -> Result<Block> {
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

/// The quantize stage's summary of an INT8 model.
pub(super) fn quantize_detail(i: &Inputs, kind: Kind) -> Option<&QuantizeSummary> {
    i.run.stages.iter().find_map(|s| match &s.detail {
        StageDetail::Quantize(q) if q.kind == kind => Some(&**q),
        _ => None,
    })
}

pub(super) fn quantization(m: &ModelEval, q: &QuantizeSummary) -> Result<Vec<Block>> {
    let mut b = Vec::new();
    for layer in &q.layers {
        let h = &layer.histogram;
        let counts: Vec<f64> = h.counts.iter().map(|&c| c as f64).collect();
        let width = (h.hi - h.lo) / counts.len().max(1) as f64;
        let bars = counts.iter().enumerate().map(|(k, &c)| (h.lo + k as f64 * width, c)).collect();
        let n = layer.layer;
        let sqnr = layer.sqnr_db.map_or_else(|| "exact".into(), |s| format!("{s:.1} dB"));
        let markers = match layer.range {
            Some([a, b]) => vec![(a, format!("{a:.2}")), (b, format!("{b:.2}"))],
            None => Vec::new(),
        };
        let range_text = match layer.range {
            Some([a, b]) => format!("calibrated range [{a:.3}, {b:.3}]"),
            None => "dynamic range (per batch)".into(),
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
    let scatter: Vec<(f64, f64)> = q.scatter.iter().map(|[a, b]| (f64::from(*a), f64::from(*b))).collect();
    let steps = &q.steps;
    let agreement = steps.last().and_then(|s| s.top10_jaccard);
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
            let shown = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "not measurable".into(), f);
            vec![
                Cell::text(format!("{:?}", s.float_layers)),
                Cell::text(shown(s.delta_auc, |v| format!("{v:+.5}"))),
                Cell::text(shown(s.delta_ndcg, |v| format!("{v:+.5}"))),
                Cell::text(shown(s.top10_jaccard, |v| format!("{v:.4}"))),
                Cell::text(if s.passed { "holds" } else { "fails" }),
            ]
        })
        .collect();
    let head = ["float layers", "ΔAUC", "ΔNDCG@10", "Jaccard@10", "gate"].map(String::from).to_vec();
    b.push(Block::Para("Accuracy gate, one row per fallback step:".into()));
    b.push(Block::Table(head, rows));
    Ok(b)
}
