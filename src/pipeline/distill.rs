//! `distill`: a compressed student trained on the teacher's soft targets (DESIGN §5).
//!
//! The student has the teacher's inputs with hidden widths and embedding dims scaled by the
//! ratio. Its loss is `alpha · T² · BernoulliKL(sigmoid(t/T) || sigmoid(s/T)) + (1 - alpha) ·
//! BCE(s, y)` ([`crate::model::loss::distillation`]), plus with `distill.listwise` a ranking
//! term: the KL between the teacher's and the student's softmax at T over each group of
//! candidates of one user at one moment ([`Groups`], whole groups shuffled into batches).
//! Teacher logits are computed once with the serving runtime and cached for all epochs. Optionally the same student is trained from
//! scratch on hard labels (same epochs and seed) as the baseline distillation must beat.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::chunks::Split;
use crate::metrics;
use crate::model::loss::DistillWeights;
use crate::pipeline::prepare::labels::LabelSource;
use crate::pipeline::train::groups::TIMESTAMP;
use crate::pipeline::train::{
    ArtifactMeta, FitInput, Groups, Objective, TrainSummary, fit, load_spec, load_splits, write_float_artifact,
};
use crate::progress::Progress;
use crate::recipe::{DEFAULT_LISTWISE, DistillConfig, TrainConfig};
use reco_runtime::artifact::Manifest;
use reco_runtime::artifact::manifest::{Architecture, Kind, Lineage, Status};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::FloatModel;

/// The loss definition recorded in student manifests.
pub const LOSS: &str = "alpha * T^2 * mean[p*log(p/q) + (1-p)*log((1-p)/(1-q))] + (1 - alpha) * mean BCEWithLogits(s, y); p = sigmoid(t/T), q = sigmoid(s/T), computed with log-sigmoid";
/// The listwise term added to [`LOSS`] when its weight is not 0.
pub const LISTWISE_LOSS: &str = " + listwise * T^2 * mean over groups g of KL(softmax_g(t/T) || softmax_g(s/T)); a group: the training rows of one user at one timestamp, batched whole";

/// The loss definition of a student distilled with `listwise` as the listwise weight.
pub fn loss_definition(listwise: f64) -> String {
    if listwise > 0.0 { format!("{LOSS}{LISTWISE_LOSS}") } else { LOSS.to_string() }
}

/// Inputs of a distillation run.
#[derive(Clone, Copy)]
pub struct DistillJob<'a> {
    /// Teacher artifact directory.
    pub teacher: &'a Path,
    /// Features directory (must match the teacher's feature spec).
    pub features: &'a Path,
    /// Student artifact directory.
    pub out: &'a Path,
    /// Scratch-baseline artifact directory (written when the config asks for it).
    pub scratch_out: &'a Path,
    /// Checkpoint root (`student/`, `student-scratch/` below it).
    pub checkpoints: &'a Path,
    /// Distillation settings.
    pub cfg: &'a DistillConfig,
    /// Training settings (the teacher's, with the distill overrides applied by the caller).
    pub train: &'a TrainConfig,
    /// The teacher's own training settings (for the ensemble's other teachers).
    pub teacher_train: &'a TrainConfig,
    /// Seed.
    pub seed: u64,
    /// Resolved recipe for the manifest.
    pub recipe: &'a serde_json::Value,
    /// Continue interrupted student trainings from their checkpoints (`--resume`).
    pub resume: bool,
}

/// What distillation produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DistillSummary {
    /// The distilled student.
    pub student: TrainSummary,
    /// The scratch baseline, if trained.
    pub scratch: Option<TrainSummary>,
    /// Content hash of the teacher.
    pub teacher_content_sha256: String,
    /// Teacher parameters.
    pub teacher_parameters: usize,
    /// Student parameters.
    pub student_parameters: usize,
    /// Temperature.
    pub temperature: f64,
    /// Soft-term weight.
    pub alpha: f64,
    /// Listwise-term weight.
    #[serde(default)]
    pub listwise: f64,
    /// The ensemble of teachers the soft targets came from (none: the teacher alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleSummary>,
    /// The other sizes of a sweep (`distill.ratios`), each with its own scratch baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<DistillSummary>,
    /// Candidate groups the listwise term was taken over (none when it was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_groups: Option<usize>,
    /// Compression ratio.
    pub ratio: f64,
}

