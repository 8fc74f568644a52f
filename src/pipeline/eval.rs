//! `eval`: side-by-side metrics of one or more artifacts on a feature file (DESIGN §8).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::chunks::Split;
use crate::data::features::FeatureFrame;
use crate::metrics::{self, Resamples};
use reco_runtime::artifact::Manifest;
use reco_runtime::error::{Error, Result};
use reco_runtime::runtime::{Model, sigmoid};

/// One model's row of the evaluation table (the stable JSON shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelEval {
    /// Artifact directory name (`teacher`, `student`, ...).
    pub name: String,
    /// Artifact path.
    pub path: String,
    /// Manifest kind.
    pub kind: reco_runtime::artifact::manifest::Kind,
    /// ROC AUC on the data file.
    pub auc: Option<f64>,
    /// Mean log loss.
    pub logloss: f64,
    /// Expected calibration error (10 bins).
    pub ece: f64,
    /// HR@10 on the ranking set (true place + sampled candidates per query).
    #[serde(rename = "hr@10")]
    pub hr10: Option<f64>,
    /// NDCG@10 on the ranking set.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: Option<f64>,
    /// Bootstrap 95% interval of the AUC (rows resampled).
    #[serde(default)]
    pub auc_ci95: Option<[f64; 2]>,
    /// Bootstrap 95% interval of NDCG@10 (queries resampled).
    #[serde(default, rename = "ndcg@10_ci95")]
    pub ndcg10_ci95: Option<[f64; 2]>,
    /// Reliability diagram: 10 equal-width bins of predicted probability.
    #[serde(default)]
    pub calibration: Vec<metrics::CalibrationBin>,
    /// Bytes a server ships: `manifest.json` (as its stage wrote it) and every file it lists,
    /// exports left out (`sizes` breaks them down).
    pub size_bytes: u64,
    /// Each table's and layer's bytes with its precision, the manifest's and the header's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<reco_runtime::artifact::size::SizeReport>,
    /// Rows scored.
    pub rows: usize,
    /// Scoring latency over the whole file, microseconds per row (1 thread, batches of 4096).
    #[serde(default)]
    pub us_per_row: f64,
    /// Bootstrap 95% interval of oracle AUC − this AUC, paired (the same row resamples for
    /// both; synthetic data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_auc_gap_ci95: Option<[f64; 2]>,
    /// Paired intervals against the model's parent (a student's teacher, an INT8 model's float
    /// model) when both were evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_parent: Option<Paired>,
    /// A distilled student's paired intervals against the scratch student of the same
    /// architecture (what distillation bought), when both were evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_scratch: Option<Paired>,
}

/// Bootstrap 95% intervals of a model against another on the same resamples (rows for AUC,
/// queries for NDCG@10): the noise both share cancels, so these are far narrower than the
/// two models' own intervals side by side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Paired {
    /// The other model's name.
    pub against: String,
    /// This AUC / the other's.
    pub auc_ratio_ci95: Option<[f64; 2]>,
    /// This NDCG@10 / the other's.
    #[serde(rename = "ndcg@10_ratio_ci95")]
    pub ndcg10_ratio_ci95: Option<[f64; 2]>,
    /// This AUC − the other's.
    pub auc_delta_ci95: Option<[f64; 2]>,
    /// This NDCG@10 − the other's.
    #[serde(rename = "ndcg@10_delta_ci95")]
    pub ndcg10_delta_ci95: Option<[f64; 2]>,
}

/// One model's bootstrap resamples, kept while the evaluation pairs models.
struct ModelResamples {
    auc: Resamples,
    ndcg10: Resamples,
}

