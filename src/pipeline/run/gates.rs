//! Quality gates: what each gate judges (one artifact's value against a threshold), its
//! verdict — on the point estimate, or on the bootstrap interval when the recipe asks — and
//! how a verdict reaches the artifacts. A failed gate marks the artifact it judges and every
//! artifact made from it `failed` in their manifests (with the gates that failed), and the
//! run recommends the smallest deliverable whose own and ancestors' gates all hold.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::outputs::dir_name;
use crate::pipeline::eval::{EvalReport, ModelEval};
use crate::recipe::{GateJudge, GatesConfig};
use reco_runtime::artifact::manifest::{GateFailure, Kind, Status};
use reco_runtime::error::{IoContext, Result};

/// One quality gate's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateReport {
    /// Gate name.
    pub name: String,
    /// The artifact it judges (its directory name in the run: `student`, `teacher-int8`).
    pub artifact: String,
    /// Measured value; `null` when it could not be measured (then the gate fails).
    pub value: Option<f64>,
    /// Bootstrap 95% interval of the value (paired where two models are compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// Threshold.
    pub threshold: f64,
    /// What decided the verdict.
    pub judged_on: GateJudge,
    /// Whether it held.
    pub passed: bool,
}

/// Which side of the threshold holds.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// The value must be at most the threshold.
    AtMost,
    /// The value must be at least the threshold.
    AtLeast,
}

impl Bound {
    fn holds(self, v: f64, threshold: f64) -> bool {
        match self {
            Self::AtMost => v <= threshold,
            Self::AtLeast => v >= threshold,
        }
    }
}

/// The verdict of a gate on `value` (with its interval) under `judge`. On the interval, the
/// gate fails only when the whole interval lies on the failing side: the bound nearest to
/// passing decides (the upper bound of an at-least gate, the lower of an at-most one), so a
/// run fails on evidence and never on the noise of one test split. Without an interval the
/// point decides, and the report says so.
fn verdict(
    bound: Bound,
    value: Option<f64>,
    interval: Option<[f64; 2]>,
    threshold: f64,
    judge: GateJudge,
) -> (GateJudge, bool) {
    let value = value.filter(|v| v.is_finite());
    match (judge, interval.filter(|[a, b]| a.is_finite() && b.is_finite())) {
        (GateJudge::Interval, Some([lo, hi])) if value.is_some() => {
            let nearest = match bound {
                Bound::AtMost => lo,
                Bound::AtLeast => hi,
            };
            (GateJudge::Interval, bound.holds(nearest, threshold))
        }
        _ => (GateJudge::Point, value.is_some_and(|v| bound.holds(v, threshold))),
    }
}

impl GateReport {
    fn new(
        name: &str,
        artifact: &str,
        bound: Bound,
        value: Option<f64>,
        interval: Option<[f64; 2]>,
        threshold: f64,
        judge: GateJudge,
    ) -> Self {
        let (judged_on, passed) = verdict(bound, value, interval, threshold, judge);
        let value = value.filter(|v| v.is_finite());
        Self { name: name.into(), artifact: artifact.into(), value, interval, threshold, judged_on, passed }
    }

    /// `PASS`, `FAIL`, or `PASS (inconclusive)` for an interval gate whose interval reaches past
    /// its threshold: it passed because the data cannot show that it fails.
    pub fn verdict(&self) -> &'static str {
        let straddles = self.interval.is_some_and(|[lo, hi]| lo < self.threshold && self.threshold < hi);
        match (self.passed, self.judged_on) {
            (false, _) => "FAIL",
            (true, GateJudge::Interval) if straddles => "PASS (inconclusive)",
            (true, _) => "PASS",
        }
    }

    /// The manifest's record of this gate failing (on `self.artifact` or an ancestor).
    pub fn failure(&self) -> GateFailure {
        GateFailure {
            gate: self.name.clone(),
            artifact: self.artifact.clone(),
            value: self.value,
            threshold: self.threshold,
        }
    }
}

/// The two accuracy gates of an INT8 model against its float parent (judged on the point:
/// `quantize` picks its float layers by them, on the same rows for both models).
pub fn int8_gates(
    artifact: &str,
    (delta_auc, delta_ndcg): (Option<f64>, Option<f64>),
    (max_auc, max_ndcg): (f64, f64),
) -> Vec<GateReport> {
    let prefix = artifact.replace('-', "_");
    let abs = |d: Option<f64>| d.map(f64::abs);
    vec![
        GateReport::new(
            &format!("{prefix}_abs_delta_auc"),
            artifact,
            Bound::AtMost,
            abs(delta_auc),
            None,
            max_auc,
            GateJudge::Point,
        ),
        GateReport::new(
            &format!("{prefix}_abs_delta_ndcg"),
            artifact,
            Bound::AtMost,
            abs(delta_ndcg),
            None,
            max_ndcg,
            GateJudge::Point,
        ),
    ]
}

