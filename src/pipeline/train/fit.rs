//! The training loop every float model shares ([`fit`]): forward, loss ([`Objective`]: BCE
//! with logits, or the distillation objective), backward, AdamW step; validation AUC after
//! every epoch with the serving runtime, a checkpoint each epoch (resumable to the same
//! weights), early stopping, the best epoch kept, divergence caught. With `train.average`, each
//! epoch after the best also has the midpoint of the best weights and its own validated, and
//! the midpoint is kept when it scores higher (checkpoint averaging).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::TrainSummary;
use super::checkpoint::{self, ResumeState};
use super::rows::{TrainRows, Window, produce_windows, shorten};
use crate::data::chunks::Split;
use crate::metrics;
use crate::model::loss::{DistillWeights, bce_with_logits, counted_groups, distillation_terms};
use crate::model::{BatchTensors, RecoNet, device};
use crate::progress::Progress;
use crate::recipe::TrainConfig;
use reco_runtime::artifact::manifest::Architecture;
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::FloatWeights;
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::runtime::FloatModel;

/// The loss a training loop minimizes.
#[derive(Clone, Copy)]
pub enum Objective<'a> {
    /// Binary cross-entropy with logits on the labels.
    Hard,
    /// `alpha · T² · BernoulliKL(sigmoid(t/T) || sigmoid(s/T)) + (1 - alpha) · BCE(s, y)`, plus
    /// `listwise ·` the listwise KL over each candidate group when that weight is not 0.
    Distill {
        /// Teacher logit of every training row (computed once, in row order).
        teacher_logits: &'a [f32],
        /// Temperature and the terms' weights.
        weights: DistillWeights,
        /// The candidate group of every training row (needed when `weights.listwise` > 0:
        /// epochs then shuffle whole groups).
        groups: Option<&'a [u32]>,
    },
}

/// Everything [`fit`] needs.
#[derive(Clone, Copy)]
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
    if label.starts_with("teacher") { "train.learning_rate" } else { "distill.learning_rate" }
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
        Objective::Distill { weights: w, .. } if w.listwise > 0.0 => {
            serde_json::json!({ "temperature": w.temperature, "alpha": w.alpha, "listwise": w.listwise })
        }
        Objective::Distill { weights: w, .. } => serde_json::json!({ "temperature": w.temperature, "alpha": w.alpha }),
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
            data.extend(enc.offsets.iter().flatten().map(|o| o.iter().flat_map(|x| x.to_le_bytes()).collect()));
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

impl FitInput<'_> {
    /// Epochs and batch size: the recipe's, or sized to the training rows.
    pub fn schedule(&self) -> crate::recipe::Schedule {
        self.cfg.schedule(self.train.rows())
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
    let mut run = Loop::start(input, progress)?;
    for epoch in run.first..=input.schedule().epochs {
        let (loss, secs) = run.epoch(input, epoch, progress)?;
        if run.after_epoch(input, epoch, (loss, secs), progress)? == Next::Stop {
            break;
        }
    }
    checkpoint::finish(input.checkpoints)?;
    run.finish(input)
}

/// The training loop's state between epochs.
struct Loop<'a> {
    /// The model (taken out while an epoch's batches step it).
    model: Option<RecoNet>,
    optim: ModuleOptimizer,
    ad: Device,
    rows: TrainRows<'a>,
    y_valid: Vec<f32>,
    teacher: Option<&'a [f32]>,
    /// The candidate group of every training row (listwise distillation only).
    groups: Option<&'a [u32]>,
    fingerprint: String,
    steps_per_epoch: usize,
    lr: f64,
    /// The first epoch to train (after a resumed checkpoint's; `usize::MAX`: none left).
    first: usize,
    /// The best weights so far.
    best: Option<Best>,
    train_loss: Vec<f64>,
    valid_auc: Vec<f64>,
    rows_done: usize,
    secs: f64,
    diverged: Option<usize>,
}