impl Paired {
    fn of(against: &str, this: &ModelResamples, other: &ModelResamples) -> Self {
        let (ratio, diff) = (|a: f64, b: f64| a / b, |a: f64, b: f64| a - b);
        Self {
            against: against.to_string(),
            auc_ratio_ci95: this.auc.paired(&other.auc, ratio).ci95(),
            ndcg10_ratio_ci95: this.ndcg10.paired(&other.ndcg10, ratio).ci95(),
            auc_delta_ci95: this.auc.paired(&other.auc, diff).ci95(),
            ndcg10_delta_ci95: this.ndcg10.paired(&other.ndcg10, diff).ci95(),
        }
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    /// AUC of the true probability (synthetic data), the ceiling any model can reach.
    pub oracle_auc: Option<f64>,
    /// One row per model.
    pub models: Vec<ModelEval>,
    /// Rankings that use no model, with the same metrics: whatever a model does should beat them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<BaselineEval>,
}

/// A ranking without a model: scores read straight from a feature column.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Most visited in the trailing window first (`place_visits_w`).
    Popularity,
    /// Nearest to the context location first (`distance_km`).
    Nearest,
    /// The places the user visited most before first (`user_place_visits`), ties by
    /// trailing-window popularity (`place_visits_w`).
    History,
}

/// A baseline's row of the evaluation table. Its scores are not probabilities, so logloss
/// and ECE do not exist for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineEval {
    /// Which baseline.
    pub name: Baseline,
    /// ROC AUC of its scores on the data file.
    pub auc: Option<f64>,
    /// HR@10 on the ranking set.
    #[serde(rename = "hr@10")]
    pub hr10: Option<f64>,
    /// NDCG@10 on the ranking set.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: Option<f64>,
    /// Rows scored.
    pub rows: usize,
    /// Bootstrap 95% interval of the AUC (the same row resamples as the models').
    #[serde(default)]
    pub auc_ci95: Option<[f64; 2]>,
    /// Bootstrap 95% interval of NDCG@10 (the same query resamples as the models').
    #[serde(default, rename = "ndcg@10_ci95")]
    pub ndcg10_ci95: Option<[f64; 2]>,
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Popularity => "popularity",
            Self::Nearest => "nearest",
            Self::History => "history",
        })
    }
}

impl Baseline {
    /// Its scores on a feature file (higher ranks first), taken out of the frame, when the
    /// file has its column.
    fn take_scores(self, f: &mut FeatureFrame) -> Option<Vec<f32>> {
        match self {
            Self::History => f.baselines.history.take().map(|h| by_history(&h, f.baselines.popularity.as_deref())),
            Self::Popularity => f.baselines.popularity.take(),
            Self::Nearest => f.baselines.distance.take().map(|mut v| {
                v.iter_mut().for_each(|x| *x = -*x);
                v
            }),
        }
    }
}

/// The history baseline's scores: rows ordered by the user's past visits to the place, then
/// by popularity (`None`: all tied), scored by their dense rank in that order.
fn by_history(visits: &[f32], popularity: Option<&[f32]>) -> Vec<f32> {
    let pop = |i: usize| popularity.map_or(0.0, |p| p[i]);
    let key = |i: usize| (visits[i], pop(i));
    let mut order: Vec<usize> = (0..visits.len()).collect();
    order.sort_by(|&a, &b| key(a).0.total_cmp(&key(b).0).then(key(a).1.total_cmp(&key(b).1)));
    let mut scores = vec![0f32; visits.len()];
    let mut rank = 0f32;
    for (k, &i) in order.iter().enumerate() {
        if k > 0 && key(order[k - 1]) != key(i) {
            rank += 1.0;
        }
        scores[i] = rank;
    }
    scores
}

/// HR@10 and NDCG@10 of `scores` on a ranking set (`None`, `None` when no query counts), and
/// NDCG@10's bootstrap resamples.
fn ranking_metrics(r: &FeatureFrame, scores: &[f32], path: &Path) -> Result<(Option<f64>, Option<f64>, Resamples)> {
    let (q, labels) = query_labels(r, path)?;
    let (hr, ndcg, n) = metrics::ranking(q, scores, labels, 10);
    let rs = metrics::ndcg_resamples(q, scores, labels, 10, BOOTSTRAP_SEED);
    Ok(if n == 0 { (None, None, rs) } else { (Some(hr), Some(ndcg), rs) })
}

/// The query ids and labels of a ranking set.
fn query_labels<'a>(r: &'a FeatureFrame, path: &Path) -> Result<(&'a [i64], &'a [f32])> {
    let q = r
        .query_id
        .as_deref()
        .ok_or_else(|| Error::input(format!("{}: the ranking file has no query_id column", path.display())))?;
    Ok((q, r.labels(path)?))
}

