//! `distill`: a compressed student trained on the teacher's soft targets (DESIGN §5).
//!
//! The student has the teacher's inputs with hidden widths and embedding dims scaled by the
//! ratio. Its loss is `alpha · T² · BernoulliKL(sigmoid(t/T) || sigmoid(s/T)) + (1 - alpha) ·
//! BCE(s, y)` ([`crate::model::loss::distillation`]), plus with `distill.listwise` a ranking
//! term: the KL between the teacher's and the student's softmax at T over each group of
//! candidates of one user at one moment ([`Groups`], whole groups shuffled into batches).
//! Teacher logits are computed once with the serving runtime and cached for all epochs. Optionally the same student is trained from
//! scratch on hard labels (same epochs and seed) as the baseline distillation must beat.

use std::path::Path;

use serde::Serialize;

use crate::model::loss::DistillWeights;
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
    /// Seed.
    pub seed: u64,
    /// Resolved recipe for the manifest.
    pub recipe: serde_json::Value,
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
    /// Candidate groups the listwise term was taken over (none when it was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_groups: Option<usize>,
    /// Compression ratio.
    pub ratio: f64,
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

/// Validates settings and inputs, then trains (and writes) the student and the baseline.
pub fn distill(job: &DistillJob<'_>, progress: &dyn Progress) -> Result<DistillSummary> {
    job.cfg.validate()?;
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
    let teacher_logits = train.map_rows(&spec, |cols| teacher.logits(cols))?;
    let (listwise, groups) = listwise_groups(job, &spec, progress)?;
    let arch = student_architecture(&teacher.arch, job.cfg.ratio);
    let student_input = FitInput {
        spec: &spec,
        arch: &arch,
        train: &train,
        valid: &valid,
        cfg: job.train,
        seed: job.seed,
        label: "student",
        checkpoints: &job.checkpoints.join("student"),
        resume: job.resume,
        objective: Objective::Distill {
            teacher_logits: &teacher_logits,
            weights: DistillWeights { temperature: job.cfg.temperature, alpha: job.cfg.alpha, listwise },
            groups: groups.as_ref().map(|g| g.of_row.as_slice()),
        },
    };
    let student = train_student(job, &student_input, &manifest, progress)?;
    let scratch = if job.cfg.scratch_baseline { Some(train_scratch(job, &student_input, progress)?) } else { None };
    Ok(DistillSummary {
        teacher_parameters: teacher.arch.parameter_count(&spec),
        student_parameters: arch.parameter_count(&spec),
        student,
        scratch,
        teacher_content_sha256: manifest.content_hash(),
        temperature: job.cfg.temperature,
        alpha: job.cfg.alpha,
        listwise,
        candidate_groups: groups.as_ref().map(|g| g.count),
        ratio: job.cfg.ratio,
    })
}

/// Mean rows per group below which an unset `distill.listwise` stays off (the rows are mostly
/// alone at their moment: a listwise term would see almost nothing).
const MIN_MEAN_GROUP: f64 = 1.5;

/// The listwise weight in effect and the training rows' candidate groups it needs: the
/// recipe's weight (refused when the rows have no timestamps), or with none set,
/// [`DEFAULT_LISTWISE`] when the rows come in groups of [`MIN_MEAN_GROUP`] or more on average.
fn listwise_groups(job: &DistillJob<'_>, spec: &FeatureSpec, progress: &dyn Progress) -> Result<(f64, Option<Groups>)> {
    if job.cfg.listwise == Some(0.0) {
        return Ok((0.0, None));
    }
    let train = job.features.join("train.parquet");
    let groups = Groups::read(&train, spec)?;
    let (weight, groups) = match (job.cfg.listwise, groups) {
        (Some(_), None) => {
            return Err(Error::input(format!(
                "{}: no {TIMESTAMP} column: distill.listwise groups the candidates of one user at one moment by it (prepare writes it); set distill.listwise = 0",
                train.display()
            )));
        }
        (Some(w), Some(g)) => (w, Some(g)),
        (None, Some(g)) if g.mean_size() >= MIN_MEAN_GROUP => (DEFAULT_LISTWISE, Some(g)),
        (None, g) => {
            let why = g.map_or(format!("no {TIMESTAMP} column"), |g| format!("{:.2} rows a group", g.mean_size()));
            progress.log(&format!("distill: listwise term off (training rows not in candidate groups: {why})"));
            return Ok((0.0, None));
        }
    };
    if let Some(g) = &groups {
        progress.log(&format!(
            "distill: listwise weight {weight} over {} candidate groups of one user at one moment ({:.1} rows each)",
            g.count,
            g.mean_size()
        ));
    }
    Ok((weight, groups))
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
            "baseline_for": "student",
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