/// The best weights so far: an epoch's, or the midpoint of the best before it and that epoch's.
struct Best {
    /// Validation AUC.
    auc: f64,
    /// The epoch they were found after.
    epoch: usize,
    /// True when they are a midpoint.
    midpoint: bool,
    weights: FloatWeights,
}

/// Whether training goes on after an epoch.
#[derive(PartialEq)]
enum Next {
    Continue,
    Stop,
}

impl<'a> Loop<'a> {
    /// A fresh model and optimizer on the configured device, or the checkpoint's when resuming.
    fn start(input: &FitInput<'a>, progress: &dyn Progress) -> Result<Self> {
        let (spec, arch, cfg) = (input.spec, input.arch, input.cfg);
        let y_valid = input.valid.labels(spec, Path::new("valid.parquet"))?;
        let (teacher, groups) = match &input.objective {
            Objective::Hard => (None, None),
            Objective::Distill { teacher_logits, weights, groups } => {
                (Some(*teacher_logits), groups.filter(|_| weights.listwise > 0.0))
            }
        };
        if teacher.is_some_and(|t| t.len() != input.train.rows())
            || groups.is_some_and(|g| g.len() != input.train.rows())
        {
            return Err(Error::Internal("teacher logits or groups do not cover the training rows".into()));
        }
        let dev = device(cfg.backend)?;
        dev.seed(input.seed);
        let ad = dev.autodiff();
        let model = RecoNet::new(spec, arch, &ad).with_stable_ids();
        let optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();
        let rows = TrainRows::new(input.train, spec, cfg, input.seed, groups)?;
        let n_rows = input.train.rows();
        std::fs::create_dir_all(input.checkpoints).at(input.checkpoints)?;
        let fingerprint = fit_fingerprint(input, &rows, &y_valid)?;
        // From row groups, each window may end in a partial batch.
        let windows = match &rows {
            TrainRows::Whole { .. } => 0,
            TrainRows::Chunked { buffer, .. } => n_rows.div_ceil(*buffer),
        };
        let steps_per_epoch = n_rows.div_ceil(input.schedule().batch_size) + windows;
        let mut run = Self {
            model: Some(model),
            optim,
            ad,
            rows,
            y_valid,
            teacher,
            groups,
            fingerprint,
            steps_per_epoch,
            lr: cfg.learning_rate,
            first: 1,
            best: None,
            train_loss: Vec::new(),
            valid_auc: Vec::new(),
            rows_done: 0,
            secs: 0.0,
            diverged: None,
        };
        if input.resume {
            run.resume(input, progress)?;
        }
        Ok(run)
    }