/// The teachers whose mean logit was the soft target.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EnsembleSummary {
    /// Seeds of the teachers (the teacher's first).
    pub seeds: Vec<u64>,
    /// Validation AUC of the teacher alone.
    pub teacher_valid_auc: f64,
    /// Validation AUC of the teachers' mean logit.
    pub ensemble_valid_auc: f64,
}

/// The student architecture: every hidden width and embedding dim times `ratio`, at least 1,
/// and the teacher's interaction term (its paired embeddings, equal in the teacher, are scaled
/// alike, so they stay equal).
pub fn student_architecture(teacher: &Architecture, ratio: f64) -> Architecture {
    let scale = |d: usize| ((d as f64 * ratio).round() as usize).max(1);
    Architecture {
        embedding_dims: teacher.embedding_dims.iter().map(|&d| scale(d)).collect(),
        hidden: teacher.hidden.iter().map(|&d| scale(d)).collect(),
        activation: teacher.activation.clone(),
        interaction: teacher.interaction,
    }
}

/// One more size of a sweep: its ratio and where its student and baseline go.
#[derive(Debug, Clone)]
pub struct SweepSize {
    /// Compression ratio.
    pub ratio: f64,
    /// Distilled student artifact directory.
    pub out: PathBuf,
    /// Scratch-baseline artifact directory.
    pub scratch_out: PathBuf,
}

impl SweepSize {
    /// A sweep size written under `root` as `student-r<ratio>` and `student-scratch-r<ratio>`.
    pub fn under(root: &Path, ratio: f64) -> Self {
        Self {
            ratio,
            out: root.join(format!("student-r{ratio}")),
            scratch_out: root.join(format!("{SCRATCH}-r{ratio}")),
        }
    }
}

/// The name of the scratch baseline's artifact (and the prefix of a sweep's others).
pub const SCRATCH: &str = "student-scratch";

/// Whether the model named `name` is a scratch baseline (a comparison, never a deliverable).
pub fn is_scratch(name: &str) -> bool {
    name.starts_with(SCRATCH)
}

/// The soft targets every student of one teacher learns from, computed once for all sizes.
struct Targets {
    manifest: Manifest,
    teacher: FloatModel,
    spec: FeatureSpec,
    train: Split,
    valid: Split,
    logits: Vec<f32>,
    ensemble: Option<EnsembleSummary>,
    listwise: f64,
    groups: Option<Groups>,
}

/// Validates settings and inputs, then trains (and writes) the student and the baseline.
pub fn distill(job: &DistillJob<'_>, progress: &dyn Progress) -> Result<DistillSummary> {
    distill_sizes(job, &[], progress)
}

/// [`distill`], then a student and baseline for every size of `sweep` from the same soft
/// targets (recorded in the summary's `sweep`).
pub fn distill_sizes(job: &DistillJob<'_>, sweep: &[SweepSize], progress: &dyn Progress) -> Result<DistillSummary> {
    job.cfg.validate()?;
    let targets = soft_targets(job, progress)?;
    let ratios: Vec<f64> = std::iter::once(job.cfg.ratio).chain(sweep.iter().map(|s| s.ratio)).collect();
    let archs: Vec<Architecture> = ratios.iter().map(|&r| student_architecture(&targets.teacher.arch, r)).collect();
    if let Some((i, j)) =
        (0..archs.len()).flat_map(|j| (0..j).map(move |i| (i, j))).find(|&(i, j)| archs[i] == archs[j])
    {
        return Err(Error::input(format!(
            "distill ratios {} and {} give the same student (hidden {:?}, embeddings {:?}): keep one",
            ratios[i], ratios[j], archs[j].hidden, archs[j].embedding_dims
        )));
    }
    let mut summary = students(job, &targets, progress)?;
    for size in sweep {
        let cfg = DistillConfig { ratio: size.ratio, ..job.cfg.clone() };
        let checkpoints = job.checkpoints.join(format!("r{}", size.ratio));
        let sub =
            DistillJob { out: &size.out, scratch_out: &size.scratch_out, cfg: &cfg, checkpoints: &checkpoints, ..*job };
        summary.sweep.push(students(&sub, &targets, progress)?);
    }
    Ok(summary)
}