fn find<'a>(eval: &'a EvalReport, name: &str) -> Option<&'a ModelEval> {
    eval.models.iter().find(|m| m.name == name)
}

/// The recipe's gates on the evaluation (a gate the recipe sets is checked; a metric it cannot
/// measure fails it). The student gates judge the student and every other size of a sweep.
pub fn check(g: &GatesConfig, eval: &EvalReport) -> Vec<GateReport> {
    let mut gates = Vec::new();
    let teacher = find(eval, "teacher");
    if let Some(max_gap) = g.max_teacher_oracle_auc_gap {
        let gap = eval.oracle_auc.zip(teacher.and_then(|t| t.auc)).map(|(o, a)| o - a);
        let ci = teacher.and_then(|t| t.oracle_auc_gap_ci95);
        gates.push(GateReport::new("teacher_oracle_auc_gap", "teacher", Bound::AtMost, gap, ci, max_gap, g.judge));
    }
    gates.extend(student_gates(g, eval, "student"));
    let sweep = eval.models.iter().filter(|m| m.kind == Kind::Student && m.name != "student");
    for m in sweep {
        gates.extend(student_gates(g, eval, &m.name));
    }
    gates
}

/// The retention and distillation-gain gates of the distilled student `name` (absent: each
/// gate the recipe sets fails as not measured).
fn student_gates(g: &GatesConfig, eval: &EvalReport, name: &str) -> Vec<GateReport> {
    let mut gates = Vec::new();
    let (teacher, student) = (find(eval, "teacher"), find(eval, name));
    let paired = student.and_then(|s| s.vs_parent.as_ref()).filter(|p| p.against == "teacher");
    let retention = |t: Option<f64>, s: Option<f64>| t.zip(s).map(|(t, s)| s / t);
    if let Some(min) = g.min_student_auc_retention {
        let r = retention(teacher.and_then(|t| t.auc), student.and_then(|s| s.auc));
        let ci = paired.and_then(|p| p.auc_ratio_ci95);
        gates.push(GateReport::new("student_auc_retention", name, Bound::AtLeast, r, ci, min, g.judge));
    }
    if let Some(min) = g.min_student_ndcg_retention {
        let r = retention(teacher.and_then(|t| t.ndcg10), student.and_then(|s| s.ndcg10));
        let ci = paired.and_then(|p| p.ndcg10_ratio_ci95);
        gates.push(GateReport::new("student_ndcg_retention", name, Bound::AtLeast, r, ci, min, g.judge));
    }
    if let Some(min) = g.min_distill_gain {
        // Distilled minus scratch NDCG@10, paired; no scratch student: not measured, fails.
        let vs = student.and_then(|s| s.vs_scratch.as_ref());
        let scratch = vs.and_then(|p| find(eval, &p.against));
        let gain = student.and_then(|s| s.ndcg10).zip(scratch.and_then(|s| s.ndcg10)).map(|(s, c)| s - c);
        let ci = vs.and_then(|p| p.ndcg10_delta_ci95);
        gates.push(GateReport::new("student_distill_gain_ndcg", name, Bound::AtLeast, gain, ci, min, g.judge));
    }
    gates
}

/// The run's models with their manifests: a directory name, its path, its parent's name in
/// the run (from its lineage) and the manifest.
pub struct RunModels {
    models: Vec<(String, PathBuf, Option<String>, reco_runtime::artifact::Manifest)>,
}

impl RunModels {
    /// Opens each model directory (each must verify).
    pub fn open(dirs: &[PathBuf]) -> Result<Self> {
        let mut opened = Vec::new();
        for d in dirs {
            opened.push((d.clone(), reco_runtime::artifact::open(d)?));
        }
        let artifacts: Vec<(&Path, &reco_runtime::artifact::Manifest)> =
            opened.iter().map(|(d, m)| (d.as_path(), m)).collect();
        let parents = reco_runtime::artifact::parents_among(&artifacts);
        let names: Vec<String> = dirs.iter().map(|d| dir_name(d)).collect();
        let models = opened
            .into_iter()
            .zip(parents)
            .map(|((d, m), p)| (dir_name(&d), d, p.map(|j| names[j].clone()), m))
            .collect();
        Ok(Self { models })
    }