    /// Continues from the checkpoint directory's resume state, when it has one.
    fn resume(&mut self, input: &FitInput<'_>, progress: &dyn Progress) -> Result<()> {
        let (spec, arch, cfg) = (input.spec, input.arch, input.cfg);
        let Some(r) = checkpoint::load(input.checkpoints, &self.fingerprint, spec, arch)? else {
            progress.log(&format!("{}: no checkpoint to resume; starting at epoch 1", input.label));
            return Ok(());
        };
        let epochs = input.schedule().epochs;
        if r.state.epoch > epochs {
            return Err(Error::input(format!(
                "{}: the checkpoint to resume is at epoch {}, past the {} epochs asked for; resume with at least {} epochs, or train again without --resume",
                input.checkpoints.display(),
                r.state.epoch,
                epochs,
                r.state.epoch
            )));
        }
        self.model = Some(RecoNet::from_weights(spec, arch, &r.current, &self.ad)?);
        let optim = std::mem::replace(&mut self.optim, AdamWConfig::new().init());
        self.optim = optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(r.optimizer)).map_err(|e| {
            Error::input(format!("{}: unreadable optimizer state ({e:?})", input.checkpoints.display()))
        })?;
        // In memory, each epoch shuffles the previous epoch's order: replay the shuffles.
        for _ in 0..r.state.epoch {
            self.rows.reshuffle();
        }
        self.lr = r.state.lr;
        self.best = Some(Best {
            auc: r.state.best_auc.unwrap_or(r.state.valid_auc[r.state.best_epoch - 1]),
            epoch: r.state.best_epoch,
            midpoint: r.state.best_midpoint,
            weights: r.best,
        });
        self.first = r.state.epoch + 1;
        if r.state.best_epoch != r.state.epoch && r.state.epoch - r.state.best_epoch >= cfg.patience {
            self.first = usize::MAX; // it had stopped early: no epoch left
        }
        (self.train_loss, self.valid_auc) = (r.state.train_loss, r.state.valid_auc);
        progress.log(&format!("{}: resuming after epoch {}", input.label, r.state.epoch));
        Ok(())
    }

    /// One pass over the training rows: the mean sampled loss and the wall seconds.
    fn epoch(&mut self, input: &FitInput<'_>, epoch: usize, progress: &dyn Progress) -> Result<(f64, f64)> {
        progress
            .begin(&format!("{} epoch {epoch}/{}", input.label, input.schedule().epochs), self.steps_per_epoch as u64);
        let start = Instant::now();
        self.rows.reshuffle();
        let (rows, teacher, groups, lr) = (&self.rows, self.teacher, self.groups, self.lr);
        let (optim, ad) = (&mut self.optim, &self.ad);
        let mut model = self.model.take().ok_or_else(|| Error::Internal("no model to train".into()))?;
        let (model, loss) = std::thread::scope(|scope| -> Result<(RecoNet, f64)> {
            let windows: Box<dyn Iterator<Item = Result<Window<'_>>> + '_> = match rows {
                TrainRows::Whole { enc, labels, order, .. } => {
                    let w = Window {
                        enc: Cow::Borrowed(enc),
                        labels: Cow::Borrowed(*labels),
                        teacher: teacher.map(Cow::Borrowed),
                        groups: groups.map(Cow::Borrowed),
                        order: order.clone(),
                    };
                    Box::new(std::iter::once(Ok(w)))
                }
                TrainRows::Chunked { chunks, buffer } => {
                    // One window in the channel, one being read: reading overlaps training.
                    let (tx, rx) = sync_channel(1);
                    let (chunks, buffer, spec) = (*chunks, *buffer, input.spec);
                    scope.spawn(move || {
                        produce_windows(chunks, spec, buffer, (teacher, groups), (input.seed, epoch), &tx)
                    });
                    Box::new(rx.into_iter().map(|w| w.map(shorten)))
                }
            };
            let mut sampled = (0f64, 0usize, 0usize);
            for w in windows {
                model = step_window(&w?, input, model, (optim, ad, lr), &mut sampled, progress);
            }
            Ok((model, sampled.0 / sampled.1.max(1) as f64))
        })?;
        self.model = Some(model);
        Ok((loss, start.elapsed().as_secs_f64()))
    }

    /// After an epoch: validation, the divergence check, the best epoch, the checkpoint, the
    /// early stop.
    fn after_epoch(
        &mut self,
        input: &FitInput<'_>,
        epoch: usize,
        (loss, elapsed): (f64, f64),
        progress: &dyn Progress,
    ) -> Result<Next> {
        let (spec, arch, cfg) = (input.spec, input.arch, input.cfg);
        self.secs += elapsed;
        self.rows_done += input.train.rows();
        self.lr *= cfg.lr_decay;
        let weights =
            self.model.as_ref().ok_or_else(|| Error::Internal("no model to validate".into()))?.to_weights()?;
        let float = FloatModel::new(spec.clone(), arch.clone(), weights)?;
        let valid_logits = input.valid.map_rows(spec, |cols| float.logits(cols))?;
        if !(loss.is_finite() && float.weights.is_finite() && valid_logits.iter().all(|v| v.is_finite())) {
            return self.diverged(input, epoch, loss, progress);
        }
        let auc = metrics::auc(&valid_logits, &self.y_valid).unwrap_or(f64::NAN);
        if !auc.is_finite() {
            return Err(Error::Internal(format!("validation AUC is {auc} after epoch {epoch} (training diverged?)")));
        }
        self.train_loss.push(loss);
        self.valid_auc.push(auc);
        let midpoint = self.midpoint(input, &float.weights)?;
        if self.best.as_ref().is_none_or(|b| auc > b.auc) {
            self.best = Some(Best { auc, epoch, midpoint: false, weights: float.weights.clone() });
        }
        let midpoint_auc = midpoint.map(|(a, w)| {
            if self.best.as_ref().is_some_and(|b| a > b.auc) {
                self.best = Some(Best { auc: a, epoch, midpoint: true, weights: w });
            }
            a
        });
        let best = self.best.as_ref().ok_or_else(|| Error::Internal("no best epoch".into()))?;
        let best_epoch = best.epoch;
        let state = ResumeState {
            fingerprint: self.fingerprint.clone(),
            epoch,
            lr: self.lr,
            train_loss: self.train_loss.clone(),
            valid_auc: self.valid_auc.clone(),
            best_epoch,
            best_auc: Some(best.auc),
            best_midpoint: best.midpoint,
        };
        let kept = (best.midpoint && best.epoch == epoch).then(|| best.weights.to_bytes(spec)).transpose()?;
        let optimizer = self.optim.into_bytes().map_err(|e| Error::Internal(format!("optimizer state: {e:?}")))?;
        checkpoint::save(input.checkpoints, &state, (&float.weights.to_bytes(spec)?, kept.as_deref()), &optimizer)?;
        progress.end();
        let midpoint_note = midpoint_auc.map_or_else(String::new, |a| format!(" (midpoint with the best: {a:.4})"));
        progress.log(&format!(
            "{} epoch {epoch}: train loss {loss:.4}, valid AUC {auc:.4}{midpoint_note}, {:.0} rows/s",
            input.label,
            input.train.rows() as f64 / elapsed.max(1e-9)
        ));
        Ok(if best_epoch != epoch && epoch - best_epoch >= cfg.patience { Next::Stop } else { Next::Continue })
    }

    /// With `train.average`, after an epoch past the best: the midpoint of the best weights and
    /// `current`, with its validation AUC.
    fn midpoint(&self, input: &FitInput<'_>, current: &FloatWeights) -> Result<Option<(f64, FloatWeights)>> {
        let Some(best) = self.best.as_ref().filter(|_| input.cfg.average) else { return Ok(None) };
        let weights = midpoint(&best.weights, current)?;
        let model = FloatModel::new(input.spec.clone(), input.arch.clone(), weights)?;
        let logits = input.valid.map_rows(input.spec, |cols| model.logits(cols))?;
        // A midpoint that does not score finitely is never kept.
        let auc = metrics::auc(&logits, &self.y_valid).filter(|a| a.is_finite() && model.weights.is_finite());
        Ok(auc.map(|a| (a, model.weights)))
    }

    /// Diverged: keep the last good epoch, or refuse when there is none.
    fn diverged(&mut self, input: &FitInput<'_>, epoch: usize, loss: f64, progress: &dyn Progress) -> Result<Next> {
        progress.end();
        let Some(Best { epoch: good, midpoint, .. }) = &self.best else {
            return Err(Error::input(format!(
                "{}: training diverged in epoch {epoch} (loss {loss}, non-finite weights or scores): lower {} ({}) or check train.weight_decay",
                input.label,
                learning_rate_key(input.label),
                input.cfg.learning_rate
            )));
        };
        let kept = if *midpoint { format!("the midpoint found after epoch {good}") } else { format!("epoch {good}") };
        progress.log(&format!("{} epoch {epoch}: training diverged (loss {loss}); keeping {kept}", input.label));
        self.diverged = Some(epoch);
        Ok(Next::Stop)
    }

    /// The best epoch's weights and the summary.
    fn finish(self, input: &FitInput<'_>) -> Result<(FloatWeights, TrainSummary)> {
        let Some(Best { auc: best_auc, epoch: best_epoch, midpoint, weights }) = self.best else {
            return Err(Error::Internal("no epoch was trained".into()));
        };
        let summary = TrainSummary {
            dir: PathBuf::new(),
            epochs_run: self.valid_auc.len(),
            schedule: Some(input.schedule()),
            best_epoch,
            best_is_midpoint: midpoint,
            best_valid_auc: best_auc,
            rows_per_s: self.rows_done as f64 / self.secs.max(1e-9),
            backend: input.cfg.backend,
            train_loss: self.train_loss,
            valid_auc: self.valid_auc,
            parameters: input.arch.parameter_count(input.spec),
            diverged_at_epoch: self.diverged,
        };
        Ok((weights, summary))
    }
}