/// The teacher, the splits and the soft targets (the teacher's logits or its ensemble's, and
/// the candidate groups of the listwise term).
fn soft_targets(job: &DistillJob<'_>, progress: &dyn Progress) -> Result<Targets> {
    let (manifest, teacher) = open_teacher(job)?;
    let spec = load_spec(job.features)?;
    if spec != teacher.spec {
        let what = if spec.input_names() != teacher.spec.input_names() {
            "its input columns differ"
        } else {
            "its vocabularies or normalization differ"
        };
        return Err(Error::input(format!(
            "{}: the teacher's feature spec does not match {} ({what}); distill on the features the teacher was trained on",
            job.teacher.display(),
            job.features.join("feature_spec.json").display()
        )));
    }
    let (train, valid) = load_splits(job.features, &spec, job.train.max_rows_in_memory)?;
    progress.log("distill: computing teacher logits (once, cached for every epoch)");
    let logits = train.map_rows(&spec, |cols| teacher.logits(cols))?;
    let (logits, ensemble) = ensemble_logits(job, &spec, (&train, &valid), &teacher, logits, progress)?;
    let (listwise, groups) = listwise_groups(job, &spec, progress)?;
    Ok(Targets { manifest, teacher, spec, train, valid, logits, ensemble, listwise, groups })
}

/// The student at `job.cfg.ratio` and, when asked, its scratch baseline.
fn students(job: &DistillJob<'_>, t: &Targets, progress: &dyn Progress) -> Result<DistillSummary> {
    let arch = student_architecture(&t.teacher.arch, job.cfg.ratio);
    let student_input = FitInput {
        spec: &t.spec,
        arch: &arch,
        train: &t.train,
        valid: &t.valid,
        cfg: job.train,
        seed: job.seed,
        label: "student",
        checkpoints: &job.checkpoints.join("student"),
        resume: job.resume,
        objective: Objective::Distill {
            teacher_logits: &t.logits,
            weights: DistillWeights { temperature: job.cfg.temperature, alpha: job.cfg.alpha, listwise: t.listwise },
            groups: t.groups.as_ref().map(|g| g.of_row.as_slice()),
        },
    };
    let student = train_student(job, &student_input, &t.manifest, progress)?;
    let scratch = if job.cfg.scratch_baseline { Some(train_scratch(job, &student_input, progress)?) } else { None };
    Ok(DistillSummary {
        teacher_parameters: t.teacher.arch.parameter_count(&t.spec),
        student_parameters: arch.parameter_count(&t.spec),
        student,
        scratch,
        teacher_content_sha256: t.manifest.content_hash(),
        temperature: job.cfg.temperature,
        alpha: job.cfg.alpha,
        listwise: t.listwise,
        candidate_groups: t.groups.as_ref().map(|g| g.count),
        ensemble: t.ensemble.clone(),
        ratio: job.cfg.ratio,
        sweep: Vec::new(),
    })
}

/// With `distill.teachers = N > 1`, trains `N - 1` more teachers (the teacher's architecture
/// and training settings, seeds `seed + k`; checkpoints `teacher-k/`) and returns the mean
/// logit of all `N` on every training row, with their validation AUC beside the teacher's.
fn ensemble_logits(
    job: &DistillJob<'_>,
    spec: &FeatureSpec,
    (train, valid): (&Split, &Split),
    teacher: &FloatModel,
    logits: Vec<f32>,
    progress: &dyn Progress,
) -> Result<(Vec<f32>, Option<EnsembleSummary>)> {
    let n = job.cfg.teachers;
    if n <= 1 {
        return Ok((logits, None));
    }
    let y_valid = valid.labels(spec, Path::new("valid.parquet"))?;
    let valid_logits = valid.map_rows(spec, |cols| teacher.logits(cols))?;
    let teacher_valid_auc = metrics::auc(&valid_logits, &y_valid).unwrap_or(f64::NAN);
    let (mut sum_train, mut sum_valid) = (widen(&logits), widen(&valid_logits));
    let mut seeds = vec![job.seed];
    for k in 1..n {
        let seed = job.seed.wrapping_add(k as u64);
        let label = format!("teacher-{k}");
        let input = FitInput {
            spec,
            arch: &teacher.arch,
            train,
            valid,
            cfg: job.teacher_train,
            seed,
            label: &label,
            checkpoints: &job.checkpoints.join(&label),
            objective: Objective::Hard,
            resume: job.resume,
        };
        let (weights, _) = fit(&input, progress)?;
        let member = FloatModel::new(spec.clone(), teacher.arch.clone(), weights)?;
        add(&mut sum_train, &train.map_rows(spec, |cols| member.logits(cols))?);
        add(&mut sum_valid, &valid.map_rows(spec, |cols| member.logits(cols))?);
        seeds.push(seed);
    }
    let mean = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| (x / n as f64) as f32).collect() };
    let ensemble_valid_auc = metrics::auc(&mean(sum_valid), &y_valid).unwrap_or(f64::NAN);
    progress.log(&format!(
        "distill: soft targets from {n} teachers: valid AUC {ensemble_valid_auc:.4} (the teacher alone: {teacher_valid_auc:.4})"
    ));
    Ok((mean(sum_train), Some(EnsembleSummary { seeds, teacher_valid_auc, ensemble_valid_auc })))
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn add(sum: &mut [f64], v: &[f32]) {
    for (s, &x) in sum.iter_mut().zip(v) {
        *s += f64::from(x);
    }
}

