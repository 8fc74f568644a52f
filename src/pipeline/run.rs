//! `run`: the whole pipeline from one recipe — synth (when the data is missing), prepare,
//! train, eval — with quality gates and one JSON report (`<out>/report.json`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::schema::FilesConfig;
use crate::data::synth::{self, SynthParams};
use crate::error::{Error, IoContext, Result};
use crate::pipeline::distill::{DistillJob, distill};
use crate::pipeline::eval::{EvalReport, ModelEval, evaluate};
use crate::pipeline::paths::RunPaths;
use crate::pipeline::prepare::prepare;
use crate::pipeline::quantize::{QuantizeJob, QuantizeOptions, QuantizeSummary, quantize};
use crate::pipeline::train::{TrainJob, train};
use crate::progress::Progress;
use crate::recipe::{DataConfig, Recipe};

/// One stage that ran.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Stage summary.
    pub detail: serde_json::Value,
}

/// One quality gate.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// Gate name.
    pub name: String,
    /// Measured value; `null` when it could not be measured (then the gate fails).
    pub value: Option<f64>,
    /// Threshold.
    pub threshold: f64,
    /// Whether it held.
    pub passed: bool,
}

impl GateReport {
    /// A gate on `value`: it holds when the value was measured, is finite and `holds(value)`.
    fn new(name: impl Into<String>, value: Option<f64>, threshold: f64, holds: impl Fn(f64) -> bool) -> Self {
        let value = value.filter(|v| v.is_finite());
        Self { name: name.into(), value, threshold, passed: value.is_some_and(holds) }
    }
}

/// The run report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Recipe name.
    pub recipe: String,
    /// Output root.
    pub out: String,
    /// Stages in order.
    pub stages: Vec<StageReport>,
    /// Test-split evaluation of every model built.
    pub eval: EvalReport,
    /// Gates checked.
    pub gates: Vec<GateReport>,
    /// True when every gate passed.
    pub passed: bool,
    /// Total wall time, seconds.
    pub seconds: f64,
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The raw tables of a recipe, generating synthetic data when it is missing. Returns their
/// description and, for synthetic data, the synth stage report (generated or reused).
pub fn ensure_raw(recipe: &Recipe, paths: &RunPaths) -> Result<(FilesConfig, Option<StageReport>)> {
    match &recipe.data {
        DataConfig::Files(files) => Ok((files.as_ref().clone(), None)),
        DataConfig::Synth(s) => {
            let raw = paths.raw();
            let params = SynthParams { users: s.users, places: s.places, days: s.days, seed: recipe.seed };
            // Reuse raw/ only when it was generated with these very settings; the stage is
            // reported the same either way (its summary is recorded in synth.json), so a rerun's
            // report is byte-identical to the first.
            if raw.join("interactions.parquet").is_file()
                && let Some(summary) = made_with(&raw, &params)
            {
                let report = StageReport { name: "synth".into(), seconds: 0.0, detail: summary };
                return Ok((FilesConfig::in_dir(&raw), Some(report)));
            }
            let start = Instant::now();
            let summary = synth::generate(params, &raw)?;
            let report =
                StageReport { name: "synth".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&summary) };
            Ok((FilesConfig::in_dir(&raw), Some(report)))
        }
    }
}