/// Seed of every bootstrap interval: fixed, so the same scores give the same interval.
const BOOTSTRAP_SEED: u64 = 0x5eed;

/// The history (with history features), popularity and (with coordinates) nearest-first rows; their columns are taken out of
/// `frame` and `rank` one at a time.
fn baselines(
    frame: &mut FeatureFrame,
    labels: &[f32],
    mut rank: Option<&mut FeatureFrame>,
    rank_path: &Path,
) -> Result<Vec<BaselineEval>> {
    let mut out = Vec::new();
    // History first: it reads the popularity column the popularity row then takes.
    for b in [Baseline::History, Baseline::Popularity, Baseline::Nearest] {
        let Some(scores) = b.take_scores(frame) else { continue };
        let (hr10, ndcg10, ndcg_rs) = match rank.as_deref_mut().and_then(|r| b.take_scores(r).map(|s| (r, s))) {
            Some((r, s)) => ranking_metrics(r, &s, rank_path)?,
            None => (None, None, Resamples::default()),
        };
        out.push(BaselineEval {
            name: b,
            auc: metrics::auc(&scores, labels),
            hr10,
            ndcg10,
            rows: scores.len(),
            auc_ci95: metrics::auc_ci(&scores, labels, BOOTSTRAP_SEED),
            ndcg10_ci95: ndcg_rs.ci95(),
        });
    }
    Ok(out)
}

/// The ranking file `prepare` writes next to a feature file, if present.
pub fn default_ranking(data: &Path) -> Option<PathBuf> {
    let p = data.with_file_name("ranking.parquet");
    p.is_file().then_some(p)
}

/// Evaluates each model on `data` (and the ranking set, when given).
pub fn evaluate(
    models: &[PathBuf],
    data: &Path,
    ranking: Option<&Path>,
    progress: &dyn crate::progress::Progress,
) -> Result<EvalReport> {
    let opened = open_models(models)?;
    let spec = opened[0].1.1.spec();
    // The test rows stream a row group at a time: once for the labels, the oracle and the
    // baselines' columns (their metrics first, then only the labels stay), then once per
    // model, which keeps only its own scores while its metrics are computed.
    progress.begin("eval: labels and baselines, then each model", opened.len() as u64 + 1);
    let split = Split::open(data, spec, true, 0)?;
    let mut frame = split.without_inputs(spec, |_| Ok(()))?;
    frame.labels(data)?;
    let labels = frame.label.take().unwrap_or_default();
    let oracle = frame.oracle.take();
    let oracle_auc = oracle.as_ref().and_then(|o| metrics::auc(o, &labels));
    let oracle_rs = oracle.map(|o| metrics::auc_resamples(&o, &labels, BOOTSTRAP_SEED));
    let mut rank = ranking.map(|p| FeatureFrame::read(p, spec, true)).transpose()?;
    let rank_path = ranking.unwrap_or(data);
    let baselines = baselines(&mut frame, &labels, rank.as_mut(), rank_path)?;
    drop(frame);
    progress.advance(1);
    let (mut rows, mut resamples) = (Vec::new(), Vec::new());
    let test = Test { split: &split, labels: &labels, oracle: oracle_rs.as_ref(), rank: rank.as_ref(), rank_path };
    for (dir, (manifest, model)) in &opened {
        let (row, rs) = evaluate_model(dir, manifest, model, &test)?;
        rows.push(row);
        resamples.push(rs);
        progress.advance(1);
    }
    progress.end();
    pair_with_parents(&opened, &mut rows, &resamples);
    pair_with_scratch(&opened, &mut rows, &resamples);
    Ok(EvalReport { oracle_auc, models: rows, baselines })
}

/// Every model, opened and verified; all must take the same input columns.
fn open_models(models: &[PathBuf]) -> Result<Vec<(&PathBuf, (Manifest, Model))>> {
    if models.is_empty() {
        return Err(Error::input("eval: expected at least one model directory"));
    }
    let mut opened = Vec::new();
    for dir in models {
        opened.push((dir, Model::open(dir)?));
    }
    let spec = opened[0].1.1.spec();
    for (dir, (_, m)) in &opened[1..] {
        if m.spec().input_names() != spec.input_names() {
            return Err(Error::input(format!(
                "{}: its feature columns differ from {}'s; models compared side by side must share inputs",
                dir.display(),
                opened[0].0.display()
            )));
        }
    }
    Ok(opened)
}