/// Mean rows per group below which an unset `distill.listwise` stays off (the rows are mostly
/// alone at their moment: a listwise term would see almost nothing).
const MIN_MEAN_GROUP: f64 = 1.5;

/// The listwise weight in effect and the training rows' candidate groups it needs: the
/// recipe's weight (refused when the rows have no timestamps), or with none set,
/// [`DEFAULT_LISTWISE`] when the rows come in groups of [`MIN_MEAN_GROUP`] or more on average
/// and their labels are not ratings (a user's ratings at one moment are not candidates shown
/// together: on MovieLens-100k the term cost the student AUC and NDCG@10).
fn listwise_groups(job: &DistillJob<'_>, spec: &FeatureSpec, progress: &dyn Progress) -> Result<(f64, Option<Groups>)> {
    let train = job.features.join("train.parquet");
    let (weight, groups) = match job.cfg.listwise {
        Some(0.0) => return Ok((0.0, None)),
        Some(w) => {
            let groups = Groups::read(&train, spec)?.ok_or_else(|| {
                Error::input(format!(
                    "{}: no {TIMESTAMP} column: distill.listwise groups the candidates of one user at one moment by it (prepare writes it); set distill.listwise = 0",
                    train.display()
                ))
            })?;
            (w, groups)
        }
        None => match automatic_groups(&train, job.features, spec) {
            Ok(groups) => (DEFAULT_LISTWISE, groups),
            Err(why) => {
                progress.log(&format!("distill: listwise term off ({why})"));
                return Ok((0.0, None));
            }
        },
    };
    progress.log(&format!(
        "distill: listwise weight {weight} over {} candidate groups of one user at one moment ({:.1} rows each)",
        groups.count,
        groups.mean_size()
    ));
    Ok((weight, Some(groups)))
}

/// The groups an unset `distill.listwise` takes the term over, or why it stays off: labels
/// that are ratings (checked first: the groups are not read), no readable timestamps, or
/// groups of fewer than [`MIN_MEAN_GROUP`] rows on average.
fn automatic_groups(train: &Path, features: &Path, spec: &FeatureSpec) -> std::result::Result<Groups, String> {
    if matches!(label_source(features), Some(LabelSource::Rating { .. })) {
        return Err("the labels are ratings: the items a user rated at one moment are not a set of candidates shown together; set distill.listwise to use it".into());
    }
    match Groups::read(train, spec) {
        Err(e) => Err(format!("no candidate groups: {e}")),
        Ok(None) => Err(format!("training rows not in candidate groups: no {TIMESTAMP} column")),
        Ok(Some(g)) if g.mean_size() < MIN_MEAN_GROUP => {
            Err(format!("training rows not in candidate groups: {:.2} rows a group", g.mean_size()))
        }
        Ok(Some(g)) => Ok(g),
    }
}

/// How `prepare` labelled the rows of `features` (its `prepare.json`), when it says.
fn label_source(features: &Path) -> Option<LabelSource> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        summary: Summary,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        labels: LabelSource,
    }
    let text = std::fs::read(features.join("prepare.json")).ok()?;
    serde_json::from_slice::<Recorded>(&text).ok().map(|r| r.summary.labels)
}