/// The elementwise mean of two weight sets of one architecture.
fn midpoint(a: &FloatWeights, b: &FloatWeights) -> Result<FloatWeights> {
    let mean = |x: &[f32], y: &[f32]| -> Result<Vec<f32>> {
        if x.len() != y.len() {
            return Err(Error::Internal("averaged weights differ in shape".into()));
        }
        Ok(x.iter().zip(y).map(|(p, q)| 0.5 * (p + q)).collect())
    };
    let mut out = a.clone();
    if (out.embeddings.len(), out.dense.len()) != (b.embeddings.len(), b.dense.len()) {
        return Err(Error::Internal("averaged weights differ in layers".into()));
    }
    for (t, u) in out.embeddings.iter_mut().zip(&b.embeddings) {
        t.data = mean(&t.data, &u.data)?;
    }
    for (d, e) in out.dense.iter_mut().zip(&b.dense) {
        d.weight = mean(&d.weight, &e.weight)?;
        d.bias = mean(&d.bias, &e.bias)?;
    }
    Ok(out)
}

/// The optimizer steps of one window's batches; every 20th step's loss is sampled into
/// `(sum, count, step)`.
///
/// Data-parallel: each batch is cut in two halves ([`halves`]), each half's loss (weighted by
/// its share of the batch's rows and groups, [`shares`], so the sum of the halves' gradients
/// is the whole batch's) is
/// differentiated on its own, the two on two rayon workers when the pool has two, and the
/// gradients are summed first half first. The halves and the order of the sum do not depend
/// on the thread count, so neither do the trained weights.
fn step_window(
    w: &Window<'_>,
    input: &FitInput<'_>,
    mut model: RecoNet,
    (optim, ad, lr): (&mut ModuleOptimizer, &Device, f64),
    (loss_sum, loss_n, step): &mut (f64, usize, usize),
    progress: &dyn Progress,
) -> RecoNet {
    let parallel = rayon::current_num_threads() > 1;
    for idx in w.order.chunks(input.schedule().batch_size) {
        let (a, b) = halves(idx, w.groups.as_deref());
        let ((grads, loss), rest) = if b.is_empty() {
            (half_gradients(w, input, &model, ad, a, (1.0, 1.0)), None)
        } else {
            let (sa, sb) = shares(w.groups.as_deref(), idx, (a, b));
            let first = || half_gradients(w, input, &model, ad, a, sa);
            let (x, y) = if parallel {
                // The second half differentiates a fork of the model: the same parameters as
                // separate autodiff leaves, so the halves' graphs (and their locks) stay apart.
                let fork = model.clone().fork(ad);
                rayon::join(first, || half_gradients(w, input, &fork, ad, b, sb))
            } else {
                (first(), half_gradients(w, input, &model, ad, b, sb))
            };
            (x, Some(y))
        };
        let (grads, loss) = match rest {
            None => (grads, loss),
            Some((more, l)) => {
                let mut sum = GradientsAccumulator::<RecoNet>::new();
                sum.accumulate(&model, grads);
                sum.accumulate(&model, more);
                (sum.grads(), loss + l)
            }
        };
        if *step % 20 == 0 {
            *loss_sum += f64::from(loss);
            *loss_n += 1;
            progress.status(&format!("loss {loss:.4}"));
        }
        model = optim.step(lr, model, grads);
        progress.advance(1);
        *step += 1;
    }
    model
}