/// What every model is measured on: the test split with its labels (and the oracle's
/// resamples), and the ranking set.
struct Test<'a> {
    split: &'a Split,
    labels: &'a [f32],
    oracle: Option<&'a Resamples>,
    rank: Option<&'a FeatureFrame>,
    rank_path: &'a Path,
}

/// One model's row of the table, and its bootstrap resamples (kept to pair it with its parent).
fn evaluate_model(dir: &Path, manifest: &Manifest, model: &Model, t: &Test<'_>) -> Result<(ModelEval, ModelResamples)> {
    let (spec, labels) = (model.spec(), t.labels);
    let mut secs = 0f64;
    let logits = t.split.map_rows(spec, |cols| {
        let start = Instant::now();
        let z = model.logits(cols);
        secs += start.elapsed().as_secs_f64();
        z
    })?;
    let us_per_row = secs * 1e6 / labels.len().max(1) as f64;
    let (hr10, ndcg10, ndcg_rs) = match t.rank {
        Some(r) => ranking_metrics(r, &model.logits(&r.columns)?, t.rank_path)?,
        None => (None, None, Resamples::default()),
    };
    let auc_rs = metrics::auc_resamples(&logits, labels, BOOTSTRAP_SEED);
    let oracle_auc_gap_ci95 = t.oracle.and_then(|o| o.paired(&auc_rs, |o, m| o - m).ci95());
    let probs: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
    let sizes = reco_runtime::artifact::size::of_artifact(dir, manifest)?;
    let row = ModelEval {
        name: crate::outputs::dir_name(dir),
        path: dir.display().to_string(),
        kind: manifest.kind,
        auc: metrics::auc(&logits, labels),
        logloss: metrics::logloss(&probs, labels),
        ece: metrics::ece(&probs, labels, 10),
        hr10,
        ndcg10,
        auc_ci95: auc_rs.ci95(),
        ndcg10_ci95: ndcg_rs.ci95(),
        calibration: metrics::calibration_bins(&probs, labels, 10),
        size_bytes: sizes.deployable_bytes,
        sizes: Some(sizes),
        rows: labels.len(),
        us_per_row,
        oracle_auc_gap_ci95,
        vs_parent: None,
        vs_scratch: None,
    };
    Ok((row, ModelResamples { auc: auc_rs, ndcg10: ndcg_rs }))
}

/// Each model whose parent (its lineage) is among the evaluated ones gets paired intervals
/// against it.
fn pair_with_parents(opened: &[(&PathBuf, (Manifest, Model))], rows: &mut [ModelEval], rs: &[ModelResamples]) {
    let artifacts: Vec<(&Path, &Manifest)> = opened.iter().map(|(d, (m, _))| (d.as_path(), m)).collect();
    for (i, parent) in reco_runtime::artifact::parents_among(&artifacts).into_iter().enumerate() {
        if let Some(j) = parent {
            let against = rows[j].name.clone();
            rows[i].vs_parent = Some(Paired::of(&against, &rs[i], &rs[j]));
        }
    }
}

/// Each distilled student gets paired intervals against the first scratch student of the same
/// architecture among the evaluated models (distilled minus scratch: what distillation bought).
fn pair_with_scratch(opened: &[(&PathBuf, (Manifest, Model))], rows: &mut [ModelEval], rs: &[ModelResamples]) {
    use reco_runtime::artifact::manifest::Kind;
    for i in 0..opened.len() {
        let m = &opened[i].1.0;
        if m.kind != Kind::Student {
            continue;
        }
        let scratch = (0..opened.len())
            .find(|&j| opened[j].1.0.kind == Kind::StudentScratch && opened[j].1.0.architecture == m.architecture);
        if let Some(j) = scratch {
            let against = rows[j].name.clone();
            rows[i].vs_scratch = Some(Paired::of(&against, &rs[i], &rs[j]));
        }
    }
}

