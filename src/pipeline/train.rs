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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::data::chunks::{Chunks, Split};
use crate::metrics;
use crate::model::loss::{bce_with_logits, distillation};
use crate::model::{BatchTensors, RecoNet, device};
use crate::pipeline::checkpoint::{self, ResumeState};
use crate::progress::Progress;
use crate::recipe::TrainConfig;
use reco_runtime::artifact::manifest::{Architecture, FORMAT, FORMAT_VERSION, Kind, Lineage, Manifest, Status};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::{FloatWeights, LAYOUT};
use reco_runtime::artifact::{ArtifactWriter, WEIGHTS};
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::rng::Rng;
use reco_runtime::runtime::{Columns, Encoded, FloatModel, encode};

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
    /// Epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Validation AUC of the best epoch.
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
    pub train: &'a Split,
    /// Validation rows and labels (early stopping).
    pub valid: &'a Split,
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

/// The recipe key that sets a training's learning rate: the teacher's is `train`'s, the
/// students' `distill`'s (which defaults to `train`'s).
fn learning_rate_key(label: &str) -> &'static str {
    if label == "teacher" { "train.learning_rate" } else { "distill.learning_rate" }
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
/// `small_embedding_dim`.
pub fn architecture(spec: &FeatureSpec, cfg: &TrainConfig) -> Architecture {
    let embedding_dims = spec
        .categorical
        .iter()
        .map(|c| if c.len() > 64 { cfg.id_embedding_dim } else { cfg.small_embedding_dim })
        .collect();
    Architecture {
        embedding_dims,
        hidden: cfg.hidden.clone(),
        activation: reco_runtime::artifact::manifest::Activation::Relu,
    }
}

/// Trains the teacher and writes its artifact.
pub fn train(job: &TrainJob<'_>, progress: &dyn Progress) -> Result<TrainSummary> {
    let spec = load_spec(job.features)?;
    let arch = architecture(&spec, job.cfg);
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

/// What [`fit`]'s trajectory depends on: every setting but the epoch budget, the seed, the
/// objective, and the training rows (encoded, or the split's content hash when it stays on
/// disk) and labels.
fn fit_fingerprint(input: &FitInput<'_>, rows: &TrainRows<'_>, y_valid: &[f32]) -> Result<String> {
    let mut cfg = serde_json::to_value(input.cfg).unwrap_or_default();
    if let Some(obj) = cfg.as_object_mut() {
        obj.remove("epochs");
        obj.remove("patience");
        // Whether rows stay on disk shows in the data below; the buffer only matters there.
        obj.remove("max_rows_in_memory");
        if matches!(rows, TrainRows::Whole { .. }) {
            obj.remove("shuffle_buffer_rows");
        }
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
    let mut data = vec![f32_bytes(y_valid)];
    match rows {
        TrainRows::Whole { enc, labels, .. } => {
            data.extend([f32_bytes(&enc.numeric), f32_bytes(labels)]);
            data.extend(enc.ids.iter().map(|c| c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()));
        }
        TrainRows::Chunked { chunks, .. } => {
            data.push(crate::data::table::location_sha256(&chunks.location)?.into_bytes());
        }
    }
    if let Objective::Distill { teacher_logits, .. } = &input.objective {
        data.push(f32_bytes(teacher_logits));
    }
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    Ok(checkpoint::fingerprint(&settings, &refs))
}

/// Where an epoch's rows come from.
enum TrainRows<'a> {
    /// All encoded in memory, visited in `order` (reshuffled in place every epoch).
    Whole { enc: Encoded, labels: &'a [f32], order: Vec<usize>, rng: Rng },
    /// Row groups on disk, read into shuffled windows of `buffer` rows.
    Chunked { chunks: &'a Chunks, buffer: usize },
}

/// Rows in memory for part of an epoch, and the order to visit them in.
struct Window<'a> {
    enc: Cow<'a, Encoded>,
    labels: Cow<'a, [f32]>,
    teacher: Option<Cow<'a, [f32]>>,
    order: Vec<usize>,
}

impl<'a> TrainRows<'a> {
    fn new(split: &'a Split, spec: &FeatureSpec, cfg: &TrainConfig, seed: u64) -> Result<Self> {
        Ok(match split {
            Split::Whole(frame) => Self::Whole {
                enc: encode(spec, &frame.columns.view()),
                labels: frame.labels(Path::new("train.parquet"))?,
                order: (0..frame.columns.rows).collect(),
                rng: Rng::derive(seed, "train-shuffle"),
            },
            Split::Chunked(chunks) => Self::Chunked { chunks, buffer: cfg.shuffle_buffer_rows },
        })
    }
}

/// An owned window, as the borrowing ones an epoch also visits.
fn shorten<'a>(w: Window<'static>) -> Window<'a> {
    w
}

