//! `train`: the teacher (DESIGN §4). Hand-written burn loop: forward, BCE-with-logits,
//! backward, AdamW step; validation AUC after every epoch with the serving runtime, a
//! checkpoint each epoch, early stopping, and the best epoch saved as the artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::artifact::manifest::{Architecture, FORMAT, FORMAT_VERSION, Manifest};
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::{FloatWeights, LAYOUT};
use crate::artifact::{ArtifactWriter, WEIGHTS, sha256_file};
use crate::data::features::FeatureFrame;
use crate::error::{Error, IoContext, Result};
use crate::metrics;
use crate::model::{BatchTensors, RecoNet, device, loss::bce_with_logits};
use crate::progress::Progress;
use crate::recipe::TrainConfig;
use crate::rng::Rng;
use crate::runtime::{FloatModel, encode};

/// Inputs of a training run.
pub struct TrainJob<'a> {
    /// Directory written by `prepare` (feature files + `feature_spec.json`).
    pub features: &'a Path,
    /// Artifact directory to write.
    pub out: &'a Path,
    /// Where per-epoch checkpoints go.
    pub checkpoints: &'a Path,
    /// Hyper-parameters.
    pub cfg: &'a TrainConfig,
    /// Seed for initialization and shuffling.
    pub seed: u64,
    /// Resolved recipe, stored in the manifest.
    pub recipe: serde_json::Value,
    /// Artifact kind (`teacher`).
    pub kind: &'a str,
}

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Artifact directory.
    pub dir: PathBuf,
    /// Epochs run.
    pub epochs_run: usize,
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Validation AUC of the best epoch.
    pub best_valid_auc: f64,
    /// Mean training throughput, rows per second (forward + backward + step).
    pub rows_per_s: f64,
    /// Training backend.
    pub backend: String,
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
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
    serde_json::from_slice(&text).map_err(|e| Error::input(format!("{}: invalid feature spec ({e})", p.display())))
}

/// The teacher architecture from the recipe: id columns get `id_embedding_dim`, others
/// `small_embedding_dim`.
pub fn architecture(spec: &FeatureSpec, cfg: &TrainConfig) -> Architecture {
    let embedding_dims = spec
        .categorical
        .iter()
        .map(|c| if c.vocabulary.len() > 64 { cfg.id_embedding_dim } else { cfg.small_embedding_dim })
        .collect();
    Architecture { embedding_dims, hidden: cfg.hidden.clone(), activation: "relu".into() }
}