/// A batch's two halves: cut at the middle, or, with candidate groups (which epochs keep
/// together), at the group boundary nearest the middle (the whole batch and nothing when it
/// holds one group).
fn halves<'i>(idx: &'i [usize], groups: Option<&[u32]>) -> (&'i [usize], &'i [usize]) {
    if idx.len() < 2 {
        // A last batch of one row: no half may be empty (a mean over no rows is NaN).
        return (idx, &[]);
    }
    let mid = idx.len() / 2;
    let Some(g) = groups else { return idx.split_at(mid) };
    let boundary = |i: &usize| *i > 0 && g[idx[*i]] != g[idx[*i - 1]];
    let before = (1..=mid).rev().find(boundary);
    let after = (mid..idx.len()).find(boundary);
    let cut = match (before, after) {
        (Some(x), Some(y)) => {
            if mid - x <= y - mid {
                x
            } else {
                y
            }
        }
        (Some(x), None) => x,
        (None, Some(y)) => y,
        (None, None) => idx.len(),
    };
    idx.split_at(cut)
}

/// Each half's weights in its batch's loss: its share of the rows (for the per-row mean
/// terms) and of the groups the listwise term averages over (no group spans both halves).
fn shares(groups: Option<&[u32]>, batch: &[usize], halves: (&[usize], &[usize])) -> ((f32, f32), (f32, f32)) {
    let rows = |half: &[usize]| half.len() as f32 / batch.len() as f32;
    let (ra, rb) = (rows(halves.0), rows(halves.1));
    let Some(g) = groups else { return ((ra, ra), (rb, rb)) };
    let counted = |rows: &[usize]| counted_groups(&rows.iter().map(|&i| g[i]).collect::<Vec<u32>>());
    let all = counted(batch);
    let share = |half: &[usize]| if all == 0 { 0.0 } else { counted(half) as f32 / all as f32 };
    ((ra, share(halves.0)), (rb, share(halves.1)))
}