/// Reads the row groups of `chunks` in a random order (by `seed` and `epoch`) into windows of
/// at least `buffer` rows each, shuffles each window and sends it; stops at the first error
/// (sent on) or when the receiver has gone.
fn produce_windows(
    chunks: &Chunks,
    spec: &FeatureSpec,
    buffer: usize,
    teacher: Option<&[f32]>,
    (seed, epoch): (u64, usize),
    tx: &SyncSender<Result<Window<'static>>>,
) {
    let mut rng = Rng::derive(seed, &format!("train-chunks-{epoch}"));
    let mut units: Vec<usize> = (0..chunks.chunks.len()).collect();
    rng.shuffle(&mut units);
    let mut acc: Option<(Columns, Vec<f32>, Vec<f32>)> = None;
    for (n, &u) in units.iter().enumerate() {
        let read = chunks.read(u, spec).and_then(|frame| {
            let labels = frame.labels(&chunks.chunks[u].file)?.to_vec();
            let first = chunks.chunks[u].first;
            let t = teacher.map_or_else(Vec::new, |t| t[first..first + frame.columns.rows].to_vec());
            match &mut acc {
                None => acc = Some((frame.columns, labels, t)),
                Some((c, y, tt)) => {
                    c.append(&frame.columns)?;
                    y.extend(labels);
                    tt.extend(t);
                }
            }
            Ok(())
        });
        if let Err(e) = read {
            let _ = tx.send(Err(e));
            return;
        }
        let full = acc.as_ref().is_some_and(|(c, _, _)| c.rows >= buffer);
        if (full || n + 1 == units.len())
            && let Some((cols, labels, t)) = acc.take()
        {
            let mut order: Vec<usize> = (0..cols.rows).collect();
            rng.shuffle(&mut order);
            let enc = Cow::Owned(encode(spec, &cols.view()));
            drop(cols); // only the encoded window waits in the channel
            let teacher = teacher.map(|_| Cow::Owned(t));
            if tx.send(Ok(Window { enc, labels: Cow::Owned(labels), teacher, order })).is_err() {
                return;
            }
        }
    }
}