    /// `name` and the names of its ancestors in the run, nearest first.
    fn lineage_of(&self, name: &str) -> Vec<String> {
        let mut chain = vec![name.to_string()];
        while let Some(p) = self.models.iter().find(|m| m.0 == *chain[chain.len() - 1]).and_then(|m| m.2.clone()) {
            if chain.contains(&p) || chain.len() > self.models.len() {
                break;
            }
            chain.push(p);
        }
        chain
    }

    /// The failed gates that reach `name`: its own and its ancestors'.
    fn failures_of(&self, name: &str, gates: &[GateReport]) -> Vec<GateFailure> {
        let chain = self.lineage_of(name);
        gates.iter().filter(|g| !g.passed && chain.contains(&g.artifact)).map(GateReport::failure).collect()
    }

    /// Writes each model's verdict into its manifest: `failed` with the gates that reach it,
    /// or `ok` with none. Returns the directories whose manifest changed, with its new
    /// [`state_hash`](reco_runtime::artifact::Manifest::state_hash).
    pub fn mark(&mut self, gates: &[GateReport]) -> Result<Vec<(PathBuf, String)>> {
        let mut changed = Vec::new();
        for k in 0..self.models.len() {
            let failures = self.failures_of(&self.models[k].0, gates);
            let (_, dir, _, manifest) = &mut self.models[k];
            let status = if failures.is_empty() { Status::Ok } else { Status::Failed };
            // (An export made since with --allow-failed goes too.)
            let stray_export = status == Status::Failed && !manifest.exports.is_empty();
            if manifest.status != status || manifest.gate_failures != failures || stray_export {
                manifest.status = status;
                manifest.gate_failures = failures;
                // A serving system may load an exported file without reading the manifest: a
                // failed artifact keeps none (the manifest first, so it never lists a file
                // that is gone).
                let exports =
                    if status == Status::Failed { std::mem::take(&mut manifest.exports) } else { Default::default() };
                reco_runtime::artifact::rewrite_manifest(dir, manifest)?;
                for e in exports.into_values() {
                    let p = dir.join(&e.file);
                    if p.is_file() {
                        std::fs::remove_file(&p).at(&p)?;
                    }
                }
                changed.push((dir.clone(), manifest.state_hash()));
            }
        }
        Ok(changed)
    }

    /// The models whose own and ancestors' gates all hold.
    pub fn passing(&self, gates: &[GateReport]) -> Vec<String> {
        self.models.iter().filter(|m| self.failures_of(&m.0, gates).is_empty()).map(|m| m.0.clone()).collect()
    }

    /// The smallest deliverable (not the scratch baseline) whose own and ancestors' gates all
    /// hold, by the evaluated size.
    pub fn recommend(&self, eval: &EvalReport, gates: &[GateReport]) -> Option<String> {
        self.models
            .iter()
            .filter(|m| !crate::pipeline::distill::is_scratch(&m.0) && self.failures_of(&m.0, gates).is_empty())
            .filter_map(|m| find(eval, &m.0).map(|e| (e.size_bytes, m.0.clone())))
            .min()
            .map(|(_, n)| n)
    }
}

/// A model that another passing one beats: at most its size and at least its AUC and NDCG@10.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dominated {
    /// The model nobody should ship.
    pub model: String,
    /// The smaller, better one.
    pub by: String,
}