/// The recorded summary, when `raw/synth.json` records exactly `params`.
fn made_with(raw: &Path, params: &SynthParams) -> Option<serde_json::Value> {
    let recorded = std::fs::read(raw.join("synth.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())?;
    (recorded.get("params") == Some(&json(params))).then(|| recorded.get("summary").cloned()).flatten()
}

/// Runs every stage of `recipe` under `paths`; `resume` continues interrupted trainings from
/// their checkpoints (the result is the same as an uninterrupted run's).
pub fn run(recipe: &Recipe, paths: &RunPaths, resume: bool, progress: &dyn Progress) -> Result<RunReport> {
    let t0 = Instant::now();
    // A report left by an earlier run must not vouch for models this run may fail to rebuild.
    for stale in [paths.report(), paths.timings()] {
        if stale.exists() {
            std::fs::remove_file(&stale).at(&stale)?;
        }
    }
    let mut stages = Vec::new();
    let (raw, synth_stage) = ensure_raw(recipe, paths)?;
    stages.extend(synth_stage);

    let start = Instant::now();
    progress.log("prepare: building features");
    let prep = prepare(&raw, &paths.features(), &recipe.prepare, recipe.seed, progress)?;
    stages.push(StageReport { name: "prepare".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&prep) });

    let start = Instant::now();
    let recipe_json = json(recipe);
    let teacher_dir = paths.stage("teacher");
    let job = TrainJob {
        features: &paths.features(),
        out: &teacher_dir,
        checkpoints: &paths.checkpoints("teacher"),
        resume,
        cfg: &recipe.train,
        seed: recipe.seed,
        recipe: recipe_json,
    };
    let summary = train(&job, progress)?;
    stages.push(StageReport { name: "train".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&summary) });

    let start = Instant::now();
    let student_train = recipe.distill.student_train(&recipe.train);
    let (student_dir, scratch_dir) = (paths.stage("student"), paths.stage("student-scratch"));
    let djob = DistillJob {
        teacher: &teacher_dir,
        features: &paths.features(),
        out: &student_dir,
        scratch_out: &scratch_dir,
        checkpoints: &paths.out.join("checkpoints"),
        cfg: &recipe.distill,
        train: &student_train,
        seed: recipe.seed,
        recipe: json(recipe),
        resume,
    };
    let dsum = distill(&djob, progress)?;
    stages.push(StageReport { name: "distill".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&dsum) });

    let test = paths.features().join("test.parquet");
    let ranking = paths.features().join("ranking.parquet");
    let q = &recipe.quantize;
    let opts = QuantizeOptions {
        calibrator: q.calibrator.parse().map_err(Error::input)?,
        per_channel: q.per_channel,
        dynamic: q.dynamic,
        weight_bits: q.weight_bits,
        max_auc_drop: q.max_auc_drop,
        max_ndcg_drop: q.max_ndcg_drop,
    };
    let mut quantized: Vec<(String, PathBuf)> = Vec::new();
    let mut qsums: Vec<QuantizeSummary> = Vec::new();
    let parents: Vec<&str> = if q.teacher { vec!["teacher", "student"] } else { vec!["student"] };
    for parent in parents {
        let start = Instant::now();
        let out = paths.stage(&format!("{parent}-int8"));
        let job = QuantizeJob {
            model: &paths.stage(parent),
            calibration: &paths.features().join("calibration.parquet"),
            test: &test,
            ranking: Some(&ranking),
            out: &out,
            opts,
            keep_float: &[],
        };
        let s = quantize(&job, progress)?;
        stages.push(StageReport {
            name: format!("quantize-{parent}"),
            seconds: start.elapsed().as_secs_f64(),
            detail: json(&s),
        });
        quantized.push((parent.to_string(), out));
        qsums.push(s);
    }

    let start = Instant::now();
    let mut models = vec![teacher_dir, student_dir];
    if recipe.distill.scratch_baseline {
        models.push(scratch_dir);
    }
    models.extend(quantized.into_iter().map(|(_, p)| p));
    let eval = evaluate(&models, &test, Some(&ranking))?;
    stages.push(StageReport { name: "eval".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&eval) });

    let mut gates = check_gates(recipe, &eval);
    for s in &qsums {
        let kind = s.kind.replace('-', "_");
        let (max_auc, max_ndcg) = (s.options.max_auc_drop, s.options.max_ndcg_drop);
        let (d_auc, d_ndcg) = (s.delta_auc.map(f64::abs), s.delta_ndcg.map(f64::abs));
        gates.push(GateReport::new(format!("{kind}_abs_delta_auc"), d_auc, max_auc, |d| d <= max_auc));
        gates.push(GateReport::new(format!("{kind}_abs_delta_ndcg"), d_ndcg, max_ndcg, |d| d <= max_ndcg));
    }
    // ONNX next to every deliverable (teacher, student and their INT8 models) that passed its
    // own gate; the scratch baseline is only a comparison.
    let start = Instant::now();
    let mut exports = Vec::new();
    for dir in models.iter().filter(|d| !d.ends_with("student-scratch")) {
        if crate::artifact::open(dir)?.status == crate::artifact::manifest::Status::Ok {
            exports.push(crate::pipeline::export::export(dir, None, crate::onnx::IdLookup::Auto)?);
        }
    }
    stages.push(StageReport { name: "export".into(), seconds: start.elapsed().as_secs_f64(), detail: json(&exports) });

    let passed = gates.iter().all(|g| g.passed);
    let report = RunReport {
        recipe: recipe.name.clone(),
        out: paths.out.display().to_string(),
        stages,
        eval,
        gates,
        passed,
        seconds: t0.elapsed().as_secs_f64(),
    };
    // The files hold no timings and no absolute paths (same recipe, data, seed -> same bytes);
    // the timings go to their own file.
    let (stable, timings) = crate::pipeline::stable::for_file(json(&report), &paths.out);
    write_json(&paths.timings(), &timings)?;
    write_json(&paths.report(), &stable)?;
    Ok(report)
}

fn find<'a>(eval: &'a EvalReport, kind: &str) -> Option<&'a ModelEval> {
    eval.models.iter().find(|m| m.kind == kind)
}

/// Evaluates the recipe's gates against the evaluation.
pub fn check_gates(recipe: &Recipe, eval: &EvalReport) -> Vec<GateReport> {
    let g = &recipe.gates;
    let mut gates = Vec::new();
    let teacher = find(eval, "teacher");
    let student = find(eval, "student");
    // A gate the recipe sets is checked; a metric it cannot measure fails it.
    if let Some(max_gap) = g.max_teacher_oracle_auc_gap {
        let gap = eval.oracle_auc.zip(teacher.and_then(|t| t.auc)).map(|(o, a)| o - a);
        gates.push(GateReport::new("teacher_oracle_auc_gap", gap, max_gap, |v| v <= max_gap));
    }
    let retention = |t: Option<f64>, s: Option<f64>| t.zip(s).map(|(t, s)| s / t);
    if let Some(min) = g.min_student_auc_retention {
        let r = retention(teacher.and_then(|t| t.auc), student.and_then(|s| s.auc));
        gates.push(GateReport::new("student_auc_retention", r, min, |v| v >= min));
    }
    if let Some(min) = g.min_student_ndcg_retention {
        let r = retention(teacher.and_then(|t| t.ndcg10), student.and_then(|s| s.ndcg10));
        gates.push(GateReport::new("student_ndcg_retention", r, min, |v| v >= min));
    }
    gates
}

/// Writes JSON through a temporary file renamed into place.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    crate::artifact::write_atomic(path, |mut f| std::io::Write::write_all(&mut f, &bytes).at(path))
}
