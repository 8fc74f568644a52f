//! `train`: the teacher (DESIGN §4), and the training loop every float model shares.
//!
//! Hand-written burn loop ([`fit`]): forward, loss ([`Objective`]: BCE with logits, or the
//! distillation objective), backward, AdamW step; validation AUC after every epoch with the
//! serving runtime, a checkpoint each epoch, early stopping, best epoch kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::artifact::manifest::{Architecture, FORMAT, FORMAT_VERSION, Kind, Lineage, Manifest, Status};
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::{FloatWeights, LAYOUT};
use crate::artifact::{ArtifactWriter, WEIGHTS};
use crate::data::features::FeatureFrame;
use crate::error::{Error, IoContext, Result};
use crate::metrics;
use crate::model::loss::{bce_with_logits, distillation};
use crate::model::{BatchTensors, RecoNet, device};
use crate::pipeline::checkpoint::{self, ResumeState};
use crate::progress::Progress;
use crate::recipe::TrainConfig;
use crate::rng::Rng;
use crate::runtime::{FloatModel, encode};

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
    /// The epoch whose loss, weights or validation scores were not finite (training stopped
    /// there and kept the best earlier epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_epoch: Option<usize>,
    /// Validation AUC per epoch.
    pub valid_auc: Vec<f64>,
    /// Trainable parameters.
    pub parameters: usize,
}

/// The loss a training loop minimizes.
pub enum Objective<'a> {
    /// Binary cross-entropy with logits on the labels.
    Hard,
    /// `alpha · T² · BernoulliKL(sigmoid(t/T) || sigmoid(s/T)) + (1 - alpha) · BCE(s, y)`.
    Distill {
        /// Teacher logit of every training row (computed once, in row order).
        teacher_logits: &'a [f32],
        /// Temperature T.
        temperature: f64,
        /// Weight of the soft term.
        alpha: f64,
    },
}

/// Everything [`fit`] needs.
pub struct FitInput<'a> {
    /// Input encoding.
    pub spec: &'a FeatureSpec,
    /// Network shape.
    pub arch: &'a Architecture,
    /// Training rows and labels.
    pub train: &'a FeatureFrame,
    /// Validation rows and labels (early stopping).
    pub valid: &'a FeatureFrame,
    /// Hyper-parameters.
    pub cfg: &'a TrainConfig,
    /// Seed.
    pub seed: u64,
    /// Label for progress and logs (`teacher`, `student`, ...).
    pub label: &'a str,
    /// Per-epoch checkpoint directory.
    pub checkpoints: &'a Path,
    /// Loss.
    pub objective: Objective<'a>,
    /// Continue from the checkpoint directory's resume state, when it has one.
    pub resume: bool,
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

/// Reads the training and validation feature files of a features directory.
pub fn load_splits(features: &Path, spec: &FeatureSpec) -> Result<(FeatureFrame, FeatureFrame)> {
    let train = FeatureFrame::read(&features.join("train.parquet"), spec, true)?;
    let valid = FeatureFrame::read(&features.join("valid.parquet"), spec, true)?;
    Ok((train, valid))
}

/// The teacher architecture from the recipe: id columns get `id_embedding_dim`, others
/// `small_embedding_dim`.
pub fn architecture(spec: &FeatureSpec, cfg: &TrainConfig) -> Architecture {
    let embedding_dims = spec
        .categorical
        .iter()
        .map(|c| if c.len() > 64 { cfg.id_embedding_dim } else { cfg.small_embedding_dim })
        .collect();
    Architecture { embedding_dims, hidden: cfg.hidden.clone(), activation: "relu".into() }
}