/// Every deliverable some other gate-passing deliverable dominates (the smallest such).
pub fn dominated(eval: &EvalReport, passing: &[String]) -> Vec<Dominated> {
    let deliverable = |m: &&ModelEval| !crate::pipeline::distill::is_scratch(&m.name);
    // At most its size, at least its AUC and NDCG@10, and better in one of the three.
    let beats = |a: &ModelEval, b: &ModelEval| {
        let ge = |x: Option<f64>, y: Option<f64>| x.zip(y).is_some_and(|(x, y)| x >= y);
        let gt = |x: Option<f64>, y: Option<f64>| x.zip(y).is_some_and(|(x, y)| x > y);
        let no_worse = a.size_bytes <= b.size_bytes && ge(a.auc, b.auc) && ge(a.ndcg10, b.ndcg10);
        no_worse && (a.size_bytes < b.size_bytes || gt(a.auc, b.auc) || gt(a.ndcg10, b.ndcg10))
    };
    eval.models
        .iter()
        .filter(deliverable)
        .filter_map(|m| {
            let by = eval.models.iter().filter(deliverable).filter(|b| passing.contains(&b.name) && beats(b, m));
            by.min_by_key(|b| b.size_bytes).map(|b| Dominated { model: m.name.clone(), by: b.name.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::manifest::Kind;

    #[test]
    fn an_interval_fails_a_gate_only_when_all_of_it_is_on_the_failing_side() {
        let at_least = |v, iv, judge| verdict(Bound::AtLeast, Some(v), Some(iv), 0.995, judge);
        // The point misses, the interval reaches the threshold: noise, not evidence.
        assert_eq!(at_least(0.990, [0.985, 0.997], GateJudge::Point), (GateJudge::Point, false));
        assert_eq!(at_least(0.990, [0.985, 0.997], GateJudge::Interval), (GateJudge::Interval, true));
        // The whole interval below: fails either way.
        assert_eq!(at_least(0.990, [0.985, 0.994], GateJudge::Interval), (GateJudge::Interval, false));
        // An at-most gate is decided by the lower bound.
        assert!(verdict(Bound::AtMost, Some(0.03), Some([0.015, 0.04]), 0.02, GateJudge::Interval).1);
        assert!(!verdict(Bound::AtMost, Some(0.03), Some([0.025, 0.04]), 0.02, GateJudge::Interval).1);
        // Without an interval the point decides, and says so; nothing measured fails.
        assert_eq!(verdict(Bound::AtLeast, Some(0.999), None, 0.995, GateJudge::Interval), (GateJudge::Point, true));
        assert!(!verdict(Bound::AtLeast, None, Some([0.99, 1.0]), 0.995, GateJudge::Interval).1);
        assert!(!verdict(Bound::AtLeast, Some(f64::NAN), None, 0.0, GateJudge::Point).1);
    }

    fn model(kind: Kind, size: u64, auc: f64, ndcg: f64) -> ModelEval {
        ModelEval {
            name: kind.to_string(),
            path: kind.to_string(),
            kind,
            auc: Some(auc),
            logloss: 0.5,
            ece: 0.0,
            hr10: None,
            ndcg10: Some(ndcg),
            auc_ci95: None,
            ndcg10_ci95: None,
            calibration: Vec::new(),
            size_bytes: size,
            sizes: None,
            rows: 1,
            us_per_row: 0.0,
            oracle_auc_gap_ci95: None,
            vs_parent: None,
            vs_scratch: None,
        }
    }

    #[test]
    fn a_smaller_model_at_least_as_good_on_both_metrics_dominates() {
        let m = model;
        let eval = EvalReport {
            oracle_auc: None,
            models: vec![
                m(Kind::Student, 168, 0.80, 0.30),
                m(Kind::TeacherInt8, 82, 0.81, 0.30),
                m(Kind::StudentInt8, 40, 0.79, 0.31),
            ],
            baselines: Vec::new(),
        };
        let all: Vec<String> = eval.models.iter().map(|m| m.name.clone()).collect();
        assert_eq!(dominated(&eval, &all), vec![Dominated { model: "student".into(), by: "teacher-int8".into() }]);
        // A failing model dominates nothing.
        assert!(dominated(&eval, &["student".to_string()]).is_empty());
    }

    #[test]
    fn the_distillation_gain_gate_compares_the_student_with_its_scratch_twin() {
        let gate = |student_ndcg: f64, interval: Option<[f64; 2]>, judge: GateJudge, with_scratch: bool| {
            let mut student = model(Kind::Student, 100, 0.8, student_ndcg);
            if with_scratch {
                student.vs_scratch = Some(crate::pipeline::eval::Paired {
                    against: "student-scratch".into(),
                    auc_ratio_ci95: None,
                    ndcg10_ratio_ci95: None,
                    auc_delta_ci95: None,
                    ndcg10_delta_ci95: interval,
                });
            }
            let eval = EvalReport {
                oracle_auc: None,
                models: vec![student, model(Kind::StudentScratch, 100, 0.8, 0.30)],
                baselines: Vec::new(),
            };
            let g = GatesConfig { min_distill_gain: Some(0.0), judge, ..GatesConfig::default() };
            let r = check(&g, &eval).pop().unwrap();
            assert_eq!((r.name.as_str(), r.artifact.as_str()), ("student_distill_gain_ndcg", "student"));
            (r.value.map(|v| (v * 1e4).round() / 1e4), r.passed)
        };
        assert_eq!(gate(0.31, None, GateJudge::Point, true), (Some(0.01), true));
        assert_eq!(gate(0.29, None, GateJudge::Point, true), (Some(-0.01), false));
        // Judged on the interval: fails only when all of it is below the threshold.
        assert_eq!(gate(0.29, Some([-0.02, 0.003]), GateJudge::Interval, true), (Some(-0.01), true));
        assert_eq!(gate(0.29, Some([-0.02, -0.001]), GateJudge::Interval, true), (Some(-0.01), false));
        // No scratch student evaluated: nothing measured, the gate fails.
        assert_eq!(gate(0.31, None, GateJudge::Point, false), (None, false));
    }
}