/// Runs the training loop; returns the best epoch's weights and the summary (`dir` empty). A
/// loop that fails before its first checkpoint (bad rows in a streamed split show up only as
/// they are read) leaves no empty checkpoint directory behind.
pub fn fit(input: &FitInput<'_>, progress: &dyn Progress) -> Result<(FloatWeights, TrainSummary)> {
    let result = fit_loop(input, progress);
    if result.is_err() {
        // remove_dir removes only empty directories: a checkpoint written stays.
        let _ = std::fs::remove_dir(input.checkpoints);
        if let Some(parent) = input.checkpoints.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    result
}

fn fit_loop(input: &FitInput<'_>, progress: &dyn Progress) -> Result<(FloatWeights, TrainSummary)> {
    let (spec, arch, cfg) = (input.spec, input.arch, input.cfg);
    let y_valid = input.valid.labels(spec, Path::new("valid.parquet"))?;
    let teacher = match &input.objective {
        Objective::Hard => None,
        Objective::Distill { teacher_logits, .. } => Some(*teacher_logits),
    };
    if teacher.is_some_and(|t| t.len() != input.train.rows()) {
        return Err(Error::Internal("teacher logits do not cover the training rows".into()));
    }
    let dev = device(cfg.backend)?;
    dev.seed(input.seed);
    let ad = dev.autodiff();
    let mut model = RecoNet::new(spec, arch, &ad).with_stable_ids();
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();

    let mut rows = TrainRows::new(input.train, spec, cfg, input.seed)?;
    let n_rows = input.train.rows();
    let k = spec.numeric.len();
    std::fs::create_dir_all(input.checkpoints).at(input.checkpoints)?;
    let fingerprint = fit_fingerprint(input, &rows, &y_valid)?;

    let mut best: Option<(f64, usize, FloatWeights)> = None;
    let mut diverged = None;
    let (mut train_loss, mut valid_auc) = (Vec::new(), Vec::new());
    let (mut rows_done, mut secs) = (0usize, 0f64);
    // From row groups, each window may end in a partial batch.
    let windows = match &rows {
        TrainRows::Whole { .. } => 0,
        TrainRows::Chunked { buffer, .. } => n_rows.div_ceil(*buffer),
    };
    let steps_per_epoch = n_rows.div_ceil(cfg.batch_size) + windows;
    let mut lr = cfg.learning_rate;
    let mut first = 1;
    if input.resume {
        match checkpoint::load(input.checkpoints, &fingerprint, spec, arch)? {
            Some(r) if r.state.epoch > cfg.epochs => {
                return Err(Error::input(format!(
                    "{}: the checkpoint to resume is at epoch {}, past the {} epochs asked for; resume with at least {} epochs, or train again without --resume",
                    input.checkpoints.display(),
                    r.state.epoch,
                    cfg.epochs,
                    r.state.epoch
                )));
            }
            Some(r) => {
                model = RecoNet::from_weights(spec, arch, &r.current, &ad)?;
                optim = optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(r.optimizer)).map_err(|e| {
                    Error::input(format!("{}: unreadable optimizer state ({e:?})", input.checkpoints.display()))
                })?;
                // In memory, each epoch shuffles the previous epoch's order: replay the shuffles.
                if let TrainRows::Whole { order, rng, .. } = &mut rows {
                    for _ in 0..r.state.epoch {
                        rng.shuffle(order);
                    }
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
        let start = Instant::now();
        if let TrainRows::Whole { order, rng, .. } = &mut rows {
            rng.shuffle(order);
        }
        let rows = &rows;
        let (next, loss_now) = std::thread::scope(|scope| -> Result<(RecoNet, f64)> {
            let windows: Box<dyn Iterator<Item = Result<Window<'_>>> + '_> = match rows {
                TrainRows::Whole { enc, labels, order, .. } => {
                    let w = Window {
                        enc: Cow::Borrowed(enc),
                        labels: Cow::Borrowed(*labels),
                        teacher: teacher.map(Cow::Borrowed),
                        order: order.clone(),
                    };
                    Box::new(std::iter::once(Ok(w)))
                }
                TrainRows::Chunked { chunks, buffer } => {
                    // One window in the channel, one being read: reading overlaps training.
                    let (tx, rx) = sync_channel(1);
                    let (chunks, buffer) = (*chunks, *buffer);
                    scope.spawn(move || produce_windows(chunks, spec, buffer, teacher, (input.seed, epoch), &tx));
                    Box::new(rx.into_iter().map(|w| w.map(shorten)))
                }
            };
            let (mut loss_sum, mut loss_n, mut step) = (0f64, 0usize, 0usize);
            for w in windows {
                let w = w?;
                for idx in w.order.chunks(cfg.batch_size) {
                    let batch = BatchTensors::new(&w.enc, idx, k, &ad);
                    let y: Vec<f32> = idx.iter().map(|&i| w.labels[i]).collect();
                    let labels = Tensor::<1>::from_data(TensorData::new(y, [idx.len()]), &ad);
                    let logits = model.forward(&batch);
                    let loss = match (&input.objective, &w.teacher) {
                        (Objective::Distill { temperature, alpha, .. }, Some(t)) => {
                            let t: Vec<f32> = idx.iter().map(|&i| t[i]).collect();
                            let teacher = Tensor::<1>::from_data(TensorData::new(t, [idx.len()]), &ad);
                            distillation(logits, teacher, labels, *temperature, *alpha)
                        }
                        _ => bce_with_logits(logits, labels),
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
                    step += 1;
                }
            }
            Ok((model, loss_sum / loss_n.max(1) as f64))
        })?;
        model = next;
        let elapsed = start.elapsed().as_secs_f64();
        secs += elapsed;
        rows_done += n_rows;
        lr *= cfg.lr_decay;
        let weights = model.to_weights()?;
        let float = FloatModel::new(spec.clone(), arch.clone(), weights)?;
        let valid_logits = input.valid.map_rows(spec, |cols| float.logits(cols))?;
        if !(loss_now.is_finite() && float.weights.is_finite() && valid_logits.iter().all(|v| v.is_finite())) {
            // Diverged: keep the last good epoch, or refuse when there is none.
            progress.end();
            let Some((_, good, _)) = &best else {
                return Err(Error::input(format!(
                    "{}: training diverged in epoch {epoch} (loss {loss_now}, non-finite weights or scores): lower {} ({}) or check train.weight_decay",
                    input.label,
                    learning_rate_key(input.label),
                    cfg.learning_rate
                )));
            };
            progress.log(&format!(
                "{} epoch {epoch}: training diverged (loss {loss_now}); keeping epoch {good}",
                input.label
            ));
            diverged = Some(epoch);
            break;
        }
        let auc = metrics::auc(&valid_logits, &y_valid).unwrap_or(f64::NAN);
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
            n_rows as f64 / elapsed.max(1e-9)
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
        backend: cfg.backend,
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
        training: crate::outputs::stable::for_file(meta.training, out).0,
        metrics,
        quantization: None,
        exports: Default::default(),
        gate_failures: Vec::new(),
    };
    writer.finish(manifest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use polars::prelude::*;

    use super::*;
    use crate::data::io::{ROW_GROUP_ROWS, write_parquet};
    use reco_runtime::artifact::spec::{CategoricalSpec, Ids, NumericSpec};

    /// Every window of one epoch, from a channel large enough to hold them all.
    fn epoch(chunks: &Chunks, spec: &FeatureSpec, row_id: &[f32], e: usize) -> Vec<Window<'static>> {
        let (tx, rx) = sync_channel(64);
        produce_windows(chunks, spec, 2 * ROW_GROUP_ROWS, Some(row_id), (7, e), &tx);
        drop(tx);
        rx.into_iter().map(Result::unwrap).collect()
    }

    /// The split rows an epoch visits, in order (the teacher logit carries the row number).
    fn visits(windows: &[Window<'_>]) -> Vec<usize> {
        windows.iter().flat_map(|w| w.order.iter().map(|&i| w.teacher.as_ref().unwrap()[i] as usize)).collect()
    }

    #[test]
    fn each_epoch_visits_every_row_once_in_shuffled_windows_of_several_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * ROW_GROUP_ROWS + 100;
        let path = dir.path().join("train.parquet");
        let user: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
        let label: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let mut df = df!("user_id" => user, "x" => vec![0.5f32; n], "label" => label).unwrap();
        write_parquet(&mut df, &path).unwrap();
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", (0..10).collect())],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        let chunks = Chunks::list(&path, &spec, true).unwrap().unwrap();
        // polars evens out its row groups: about ROW_GROUP_ROWS rows each.
        assert!(chunks.chunks.len() >= 3, "{:?}", chunks.chunks);
        let mut next = 0;
        for c in &chunks.chunks {
            assert_eq!((c.first, c.offset), (next, next), "{c:?}");
            next += c.rows;
        }
        assert_eq!((next, chunks.rows), (n, n));
        let group_of =
            |row: usize| chunks.chunks.iter().position(|c| row >= c.first && row < c.first + c.rows).unwrap();
        let row_id: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let first = epoch(&chunks, &spec, &row_id, 1);
        let order = visits(&first);
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>().len(), n, "every row once");
        assert_eq!(order.len(), n);
        for w in &first {
            let t = w.teacher.as_ref().unwrap();
            for &i in &w.order {
                let row = t[i] as usize;
                assert_eq!(w.labels[i], (row % 2) as f32, "labels travel with their rows");
                let want = spec.categorical[0].rows_of(&Ids::Int(vec![(row % 10) as i64]))[0];
                assert_eq!(w.enc.ids[0][i], want, "inputs travel with their rows");
            }
        }
        let groups =
            |w: &Window<'_>| w.teacher.as_ref().unwrap().iter().map(|&r| group_of(r as usize)).collect::<BTreeSet<_>>();
        assert!(first[..first.len() - 1].iter().all(|w| groups(w).len() >= 2), "windows mix row groups");
        assert!(order.windows(2).filter(|p| p[1] == p[0] + 1).count() < n / 100, "rows shuffled within windows");
        assert_eq!(order, visits(&epoch(&chunks, &spec, &row_id, 1)), "same seed and epoch, same order");
        assert_ne!(order, visits(&epoch(&chunks, &spec, &row_id, 2)), "a new order every epoch");
    }
}