/// The teacher: a float teacher artifact whose gates passed.
fn open_teacher(job: &DistillJob<'_>) -> Result<(Manifest, FloatModel)> {
    let (manifest, teacher) = FloatModel::open(job.teacher)?;
    if manifest.kind != Kind::Teacher {
        return Err(Error::input(format!(
            "{}: kind \"{}\", expected a float teacher artifact (kind \"teacher\")",
            job.teacher.display(),
            manifest.kind
        )));
    }
    if manifest.status != Status::Ok {
        let why: Vec<String> = manifest.gate_failures.iter().map(ToString::to_string).collect();
        return Err(Error::input(format!(
            "{}: status failed ({}): a student distilled from it would inherit the failure; fix the teacher first",
            job.teacher.display(),
            if why.is_empty() { "a quality gate failed".to_string() } else { why.join("; ") }
        )));
    }
    Ok((manifest, teacher))
}

/// Trains the distilled student and writes its artifact (lineage: the teacher).
fn train_student(
    job: &DistillJob<'_>,
    input: &FitInput<'_>,
    teacher: &Manifest,
    progress: &dyn Progress,
) -> Result<TrainSummary> {
    let (weights, mut student) = fit(input, progress)?;
    student.dir = job.out.to_path_buf();
    let listwise = match input.objective {
        Objective::Distill { weights, .. } => weights.listwise,
        Objective::Hard => 0.0,
    };
    let teacher_hash = teacher.content_hash();
    let lineage = Lineage {
        parent_content_sha256: teacher_hash.clone(),
        parent_kind: teacher.kind,
        parent_path: crate::outputs::relative(job.out, job.teacher),
    };
    let distillation = serde_json::json!({
        "temperature": job.cfg.temperature,
        "alpha": job.cfg.alpha,
        "listwise": listwise,
        "teachers": job.cfg.teachers,
        "ratio": job.cfg.ratio,
        "teacher_content_sha256": teacher_hash,
        "loss": loss_definition(listwise),
    });
    let meta = ArtifactMeta {
        kind: Kind::Student,
        recipe: job.recipe.clone(),
        seed: job.seed,
        features: job.features,
        lineage: Some(lineage),
        training: serde_json::json!({ "distillation": distillation, "summary": student }),
    };
    write_float_artifact(job.out, input.spec, input.arch, &weights, meta, student.best_valid_auc)?;
    Ok(student)
}

/// Trains the same architecture on the labels alone (the baseline distillation must beat) and
/// writes its artifact.
fn train_scratch(job: &DistillJob<'_>, student: &FitInput<'_>, progress: &dyn Progress) -> Result<TrainSummary> {
    let input = FitInput {
        label: "student-scratch",
        checkpoints: &job.checkpoints.join("student-scratch"),
        objective: Objective::Hard,
        ..*student
    };
    let (weights, mut summary) = fit(&input, progress)?;
    summary.dir = job.scratch_out.to_path_buf();
    let meta = ArtifactMeta {
        kind: Kind::StudentScratch,
        recipe: job.recipe.clone(),
        seed: job.seed,
        features: job.features,
        lineage: None,
        training: serde_json::json!({
            "baseline_for": crate::outputs::dir_name(job.out),
            "ratio": job.cfg.ratio,
            "loss": "mean BCEWithLogits(s, y)",
            "summary": summary,
        }),
    };
    write_float_artifact(job.scratch_out, input.spec, input.arch, &weights, meta, summary.best_valid_auc)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::manifest::{Activation, Interaction};

    #[test]
    fn a_students_dot_pairs_embeddings_scaled_alike() {
        let teacher = Architecture {
            embedding_dims: vec![16, 16, 4],
            hidden: vec![128, 64],
            activation: Activation::Relu,
            interaction: Interaction::Dot,
        };
        let student = student_architecture(&teacher, 0.5);
        assert_eq!(student.embedding_dims, [8, 8, 2]);
        assert_eq!(student.hidden, [64, 32]);
        assert_eq!(student.interaction, Interaction::Dot);
        student.validate().unwrap();
        let none = Architecture { interaction: Interaction::None, ..teacher };
        assert_eq!(student_architecture(&none, 0.3).interaction, Interaction::None);
    }
}