/// Trains the teacher and writes its artifact.
pub fn train(job: &TrainJob<'_>, progress: &dyn Progress) -> Result<TrainSummary> {
    let spec = load_spec(job.features)?;
    let arch = architecture(&spec, job.cfg);
    let (train, valid) = load_splits(job.features, &spec)?;
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

/// What [`fit`]'s trajectory depends on: every setting but the epoch budget, the seed, the
/// objective, and the encoded rows and labels.
fn fit_fingerprint(input: &FitInput<'_>, enc: &crate::runtime::Encoded, y_train: &[f32], y_valid: &[f32]) -> String {
    let mut cfg = serde_json::to_value(input.cfg).unwrap_or_default();
    if let Some(obj) = cfg.as_object_mut() {
        obj.remove("epochs");
        obj.remove("patience");
    }
    let objective = match &input.objective {
        Objective::Hard => serde_json::json!("hard"),
        Objective::Distill { temperature, alpha, .. } => {
            serde_json::json!({ "temperature": temperature, "alpha": alpha })
        }
    };
    let settings = serde_json::json!({
        "train": cfg, "seed": input.seed, "label": input.label, "objective": objective, "arch": input.arch,
        "spec": input.spec,
    });
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut data = vec![f32_bytes(&enc.numeric), f32_bytes(y_train), f32_bytes(y_valid)];
    data.extend(enc.ids.iter().map(|c| c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()));
    if let Objective::Distill { teacher_logits, .. } = &input.objective {
        data.push(f32_bytes(teacher_logits));
    }
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    checkpoint::fingerprint(&settings, &refs)
}

/// Runs the training loop; returns the best epoch's weights and the summary (`dir` empty).
pub fn fit(input: &FitInput<'_>, progress: &dyn Progress) -> Result<(FloatWeights, TrainSummary)> {
    let (spec, arch, cfg) = (input.spec, input.arch, input.cfg);
    let y_train = input.train.labels(Path::new("train.parquet"))?;
    let y_valid = input.valid.labels(Path::new("valid.parquet"))?;
    if let Objective::Distill { teacher_logits, .. } = &input.objective
        && teacher_logits.len() != y_train.len()
    {
        return Err(Error::Internal("teacher logits do not cover the training rows".into()));
    }
    let dev = device(&cfg.backend)?;
    dev.seed(input.seed);
    let ad = dev.autodiff();
    let mut model = RecoNet::new(spec, arch, &ad).with_stable_ids();
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();

    let enc = encode(spec, &input.train.columns.view());
    let k = spec.numeric.len();
    let mut order: Vec<usize> = (0..enc.rows).collect();
    let mut rng = Rng::derive(input.seed, "train-shuffle");
    std::fs::create_dir_all(input.checkpoints).at(input.checkpoints)?;
    let fingerprint = fit_fingerprint(input, &enc, y_train, y_valid);

    let mut best: Option<(f64, usize, FloatWeights)> = None;
    let mut diverged = None;
    let (mut train_loss, mut valid_auc) = (Vec::new(), Vec::new());
    let (mut rows_done, mut secs) = (0usize, 0f64);
    let steps_per_epoch = enc.rows.div_ceil(cfg.batch_size);
    let mut lr = cfg.learning_rate;
    let mut first = 1;
    if input.resume {
        match checkpoint::load(input.checkpoints, &fingerprint, spec, arch)? {
            Some(r) => {
                model = RecoNet::from_weights(spec, arch, &r.current, &ad)?;
                optim = optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(r.optimizer)).map_err(|e| {
                    Error::input(format!("{}: unreadable optimizer state ({e:?})", input.checkpoints.display()))
                })?;
                // Each epoch shuffles the previous epoch's order: replay the shuffles.
                for _ in 0..r.state.epoch {
                    rng.shuffle(&mut order);
                }
                lr = r.state.lr;
                best = Some((r.state.valid_auc[r.state.best_epoch - 1], r.state.best_epoch, r.best));
                first = r.state.epoch + 1;
                if r.state.best_epoch != r.state.epoch && r.state.epoch - r.state.best_epoch >= cfg.patience {
                    first = usize::MAX; // it had stopped early: no epoch left
                }
                (train_loss, valid_auc) = (r.state.train_loss, r.state.valid_auc);
                progress.log(&format!("{}: resuming after epoch {}", input.label, r.state.epoch));
            }
            None => progress.log(&format!("{}: no checkpoint to resume; starting at epoch 1", input.label)),
        }
    }
    for epoch in first..=cfg.epochs {
        progress.begin(&format!("{} epoch {epoch}/{}", input.label, cfg.epochs), steps_per_epoch as u64);
        rng.shuffle(&mut order);
        let start = Instant::now();
        let (mut loss_sum, mut loss_n) = (0f64, 0usize);
        for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
            let batch = BatchTensors::new(&enc, idx, k, &ad);
            let y: Vec<f32> = idx.iter().map(|&i| y_train[i]).collect();
            let labels = Tensor::<1>::from_data(TensorData::new(y, [idx.len()]), &ad);
            let logits = model.forward(&batch);
            let loss = match &input.objective {
                Objective::Hard => bce_with_logits(logits, labels),
                Objective::Distill { teacher_logits, temperature, alpha } => {
                    let t: Vec<f32> = idx.iter().map(|&i| teacher_logits[i]).collect();
                    let teacher = Tensor::<1>::from_data(TensorData::new(t, [idx.len()]), &ad);
                    distillation(logits, teacher, labels, *temperature, *alpha)
                }
            };
            if step % 20 == 0 {
                let v = loss.clone().into_data().as_slice::<f32>().map(|s| s[0]).unwrap_or(f32::NAN);
                loss_sum += f64::from(v);
                loss_n += 1;
                progress.status(&format!("loss {v:.4}"));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            progress.advance(1);
        }
        let elapsed = start.elapsed().as_secs_f64();
        secs += elapsed;
        rows_done += enc.rows;
        lr *= cfg.lr_decay;
        let weights = model.to_weights()?;
        let float = FloatModel { spec: spec.clone(), arch: arch.clone(), weights };
        let valid_logits = float.logits(&input.valid.columns)?;
        let loss_now = loss_sum / loss_n.max(1) as f64;
        if !(loss_now.is_finite() && float.weights.is_finite() && valid_logits.iter().all(|v| v.is_finite())) {
            // Diverged: keep the last good epoch, or refuse when there is none.
            progress.end();
            let Some((_, good, _)) = &best else {
                return Err(Error::input(format!(
                    "{}: training diverged in epoch {epoch} (loss {loss_now}, non-finite weights or scores): lower train.learning_rate ({}) or check weight_decay",
                    input.label, cfg.learning_rate
                )));
            };
            progress.log(&format!(
                "{} epoch {epoch}: training diverged (loss {loss_now}); keeping epoch {good}",
                input.label
            ));
            diverged = Some(epoch);
            break;
        }
        let auc = metrics::auc(&valid_logits, y_valid).unwrap_or(f64::NAN);
        if !auc.is_finite() {
            return Err(Error::Internal(format!("validation AUC is {auc} after epoch {epoch} (training diverged?)")));
        }
        train_loss.push(loss_now);
        valid_auc.push(auc);
        if best.as_ref().is_none_or(|(b, _, _)| auc > *b) {
            best = Some((auc, epoch, float.weights.clone()));
        }
        let best_epoch = best.as_ref().map_or(epoch, |b| b.1);
        let state = ResumeState {
            fingerprint: fingerprint.clone(),
            epoch,
            lr,
            train_loss: train_loss.clone(),
            valid_auc: valid_auc.clone(),
            best_epoch,
        };
        let optimizer = optim.into_bytes().map_err(|e| Error::Internal(format!("optimizer state: {e:?}")))?;
        checkpoint::save(input.checkpoints, &state, &float.weights.to_bytes(spec)?, &optimizer)?;
        progress.end();
        progress.log(&format!(
            "{} epoch {epoch}: train loss {loss_now:.4}, valid AUC {auc:.4}, {:.0} rows/s",
            input.label,
            enc.rows as f64 / elapsed.max(1e-9)
        ));
        if best_epoch != epoch && epoch - best_epoch >= cfg.patience {
            break;
        }
    }
    checkpoint::finish(input.checkpoints)?;
    let Some((best_auc, best_epoch, weights)) = best else {
        return Err(Error::Internal("no epoch was trained".into()));
    };
    let summary = TrainSummary {
        dir: PathBuf::new(),
        epochs_run: valid_auc.len(),
        best_epoch,
        best_valid_auc: best_auc,
        rows_per_s: rows_done as f64 / secs.max(1e-9),
        backend: cfg.backend.clone(),
        train_loss,
        valid_auc,
        parameters: arch.parameter_count(spec),
        diverged_at_epoch: diverged,
    };
    Ok((weights, summary))
}