/// Trains and writes the artifact.
pub fn train(job: &TrainJob<'_>, progress: &dyn Progress) -> Result<TrainSummary> {
    let spec = load_spec(job.features)?;
    let arch = architecture(&spec, job.cfg);
    let train_path = job.features.join("train.parquet");
    let valid_path = job.features.join("valid.parquet");
    let train = FeatureFrame::read(&train_path, &spec, true)?;
    let valid = FeatureFrame::read(&valid_path, &spec, true)?;
    let y_train = train.labels(&train_path)?.to_vec();
    let y_valid = valid.labels(&valid_path)?.to_vec();
    let dev = device(&job.cfg.backend)?;
    dev.seed(job.seed);
    let ad = dev.autodiff();
    let mut model = RecoNet::new(&spec, &arch, &ad);
    let mut optim = AdamWConfig::new().with_weight_decay(job.cfg.weight_decay as f32).init();

    let enc = encode(&spec, &train.columns);
    let k = spec.numeric.len();
    let mut order: Vec<usize> = (0..enc.rows).collect();
    let mut rng = Rng::derive(job.seed, "train-shuffle");
    std::fs::create_dir_all(job.checkpoints).at(job.checkpoints)?;

    let mut best: Option<(f64, usize, FloatWeights)> = None;
    let (mut train_loss, mut valid_auc) = (Vec::new(), Vec::new());
    let (mut rows_done, mut secs) = (0usize, 0f64);
    let steps_per_epoch = enc.rows.div_ceil(job.cfg.batch_size);
    let mut lr = job.cfg.learning_rate;
    for epoch in 1..=job.cfg.epochs {
        progress.begin(&format!("{} epoch {epoch}/{}", job.kind, job.cfg.epochs), steps_per_epoch as u64);
        rng.shuffle(&mut order);
        let start = Instant::now();
        let mut loss_sum = 0f64;
        for (step, idx) in order.chunks(job.cfg.batch_size).enumerate() {
            let batch = BatchTensors::new(&enc, idx, k, &ad);
            let y: Vec<f32> = idx.iter().map(|&i| y_train[i]).collect();
            let targets = Tensor::<1>::from_data(TensorData::new(y, [idx.len()]), &ad);
            let loss = bce_with_logits(model.forward(&batch), targets);
            if step % 20 == 0 {
                let v = loss.clone().into_data().as_slice::<f32>().map(|s| s[0]).unwrap_or(f32::NAN);
                loss_sum += f64::from(v) * 20.0;
                progress.status(&format!("loss {v:.4}"));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            progress.advance(1);
        }
        secs += start.elapsed().as_secs_f64();
        lr *= job.cfg.lr_decay;
        rows_done += enc.rows;
        let weights = model.to_weights()?;
        let float = FloatModel { spec: spec.clone(), arch: arch.clone(), weights: weights.clone() };
        let auc = metrics::auc(&float.logits(&valid.columns)?, &y_valid).unwrap_or(f64::NAN);
        let ckpt = job.checkpoints.join(format!("epoch-{epoch:03}.safetensors"));
        std::fs::write(&ckpt, weights.to_bytes(&spec)?).at(&ckpt)?;
        train_loss.push(loss_sum / steps_per_epoch.max(1) as f64);
        valid_auc.push(auc);
        progress.end();
        progress.log(&format!(
            "{} epoch {epoch}: train loss {:.4}, valid AUC {auc:.4}, {:.0} rows/s",
            job.kind,
            train_loss[epoch - 1],
            enc.rows as f64 / start.elapsed().as_secs_f64().max(1e-9)
        ));
        if !auc.is_finite() {
            return Err(Error::Internal(format!("validation AUC is {auc} after epoch {epoch} (training diverged?)")));
        }
        let improved = best.as_ref().is_none_or(|(b, _, _)| auc > *b);
        if improved {
            best = Some((auc, epoch, weights));
        } else if epoch - best.as_ref().map_or(0, |b| b.1) >= job.cfg.patience {
            break;
        }
    }
    let Some((best_auc, best_epoch, weights)) = best else {
        return Err(Error::Internal("no epoch was trained".into()));
    };
    let summary = TrainSummary {
        dir: job.out.to_path_buf(),
        epochs_run: valid_auc.len(),
        best_epoch,
        best_valid_auc: best_auc,
        rows_per_s: rows_done as f64 / secs.max(1e-9),
        backend: job.cfg.backend.clone(),
        train_loss,
        valid_auc,
        parameters: arch.parameter_count(&spec),
    };
    write_float_artifact(job.out, job.kind, &spec, &arch, &weights, job, &summary)?;
    Ok(summary)
}

fn write_float_artifact(
    out: &Path,
    kind: &str,
    spec: &FeatureSpec,
    arch: &Architecture,
    weights: &FloatWeights,
    job: &TrainJob<'_>,
    summary: &TrainSummary,
) -> Result<Manifest> {
    let mut input_data = BTreeMap::new();
    for name in ["train.parquet", "valid.parquet", "feature_spec.json"] {
        input_data.insert(name.to_string(), sha256_file(&job.features.join(name))?);
    }
    let writer = ArtifactWriter::create(out)?;
    writer.write(WEIGHTS, &weights.to_bytes(spec)?)?;
    let metrics = serde_json::json!({ "valid_auc": summary.best_valid_auc });
    writer.write("metrics.json", &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Internal(e.to_string()))?)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind: kind.into(),
        status: "ok".into(),
        reco_cli_version: crate::VERSION.into(),
        architecture: arch.clone(),
        feature_spec: spec.clone(),
        tensor_layout: LAYOUT.into(),
        recipe: job.recipe.clone(),
        seed: job.seed,
        files: BTreeMap::new(),
        input_data,
        lineage: None,
        training: serde_json::to_value(summary).map_err(|e| Error::Internal(e.to_string()))?,
        metrics,
    };
    writer.finish(manifest)
}
