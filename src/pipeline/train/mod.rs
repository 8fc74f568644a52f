//! `train`: the teacher (DESIGN §4), and the training loop every float model shares.
//!
//! Hand-written burn loop ([`fit`]): forward, loss ([`Objective`]: BCE with logits, or the
//! distillation objective), backward, AdamW step; validation AUC after every epoch with the
//! serving runtime, a checkpoint each epoch, early stopping, best epoch kept.
//!
//! A split of at most `train.max_rows_in_memory` rows is held whole and reshuffled every epoch.
//! A larger one stays on disk ([`Split::Chunked`]): every epoch visits its row groups in a new
//! random order, a second thread reads them into windows of `train.shuffle_buffer_rows` rows
//! (several row groups from all over the split), and the window's rows are shuffled before
//! they are cut into batches, so that memory is a few windows whatever the data's size.

pub mod artifact;
pub mod checkpoint;
pub mod fit;
pub mod groups;
mod rows;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use artifact::{ArtifactMeta, write_float_artifact};
pub use fit::{FitInput, Objective, fit};
pub use groups::Groups;

use crate::data::chunks::Split;
use crate::progress::Progress;
use crate::recipe::TrainConfig;
use reco_runtime::artifact::manifest::{Architecture, Interaction, Kind};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::error::{Error, Result};

/// Inputs of a teacher training run.
pub struct TrainJob<'a> {
    /// Directory written by `prepare` (feature files + `feature_spec.json`).
    pub features: &'a Path,
    /// Artifact directory to write.
    pub out: &'a Path,
    /// Where per-epoch checkpoints go.
    pub checkpoints: &'a Path,
    /// Continue an interrupted run from its last checkpoint (`--resume`).
    pub resume: bool,
    /// Hyper-parameters.
    pub cfg: &'a TrainConfig,
    /// Seed for initialization and shuffling.
    pub seed: u64,
    /// Resolved recipe, stored in the manifest.
    pub recipe: serde_json::Value,
}

/// What a training loop did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Artifact directory.
    pub dir: PathBuf,
    /// Epochs run.
    pub epochs_run: usize,
    /// The epochs and batch size asked for (the recipe's, or sized to the training rows);
    /// absent from summaries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::recipe::Schedule>,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// True when the kept weights are the midpoint of the best epoch before `best_epoch` and
    /// `best_epoch`'s own (`train.average`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub best_is_midpoint: bool,
    /// Validation AUC of the kept weights.
    pub best_valid_auc: f64,
    /// Mean training throughput, rows per second (forward + backward + step); a file that
    /// holds no timings lacks it.
    #[serde(default)]
    pub rows_per_s: f64,
    /// Training backend.
    pub backend: crate::model::Backend,
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// The epoch whose loss, weights or validation scores were not finite (training stopped
    /// there and kept the best earlier epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_epoch: Option<usize>,
    /// Validation AUC per epoch.
    pub valid_auc: Vec<f64>,
    /// Trainable parameters.
    pub parameters: usize,
}

/// Reads `feature_spec.json` from a features directory.
pub fn load_spec(features: &Path) -> Result<FeatureSpec> {
    let p = features.join("feature_spec.json");
    let text = std::fs::read(&p)
        .map_err(|_| Error::input(format!("{}: missing (run `reco-cli prepare` first)", p.display())))?;
    let spec: FeatureSpec = serde_json::from_slice(&text)
        .map_err(|e| Error::input(format!("{}: invalid feature spec ({e})", p.display())))?;
    spec.validate().map_err(|e| Error::input(format!("{}: {e}", p.display())))?;
    Ok(spec)
}

/// Opens the training and validation splits of a features directory: each held in memory
/// up to `max_rows_in_memory` rows, read a row group at a time past that.
pub fn load_splits(features: &Path, spec: &FeatureSpec, max_rows_in_memory: usize) -> Result<(Split, Split)> {
    let train = Split::open(&features.join("train.parquet"), spec, true, max_rows_in_memory)?;
    let valid = Split::open(&features.join("valid.parquet"), spec, true, max_rows_in_memory)?;
    Ok((train, valid))
}

/// The teacher architecture from the recipe: id columns get `id_embedding_dim`, others
/// `small_embedding_dim`; with a dot interaction the first two columns (user and place, whose
/// rows it multiplies) get `id_embedding_dim` whatever their vocabulary. Refuses an
/// interaction the spec cannot give (fewer than two categorical columns).
pub fn architecture(spec: &FeatureSpec, cfg: &TrainConfig) -> Result<Architecture> {
    let paired = if cfg.interaction == Interaction::Dot { 2 } else { 0 };
    let embedding_dims = spec
        .categorical
        .iter()
        .enumerate()
        .map(|(i, c)| if i < paired || c.len() > 64 { cfg.id_embedding_dim } else { cfg.small_embedding_dim })
        .collect();
    let arch = Architecture {
        embedding_dims,
        hidden: cfg.hidden.clone(),
        activation: reco_runtime::artifact::manifest::Activation::Relu,
        interaction: cfg.interaction,
    };
    arch.validate().map_err(|e| Error::input(format!("train.interaction = \"{}\": {e}", cfg.interaction)))?;
    Ok(arch)
}

/// Trains the teacher and writes its artifact.
pub fn train(job: &TrainJob<'_>, progress: &dyn Progress) -> Result<TrainSummary> {
    let spec = load_spec(job.features)?;
    let arch = architecture(&spec, job.cfg)?;
    let (train, valid) = load_splits(job.features, &spec, job.cfg.max_rows_in_memory)?;
    let input = FitInput {
        spec: &spec,
        arch: &arch,
        train: &train,
        valid: &valid,
        cfg: job.cfg,
        seed: job.seed,
        label: "teacher",
        checkpoints: job.checkpoints,
        objective: Objective::Hard,
        resume: job.resume,
    };
    let (weights, mut summary) = fit(&input, progress)?;
    summary.dir = job.out.to_path_buf();
    let meta = ArtifactMeta {
        kind: Kind::Teacher,
        recipe: job.recipe.clone(),
        seed: job.seed,
        features: job.features,
        lineage: None,
        training: serde_json::to_value(&summary).map_err(|e| Error::Internal(e.to_string()))?,
    };
    write_float_artifact(job.out, &spec, &arch, &weights, meta, summary.best_valid_auc)?;
    Ok(summary)
}