/// Provenance written into a float artifact's manifest.
pub struct ArtifactMeta<'a> {
    /// Artifact kind.
    pub kind: Kind,
    /// Resolved recipe.
    pub recipe: serde_json::Value,
    /// Training seed.
    pub seed: u64,
    /// Features directory the model was trained on (its files are hashed).
    pub features: &'a Path,
    /// Parent artifact, if any.
    pub lineage: Option<Lineage>,
    /// Training facts (and distillation parameters).
    pub training: serde_json::Value,
}

/// Writes a float artifact (weights, metrics, manifest) atomically.
pub fn write_float_artifact(
    out: &Path,
    spec: &FeatureSpec,
    arch: &Architecture,
    weights: &FloatWeights,
    meta: ArtifactMeta<'_>,
    valid_auc: f64,
) -> Result<Manifest> {
    let mut input_data = BTreeMap::new();
    for name in ["train.parquet", "valid.parquet", "feature_spec.json"] {
        // A split may be a directory of parts (hive-partitioned, as Spark writes it).
        input_data.insert(name.to_string(), crate::data::table::location_sha256(&meta.features.join(name))?);
    }
    let writer = ArtifactWriter::create(out)?;
    writer.write(WEIGHTS, &weights.to_bytes(spec)?)?;
    let metrics = serde_json::json!({ "valid_auc": valid_auc, "parameters": arch.parameter_count(spec) });
    writer.write("metrics.json", &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Internal(e.to_string()))?)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind: meta.kind,
        status: Status::Ok,
        reco_cli_version: crate::VERSION.into(),
        architecture: arch.clone(),
        feature_spec: spec.clone(),
        tensor_layout: LAYOUT.into(),
        recipe: meta.recipe,
        seed: meta.seed,
        files: BTreeMap::new(),
        input_data,
        lineage: meta.lineage,
        training: crate::pipeline::stable::for_file(meta.training, out).0,
        metrics,
        quantization: None,
        exports: Default::default(),
    };
    writer.finish(manifest)
}