/// A distilled student's gain over its scratch student, with paired intervals, as a line of
/// the table (`None` without a scratch student).
fn gain_line(report: &EvalReport, m: &ModelEval) -> Option<String> {
    let p = m.vs_scratch.as_ref()?;
    let other = report.models.iter().find(|o| o.name == p.against)?;
    let delta = |a: Option<f64>, b: Option<f64>, ci: Option<[f64; 2]>| match (a.zip(b), ci) {
        (Some((a, b)), Some([lo, hi])) => format!("{:+.4} [{lo:+.4}, {hi:+.4}]", a - b),
        (Some((a, b)), None) => format!("{:+.4}", a - b),
        _ => "-".into(),
    };
    Some(format!(
        "distillation gain, {} - {} (paired 95% interval): AUC {}, NDCG@10 {}\n",
        m.name,
        p.against,
        delta(m.auc, other.auc, p.auc_delta_ci95),
        delta(m.ndcg10, other.ndcg10, p.ndcg10_delta_ci95)
    ))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.4}"))
}

/// The human-readable table.
pub fn table(report: &EvalReport) -> String {
    // Names as wide as the longest (a sweep's `student-scratch-r0.25`), kinds as `student-scratch`.
    let w = report.models.iter().map(|m| m.name.len()).max().unwrap_or(0).max(16);
    let mut s = format!(
        "{:<w$} {:<15} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9}\n",
        "model", "kind", "auc", "logloss", "ece", "hr@10", "ndcg@10", "size", "us/row"
    );
    for m in &report.models {
        s.push_str(&format!(
            "{:<w$} {:<15} {:>8} {:>8.4} {:>8.4} {:>8} {:>8} {:>11} {:>9.3}\n",
            m.name,
            m.kind.to_string(),
            opt(m.auc),
            m.logloss,
            m.ece,
            opt(m.hr10),
            opt(m.ndcg10),
            m.size_bytes,
            m.us_per_row
        ));
    }
    for b in &report.baselines {
        let name = format!("{b:?}", b = b.name).to_lowercase();
        s.push_str(&format!(
            "{:<w$} {:<15} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9}\n",
            name,
            "baseline",
            opt(b.auc),
            "-",
            "-",
            opt(b.hr10),
            opt(b.ndcg10),
            "-",
            "-"
        ));
    }
    if let Some(o) = report.oracle_auc {
        s.push_str(&format!("oracle AUC (true visit probability): {o:.4}\n"));
    }
    for m in &report.models {
        s.extend(gain_line(report, m));
    }
    for m in &report.models {
        if let Some(sizes) = &m.sizes {
            s.push_str(&size_line(&m.name, sizes));
        }
    }
    s
}

/// `bytes of NAME: part precision bytes, ...`: where one model's size goes.
fn size_line(name: &str, sizes: &reco_runtime::artifact::size::SizeReport) -> String {
    let parts: Vec<String> = sizes.rows().iter().map(|r| format!("{} ({}) {}", r.part, r.what, r.bytes)).collect();
    format!("bytes of {name}: {}\n", parts.join(", "))
}

/// The accuracy-gate metrics of one model on a test file and ranking set.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    /// ROC AUC.
    pub auc: Option<f64>,
    /// Mean log loss.
    pub logloss: f64,
    /// NDCG@10 on the ranking set.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: Option<f64>,
}

/// AUC, logloss and NDCG@10 of an in-memory model on a test split (`labels`: its labels, read
/// once) and ranking set, with the model's logits on the ranking set (when it has queries and
/// labels).
pub fn quality_and_ranking(
    model: &reco_runtime::runtime::Model,
    (test, labels): (&Split, &[f32]),
    ranking: Option<&FeatureFrame>,
) -> Result<(Quality, Option<Vec<f32>>)> {
    let logits = test.map_rows(model.spec(), |cols| model.logits(cols))?;
    let probs: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
    let (mut ndcg10, mut scores) = (None, None);
    if let Some(r) = ranking
        && let (Some(q), Some(y)) = (r.query_id.as_deref(), r.label.as_deref())
    {
        let s = model.logits(&r.columns)?;
        let (_, ndcg, n) = metrics::ranking(q, &s, y, 10);
        ndcg10 = (n > 0).then_some(ndcg);
        scores = Some(s);
    }
    let q = Quality { auc: metrics::auc(&logits, labels), logloss: metrics::logloss(&probs, labels), ndcg10 };
    Ok((q, scores))
}