/// The gradients of the loss on rows `idx` of a window, its per-row mean terms weighted by
/// `shares.0` and its listwise term by `shares.1` ([`shares`]), and that weighted loss, for
/// the model's parameters.
fn half_gradients(
    w: &Window<'_>,
    input: &FitInput<'_>,
    model: &RecoNet,
    ad: &Device,
    idx: &[usize],
    (share, group_share): (f32, f32),
) -> (GradientsParams, f32) {
    let k = input.spec.numeric.len();
    let batch = BatchTensors::new(input.spec, &w.enc, idx, k, ad);
    let y: Vec<f32> = idx.iter().map(|&i| w.labels[i]).collect();
    let labels = Tensor::<1>::from_data(TensorData::new(y, [idx.len()]), ad);
    let logits = model.forward(&batch);
    let loss = match (&input.objective, &w.teacher) {
        (Objective::Distill { weights, .. }, Some(t)) => {
            let t: Vec<f32> = idx.iter().map(|&i| t[i]).collect();
            let teacher = Tensor::<1>::from_data(TensorData::new(t, [idx.len()]), ad);
            let groups: Vec<u32> = w.groups.as_ref().map_or_else(Vec::new, |g| idx.iter().map(|&i| g[i]).collect());
            match distillation_terms(logits, teacher, labels, &groups, *weights) {
                (pointwise, Some(listwise)) => pointwise.mul_scalar(share) + listwise.mul_scalar(group_share),
                (pointwise, None) => pointwise.mul_scalar(share),
            }
        }
        _ => bce_with_logits(logits, labels).mul_scalar(share),
    };
    let value = loss.clone().into_data().as_slice::<f32>().map(|s| s[0]).unwrap_or(f32::NAN);
    (GradientsParams::from_grads(loss.backward(), model), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::loss::distillation;

    #[test]
    fn a_batch_is_cut_in_two_nonempty_halves_at_the_group_boundary_nearest_the_middle() {
        let idx: Vec<usize> = (0..10).collect();
        assert_eq!(halves(&idx[..1], None), (&idx[..1], &idx[..0]), "one row: no empty half");
        assert_eq!(halves(&idx[..2], None), (&idx[..1], &idx[1..2]));
        assert_eq!(halves(&idx, None), (&idx[..5], &idx[5..]));
        // Groups 0-2, 3-6, 7-9: the middle (5) lies in the second; 3 and 7 are as near, the
        // earlier wins. Rows are looked up through `idx`, so a permuted batch cuts by its ids.
        let g = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2];
        assert_eq!(halves(&idx, Some(&g)), (&idx[..3], &idx[3..]));
        let rev: Vec<usize> = (0..10).rev().collect();
        assert_eq!(halves(&rev, Some(&g)), (&rev[..3], &rev[3..]), "rows 9, 8, 7 are group 2");
        assert_eq!(halves(&idx, Some(&[5; 10])), (&idx[..], &idx[10..]), "one group stays whole");
    }

    #[test]
    fn the_halves_weighted_losses_add_up_to_the_whole_batch_loss() {
        // Per-row means weighted by row shares, the listwise mean over groups by group shares:
        // halves of 5 rows / 1 group and 5 rows / 2 groups (the lone row 7 counts for none), so
        // weighting the listwise term by rows (1/2, 1/2 for 1/3, 2/3) would not add up.
        let dev = burn::tensor::Device::flex().autodiff();
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev);
        let student = vec![0.3f32, -1.2, 2.0, 0.5, -0.7, 1.1, 0.0, -2.5, 0.9, 1.7];
        let teacher = vec![0.1f32, -0.4, 1.5, 1.0, -1.0, 0.2, 0.6, -1.9, 1.3, 0.4];
        let labels = vec![1f32, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let groups = [4u32, 4, 4, 4, 4, 8, 8, 9, 2, 2];
        let w = DistillWeights { temperature: 2.0, alpha: 0.6, listwise: 0.5 };
        let value = |x: Tensor<1>| f64::from(x.into_data().as_slice::<f32>().unwrap()[0]);
        let idx: Vec<usize> = (0..10).collect();
        let whole = value(distillation(t(student.clone()), t(teacher.clone()), t(labels.clone()), &groups, w));
        let (a, b) = halves(&idx, Some(&groups));
        assert_eq!((a.len(), b.len()), (5, 5));
        let part = |rows: &[usize]| {
            let pick = |v: &[f32]| rows.iter().map(|&i| v[i]).collect::<Vec<f32>>();
            let g: Vec<u32> = rows.iter().map(|&i| groups[i]).collect();
            let (sa, sb) = shares(Some(&groups), &idx, (a, b));
            let (share, group_share) = if rows == a { sa } else { sb };
            match distillation_terms(t(pick(&student)), t(pick(&teacher)), t(pick(&labels)), &g, w) {
                (p, Some(l)) => value(p) * f64::from(share) + value(l) * f64::from(group_share),
                (p, None) => value(p) * f64::from(share),
            }
        };
        let sum = part(a) + part(b);
        assert!((sum - whole).abs() < 1e-5, "halves {sum} against the batch {whole}");
    }
}
