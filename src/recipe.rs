//! Recipes: the TOML file that describes one pipeline run, and its validation.
//!
//! Every table rejects unknown keys, so a typo is an error rather than a silently ignored
//! setting. The resolved recipe (after command-line overrides) is saved in every artifact.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::schema::FilesConfig;
use reco_runtime::artifact::manifest::Interaction;
use reco_runtime::error::{Error, IoContext, Result};
use reco_runtime::quant::EmbeddingBits;
use reco_runtime::quant::calibrate::Calibrator;
use std::collections::BTreeMap;

/// A whole recipe file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Name of the run; the default output directory is `artifacts/<name>/`.
    pub name: String,
    /// Seed for data generation, splits, sampling and training.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Where the raw tables come from.
    pub data: DataConfig,
    /// Feature preparation.
    #[serde(default)]
    pub prepare: PrepareConfig,
    /// Teacher training.
    #[serde(default)]
    pub train: TrainConfig,
    /// Student distillation.
    #[serde(default)]
    pub distill: DistillConfig,
    /// INT8 post-training quantization.
    #[serde(default)]
    pub quantize: QuantizeConfig,
    /// Quality gates checked by `run` (exit code 1 when one fails).
    #[serde(default)]
    pub gates: GatesConfig,
    /// Batching for serving: `reco-cli serve --recipe` and `export --format triton`.
    #[serde(default, skip_serializing_if = "ServeConfig::is_default")]
    pub serve: ServeConfig,
    /// Experiment tracking: an MLflow server `run` logs to.
    #[serde(default, skip_serializing_if = "TrackConfig::is_default")]
    pub track: TrackConfig,
}

/// Where `run` logs its runs and registers its models (`[track]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrackConfig {
    /// MLflow tracking server, `http://HOST:PORT` or `https://...` (unset: `MLFLOW_TRACKING_URI`
    /// when that is an http(s) URL, else no tracking).
    pub mlflow: Option<String>,
    /// MLflow experiment (created when missing; unset: the recipe's name).
    pub experiment: Option<String>,
    /// Register the artifact `run` recommends as a new version of this registered model.
    pub register: Option<String>,
    /// A tracking failure (after bounded retries) fails the command (exit 2) instead of a warning;
    /// the run's files are on disk either way.
    pub required: bool,
}

impl TrackConfig {
    /// True when nothing is set (the section is then left out of resolved recipes).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// An http(s) URL, and a registered-model name MLflow accepts (not empty, no `/` or `:`).
    pub fn validate(&self) -> Result<()> {
        if let Some(u) = &self.mlflow
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            // The URL itself is not shown: it may hold a password.
            let scheme = u.split_once("://").map_or("not a", |(s, _)| s);
            return Err(Error::input(format!(
                "track.mlflow: expected an http:// or https:// URL, got a {scheme:?} URL"
            )));
        }
        if let Some(n) = &self.register
            && (n.trim().is_empty() || n.contains(['/', ':']))
        {
            return Err(Error::input(format!(
                "track.register = {n:?}: MLflow registered-model names are not empty and hold no '/' or ':'"
            )));
        }
        if let Some(e) = &self.experiment
            && e.trim().is_empty()
        {
            return Err(Error::input("track.experiment = \"\": expected an experiment name"));
        }
        Ok(())
    }
}

/// How a server batches requests, shared by `reco-cli serve --recipe` (its `--max-batch`,
/// `--max-wait-ms`, `--queue-rows`, `--threads`) and `export --format triton` (the model's
/// `max_batch_size`, `dynamic_batching` and `instance_group`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Most rows in one scored batch.
    pub max_batch: usize,
    /// Extra wait of a batch's oldest request for more rows, milliseconds (0: none).
    pub max_wait_ms: u64,
    /// Most rows queued at once (more is refused).
    pub queue_rows: usize,
    /// Scoring threads (Triton: CPU instances).
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self { max_batch: 64, max_wait_ms: 0, queue_rows: 4096, threads: 1 }
    }
}

impl ServeConfig {
    /// True when every field has its default (the section is then left out of resolved recipes).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The ranges `serve` accepts.
    pub fn validate(&self) -> Result<()> {
        let checks: [(&str, u64, u64, u64); 4] = [
            ("max_batch", self.max_batch as u64, 1, 1 << 20),
            ("max_wait_ms", self.max_wait_ms, 0, 3_600_000),
            ("queue_rows", self.queue_rows as u64, 1, 1 << 30),
            ("threads", self.threads as u64, 1, 1024),
        ];
        match checks.iter().find(|(_, v, lo, hi)| v < lo || v > hi) {
            Some((k, v, lo, hi)) => Err(Error::input(format!("serve.{k} = {v}: expected {lo} to {hi}"))),
            None => Ok(()),
        }
    }

    /// The matching `reco-serve` flags.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--max-batch", self.max_batch as u64),
            ("--max-wait-ms", self.max_wait_ms),
            ("--queue-rows", self.queue_rows as u64),
            ("--threads", self.threads as u64),
        ]
        .iter()
        .flat_map(|(f, v)| [f.to_string(), v.to_string()])
        .collect()
    }
}

/// The listwise weight when `distill.listwise` is unset and the training rows come in groups
/// (on Gowalla NYC and the quickstart it turned distillation's NDCG@10 loss or tie against the
/// scratch student into a gain; README, Distillation).
pub const DEFAULT_LISTWISE: f64 = 1.0;

/// Distillation settings (DESIGN §5).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Compression ratio: hidden widths and embedding dims are scaled by it, in (0, 1].
    pub ratio: f64,
    /// A size sweep in `run`: the student at each ratio (the first replaces `ratio`: the
    /// student that is quantized and gated; each other one is `student-r<ratio>`, beside its
    /// scratch baseline `student-scratch-r<ratio>`). Empty: `ratio` alone.
    pub ratios: Vec<f64>,
    /// Temperature T > 0 of the soft term.
    pub temperature: f64,
    /// Weight of the soft term, in [0, 1].
    pub alpha: f64,
    /// Also train the same student from scratch (hard labels only) as a baseline.
    pub scratch_baseline: bool,
    /// Weight of the listwise (ranking) soft term over each group of candidates of one user at
    /// one moment, `T² · KL(softmax(t/T) || softmax(s/T))` within the group; 0: none; unset:
    /// [`DEFAULT_LISTWISE`] when the training rows come in groups, else none.
    pub listwise: Option<f64>,
    /// Teachers whose mean logit is the soft target: the teacher and `teachers - 1` more of its
    /// architecture and training settings with seeds `seed + 1, seed + 2, ...` (1: the teacher).
    pub teachers: usize,
    /// Epochs for the student (default: train.epochs).
    pub epochs: Option<usize>,
    /// Learning rate for the student (default: train.learning_rate).
    pub learning_rate: Option<f64>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            ratios: Vec::new(),
            temperature: 3.0,
            alpha: 0.7,
            scratch_baseline: true,
            listwise: None,
            teachers: 1,
            epochs: None,
            learning_rate: None,
        }
    }
}

impl DistillConfig {
    /// Range checks: T > 0, alpha in [0, 1], ratio in (0, 1].
    pub fn validate(&self) -> Result<()> {
        // T² scales the soft term in f32: past 1000 it overflows and looks like a divergence.
        if !(self.temperature > 0.0 && self.temperature <= 1000.0) {
            return Err(Error::input(format!(
                "distill temperature = {}: expected a number in (0, 1000]",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::input(format!("distill alpha = {}: expected a number in [0, 1]", self.alpha)));
        }
        if self.ratios.len() > 4 {
            return Err(Error::input(format!("distill ratios: {} sizes, expected at most 4", self.ratios.len())));
        }
        for (i, r) in self.ratios.iter().enumerate() {
            if !(*r > 0.0 && *r <= 1.0) {
                return Err(Error::input(format!("distill ratios = {:?}: {r} is not in (0, 1]", self.ratios)));
            }
            if self.ratios[..i].contains(r) {
                return Err(Error::input(format!("distill ratios = {:?}: {r} is there twice", self.ratios)));
            }
        }
        if !(1..=16).contains(&self.teachers) {
            return Err(Error::input(format!("distill teachers = {}: expected 1 to 16", self.teachers)));
        }
        if let Some(w) = self.listwise
            && !(0.0..=100.0).contains(&w)
        {
            return Err(Error::input(format!("distill listwise = {w}: expected a number in [0, 100]")));
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(Error::input(format!("distill ratio = {}: expected a number in (0, 1]", self.ratio)));
        }
        if self.epochs == Some(0) || self.learning_rate.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
            return Err(Error::input("distill: epochs and learning_rate must be positive"));
        }
        Ok(())
    }

    /// The settings of the main student: `ratios[0]` as the ratio when a sweep is given.
    pub fn main(&self) -> DistillConfig {
        let mut d = self.clone();
        if let Some(&r) = self.ratios.first() {
            d.ratio = r;
        }
        d
    }

    /// The sweep's other ratios (after the main student's).
    pub fn extra_ratios(&self) -> &[f64] {
        self.ratios.get(1..).unwrap_or(&[])
    }

    /// The training settings of the student: the teacher's, with this section's overrides.
    pub fn student_train(&self, train: &TrainConfig) -> TrainConfig {
        let mut t = train.clone();
        if let Some(e) = self.epochs {
            t.epochs = Some(e);
        }
        if let Some(lr) = self.learning_rate {
            t.learning_rate = lr;
        }
        t
    }
}

/// How a float model becomes INT8: the one settings type of the recipe's `[quantize]`, the
/// `quantize` command's flags and the stage, validated once ([`QuantizeSettings::validate`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuantizeSettings {
    /// Activation range chooser.
    pub calibrator: Calibrator,
    /// One weight scale per output channel (else one per tensor).
    pub per_channel: bool,
    /// Per-batch activation ranges instead of calibrated static ones.
    pub dynamic: bool,
    /// Weight bits: 8 (±127) or 7 (±63: exact on AVX2's fast `vpmaddubsw` path).
    pub weight_bits: u32,
    /// Largest allowed |AUC(int8) - AUC(float)|.
    pub max_auc_drop: f64,
    /// Largest allowed |NDCG@10(int8) - NDCG@10(float)|.
    pub max_ndcg_drop: f64,
    /// Every embedding table's precision: `auto` (4 bits, raised to 8 table by table while
    /// the gate fails), 8 or 4.
    pub embedding_bits: EmbeddingPrecision,
    /// Per-table overrides of `embedding_bits`, by categorical column.
    pub embedding_table_bits: BTreeMap<String, EmbeddingPrecision>,
}

impl Default for QuantizeSettings {
    fn default() -> Self {
        Self {
            calibrator: Calibrator::Percentile,
            per_channel: true,
            dynamic: false,
            weight_bits: 7,
            max_auc_drop: 0.001,
            max_ndcg_drop: 0.002,
            embedding_bits: EmbeddingPrecision::Auto,
            embedding_table_bits: BTreeMap::new(),
        }
    }
}

/// An embedding table's precision as asked: chosen by the accuracy gate, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddingPrecision {
    /// 4 bits unless the gate needs 8.
    #[default]
    Auto,
    /// Fixed.
    Bits(EmbeddingBits),
}

impl EmbeddingPrecision {
    /// Parses `auto`, `8` or `4`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let bits = s.parse::<u8>().ok().and_then(|b| EmbeddingBits::try_from(b).ok());
        match (s, bits) {
            ("auto", _) => Ok(Self::Auto),
            (_, Some(b)) => Ok(Self::Bits(b)),
            _ => Err(format!("`{s}`: expected \"auto\", 8 or 4")),
        }
    }
}

impl Serialize for EmbeddingPrecision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Bits(b) => s.serialize_u8(u8::from(*b)),
        }
    }
}

impl<'de> Deserialize<'de> for EmbeddingPrecision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Bits(i64),
            Number(f64),
            Other(serde::de::IgnoredAny),
        }
        let expected = "expected \"auto\", 8 or 4";
        match Raw::deserialize(d)? {
            Raw::Name(s) if s == "auto" => Ok(Self::Auto),
            Raw::Name(s) => Err(serde::de::Error::custom(format!("{s:?}: {expected} (bits as a number)"))),
            Raw::Bits(n) => Self::parse(&n.to_string()).map_err(serde::de::Error::custom),
            Raw::Number(x) => Err(serde::de::Error::custom(format!("{x:?}: {expected}"))),
            Raw::Other(_) => Err(serde::de::Error::custom(expected)),
        }
    }
}

impl QuantizeSettings {
    /// Checks every setting; `key` names a field as the user gave it (`quantize.weight_bits =`
    /// in a recipe, `--weight-bits` on the command line).
    pub fn validate(&self, key: impl Fn(&str) -> String) -> Result<()> {
        if !(self.weight_bits == 7 || self.weight_bits == 8) {
            return Err(Error::input(format!("{} {}: expected 7 or 8", key("weight_bits"), self.weight_bits)));
        }
        for (name, v) in [("max_auc_drop", self.max_auc_drop), ("max_ndcg_drop", self.max_ndcg_drop)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::input(format!("{} {v}: expected a number >= 0", key(name))));
            }
        }
        Ok(())
    }
}

/// The recipe's `[quantize]`: the settings, and whether `run` also quantizes the teacher (it
/// always quantizes the student).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "QuantizeSection", into = "QuantizeSection")]
pub struct QuantizeConfig {
    /// How each model is quantized.
    pub settings: QuantizeSettings,
    /// Also quantize the teacher (`teacher-int8`).
    pub teacher: bool,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        Self { settings: QuantizeSettings::default(), teacher: true }
    }
}

/// `[quantize]` as the TOML holds it (one flat table, unknown keys refused).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QuantizeSection {
    calibrator: Calibrator,
    per_channel: bool,
    dynamic: bool,
    weight_bits: u32,
    max_auc_drop: f64,
    max_ndcg_drop: f64,
    embedding_bits: EmbeddingPrecision,
    embedding_table_bits: BTreeMap<String, EmbeddingPrecision>,
    teacher: bool,
}

impl Default for QuantizeSection {
    fn default() -> Self {
        QuantizeConfig::default().into()
    }
}

impl From<QuantizeSection> for QuantizeConfig {
    fn from(q: QuantizeSection) -> Self {
        let QuantizeSection {
            calibrator,
            per_channel,
            dynamic,
            weight_bits,
            max_auc_drop,
            max_ndcg_drop,
            embedding_bits,
            embedding_table_bits,
            teacher,
        } = q;
        let settings = QuantizeSettings {
            calibrator,
            per_channel,
            dynamic,
            weight_bits,
            max_auc_drop,
            max_ndcg_drop,
            embedding_bits,
            embedding_table_bits,
        };
        Self { settings, teacher }
    }
}

impl From<QuantizeConfig> for QuantizeSection {
    fn from(q: QuantizeConfig) -> Self {
        let QuantizeSettings {
            calibrator,
            per_channel,
            dynamic,
            weight_bits,
            max_auc_drop,
            max_ndcg_drop,
            embedding_bits,
            embedding_table_bits,
        } = q.settings;
        Self {
            calibrator,
            per_channel,
            dynamic,
            weight_bits,
            max_auc_drop,
            max_ndcg_drop,
            embedding_bits,
            embedding_table_bits,
            teacher: q.teacher,
        }
    }
}

/// Quality gates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatesConfig {
    /// Fail when the teacher's test AUC is more than this below the oracle AUC (synthetic data).
    pub max_teacher_oracle_auc_gap: Option<f64>,
    /// Fail when student AUC / teacher AUC (test split) is below this.
    pub min_student_auc_retention: Option<f64>,
    /// Fail when student NDCG@10 / teacher NDCG@10 (ranking set) is below this.
    pub min_student_ndcg_retention: Option<f64>,
    /// Fail when the distilled student's NDCG@10 minus the scratch student's is below this
    /// (needs `distill.scratch_baseline`): a CI can require that distillation pay.
    pub min_distill_gain: Option<f64>,
    /// What decides these gates: the point estimate, or its bootstrap 95% interval (a gate
    /// then fails only when the whole interval is on the failing side).
    pub judge: GateJudge,
}

/// What decides a quality gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GateJudge {
    /// The measured value itself.
    #[default]
    Point,
    /// The bootstrap 95% interval: the gate fails only when all of it is on the failing side
    /// (the upper bound of an at-least gate, the lower bound of an at-most gate decides).
    Interval,
}

impl std::fmt::Display for GateJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Point => "point",
            Self::Interval => "interval",
        })
    }
}

/// Largest hidden or embedding width a recipe may ask for.
const MAX_WIDTH: usize = 16_384;

impl GatesConfig {
    /// Retentions are ratios in [0, 1] (a percentage is a typo); the oracle gap is >= 0.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("min_student_auc_retention", self.min_student_auc_retention),
            ("min_student_ndcg_retention", self.min_student_ndcg_retention),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(Error::input(format!("gates.{key} = {v}: expected a ratio in [0, 1] (0.98 for 98 %)")));
            }
        }
        if let Some(v) = self.max_teacher_oracle_auc_gap
            && !(0.0..=1.0).contains(&v)
        {
            return Err(Error::input(format!("gates.max_teacher_oracle_auc_gap = {v}: expected a number in [0, 1]")));
        }
        if let Some(v) = self.min_distill_gain
            && !(-1.0..=1.0).contains(&v)
        {
            return Err(Error::input(format!(
                "gates.min_distill_gain = {v}: expected an NDCG@10 difference in [-1, 1] (0 for \"at least as good as scratch\")"
            )));
        }
        Ok(())
    }
}

/// The error of the `[data]` section read as its own document, and that document (other
/// lines blanked, so its line numbers are the recipe's), when it has one.
fn data_section_error(text: &str) -> Option<(toml::de::Error, String)> {
    let (mut in_data, mut source) = (false, None);
    let mut doc = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (t, eol) = (line.trim(), if line.ends_with('\n') { "\n" } else { "" });
        if t.starts_with('[') {
            let name = t.trim_start_matches('[').split(']').next().unwrap_or("").trim();
            in_data = name == "data" || name.starts_with("data.");
            match name.strip_prefix("data.") {
                Some(sub) if t.starts_with("[[") => doc.push_str(&format!("[[{sub}]]{eol}")),
                Some(sub) => doc.push_str(&format!("[{sub}]{eol}")),
                None => doc.push_str(eol),
            }
        } else if in_data
            && source.is_none()
            && t.strip_prefix("source").is_some_and(|r| r.trim_start().starts_with('='))
        {
            source = t.split('"').nth(1).map(str::to_string);
            doc.push_str(eol);
        } else if in_data {
            doc.push_str(line);
        } else {
            doc.push_str(eol);
        }
    }
    let err = match source.as_deref() {
        Some("files") => toml::from_str::<FilesConfig>(&doc).err(),
        Some("synth") => toml::from_str::<SynthConfig>(&doc).err(),
        _ => None,
    }?;
    Some((err, doc))
}

fn default_seed() -> u64 {
    42
}

/// Source of the raw tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "source", rename_all = "kebab-case")]
pub enum DataConfig {
    /// Generate with `datasets synth` into `<out>/raw/` when missing.
    Synth(SynthConfig),
    /// The team's own tables, mapped by the recipe (see [`FilesConfig`]).
    Files(Box<FilesConfig>),
}

/// Size and seed-independent knobs of the synthetic generator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// Number of users.
    #[serde(default = "d_users")]
    pub users: usize,
    /// Number of places.
    #[serde(default = "d_places")]
    pub places: usize,
    /// Days of impressions.
    #[serde(default = "d_days")]
    pub days: usize,
}

fn d_users() -> usize {
    1000
}
fn d_places() -> usize {
    300
}
fn d_days() -> usize {
    28
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self { users: d_users(), places: d_places(), days: d_days() }
    }
}

/// Feature preparation settings (DESIGN §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Radius for negative sampling and ranking candidates, km.
    pub radius_km: f64,
    /// Trailing window for point-in-time place statistics, days.
    pub window_days: f64,
    /// Fraction of the time range (latest) held out for validation.
    pub valid_fraction: f64,
    /// Fraction of the time range (latest) held out for test.
    pub test_fraction: f64,
    /// Rows in the random calibration sample (drawn from the training split).
    pub calibration_rows: usize,
    /// Sampled negatives per positive when the interactions carry no label.
    pub negatives_per_positive: usize,
    /// Candidates sampled within the radius for each ranking query (plus the true place).
    pub ranking_candidates: usize,
    /// Maximum number of ranking queries (positive test impressions) to build.
    pub ranking_queries: usize,
    /// Point-in-time user history features (the user's past visits, to the place scored and
    /// its category, and the time since the last one): on unless turned off.
    pub history: bool,
    /// An interactions table of at most this many rows is read into memory whole; a larger
    /// Parquet one streams through disk (the same files, to the byte). Not part of the
    /// stage's record: it does not change what is written.
    #[serde(skip_serializing)]
    pub max_rows_in_memory: usize,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        Self {
            radius_km: 5.0,
            window_days: 7.0,
            valid_fraction: 0.15,
            test_fraction: 0.15,
            calibration_rows: 2000,
            negatives_per_positive: 4,
            ranking_candidates: 49,
            ranking_queries: 10_000,
            history: true,
            max_rows_in_memory: crate::data::chunks::MAX_ROWS_IN_MEMORY,
        }
    }
}

/// The interaction term a recipe that does not set `train.interaction` gets: the one place to
/// change the default. Manifests and stage keys omit `none` (so models without the term keep
/// their bytes and stage keys), which means that after a change of default a resolved recipe
/// saved before it reads back (`distill --teacher`) with the new default; students take the
/// teacher's architecture, not this key, so what they are does not change.
pub const DEFAULT_INTERACTION: Interaction = Interaction::None;

/// Teacher training settings (DESIGN §4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Maximum epochs (unset: sized to the training rows, [`TrainConfig::schedule`]).
    pub epochs: Option<usize>,
    /// Rows per optimizer step (unset: sized to the training rows).
    pub batch_size: Option<usize>,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Learning-rate multiplier applied after every epoch (1 = constant).
    pub lr_decay: f64,
    /// Stop after this many epochs without a better validation AUC.
    pub patience: usize,
    /// After each epoch, also validate the midpoint of the best weights so far and the
    /// epoch's own, and keep the midpoint when its validation AUC is higher (checkpoint
    /// averaging; one more validation pass per epoch).
    pub average: bool,
    /// Hidden layer widths of the MLP.
    pub hidden: Vec<usize>,
    /// Embedding width for id columns with large vocabularies (user, place).
    pub id_embedding_dim: usize,
    /// Embedding width for small categorical columns (segment, category).
    pub small_embedding_dim: usize,
    /// An explicit interaction term: `none`, or `dot` (the user and place embeddings' dot
    /// product, one more MLP input; both then take `id_embedding_dim`).
    #[serde(skip_serializing_if = "Interaction::is_none")]
    pub interaction: Interaction,
    /// Training backend: `flex` (default, faster) or `ndarray` (or `wgpu` with the feature).
    pub backend: crate::model::Backend,
    /// A training or validation split of at most this many rows is held in memory whole
    /// (reshuffled every epoch); a larger one is read from disk a row group at a time.
    pub max_rows_in_memory: usize,
    /// Rows of a split read from disk that are shuffled together (whole row groups, drawn in a
    /// random order every epoch).
    pub shuffle_buffer_rows: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: None,
            batch_size: None,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            lr_decay: 0.5,
            patience: 3,
            average: true,
            hidden: vec![256, 128],
            id_embedding_dim: 16,
            small_embedding_dim: 4,
            interaction: DEFAULT_INTERACTION,
            backend: crate::model::Backend::Flex,
            max_rows_in_memory: crate::data::chunks::MAX_ROWS_IN_MEMORY,
            shuffle_buffer_rows: 262_144,
        }
    }
}

impl PrepareConfig {
    /// Radius, window, split fractions and row counts in range.
    pub fn validate(&self) -> Result<()> {
        let p = self;
        if !(p.radius_km > 0.0 && p.radius_km.is_finite()) {
            return Err(Error::input(format!("prepare.radius_km = {}: expected a positive number", p.radius_km)));
        }
        if !(p.window_days > 0.0 && p.window_days.is_finite()) {
            return Err(Error::input(format!("prepare.window_days = {}: expected a positive number", p.window_days)));
        }
        let held = p.valid_fraction + p.test_fraction;
        if !(p.valid_fraction > 0.0 && p.test_fraction > 0.0 && held < 0.9) {
            return Err(Error::input(format!(
                "prepare.valid_fraction + test_fraction = {held}: expected each > 0 and the sum < 0.9"
            )));
        }
        let min_cal = reco_runtime::quant::calibrate::MIN_CALIBRATION_ROWS;
        if p.calibration_rows < min_cal {
            return Err(Error::input(format!(
                "prepare.calibration_rows = {}: expected at least {min_cal}",
                p.calibration_rows
            )));
        }
        for (key, v) in [
            ("ranking_queries", p.ranking_queries),
            ("ranking_candidates", p.ranking_candidates),
            ("negatives_per_positive", p.negatives_per_positive),
        ] {
            if v == 0 {
                return Err(Error::input(format!(
                    "prepare.{key} = 0: expected at least 1 (nothing could be measured or learned)"
                )));
            }
        }
        Ok(())
    }
}

/// Optimizer steps a training run of unset `epochs` gets at least (its epochs are sized for it).
const MIN_STEPS: usize = 3000;

/// Epochs and batch size of one training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Maximum epochs (early stopping may end sooner).
    pub epochs: usize,
    /// Rows per optimizer step.
    pub batch_size: usize,
}

impl TrainConfig {
    /// The epochs and batch size for `rows` training rows: the recipe's where set; unset,
    /// a batch of `rows / 1000` rounded up to a power of two within [32, 512], and as many
    /// epochs as give [`MIN_STEPS`] optimizer steps, within [12, 40]. A log of 5k rows gets
    /// batches of 32 and 20 epochs, 600k rows or more batches of 512 and 12 epochs.
    pub fn schedule(&self, rows: usize) -> Schedule {
        let batch_size = self.batch_size.unwrap_or_else(|| (rows / 1000).max(1).next_power_of_two().clamp(32, 512));
        let steps = rows.div_ceil(batch_size).max(1);
        let epochs = self.epochs.unwrap_or_else(|| MIN_STEPS.div_ceil(steps).clamp(12, 40));
        Schedule { epochs, batch_size }
    }

    /// Positive sizes and rates, and sizes below what would abort on allocation.
    pub fn validate(&self) -> Result<()> {
        let t = self;
        if t.epochs == Some(0) || t.batch_size == Some(0) || t.hidden.is_empty() || t.hidden.contains(&0) {
            return Err(Error::input("train: epochs, batch_size and every hidden width must be positive"));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            return Err(Error::input(format!("train.learning_rate = {}: expected a positive number", t.learning_rate)));
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return Err(Error::input(format!(
                "train.weight_decay = {}: expected a finite number >= 0",
                t.weight_decay
            )));
        }
        if !(t.lr_decay > 0.0 && t.lr_decay <= 1.0) {
            return Err(Error::input(format!("train.lr_decay = {}: expected a number in (0, 1]", t.lr_decay)));
        }
        if t.shuffle_buffer_rows == 0 {
            return Err(Error::input("train.shuffle_buffer_rows = 0: expected at least 1"));
        }
        if t.id_embedding_dim == 0 || t.small_embedding_dim == 0 {
            return Err(Error::input("train: embedding dims must be positive"));
        }
        // Sizes past these are typos, and would abort on a failed allocation.
        for (key, v, max) in [
            ("epochs", t.epochs.unwrap_or(1), 100_000),
            ("batch_size", t.batch_size.unwrap_or(1), 1 << 20),
            ("shuffle_buffer_rows", t.shuffle_buffer_rows.max(1), 1 << 26),
            ("id_embedding_dim", t.id_embedding_dim, MAX_WIDTH),
            ("small_embedding_dim", t.small_embedding_dim, MAX_WIDTH),
        ]
        .into_iter()
        .chain(t.hidden.iter().map(|&h| ("hidden", h, MAX_WIDTH)))
        {
            if v > max {
                return Err(Error::input(format!("train.{key} = {v}: expected at most {max}")));
            }
        }
        Ok(())
    }
}

impl Recipe {
    /// Reads and validates a recipe file. Relative data paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let mut recipe = Self::parse(&text).map_err(|e| Error::input(format!("recipe {}: {}", path.display(), e)))?;
        if let DataConfig::Files(files) = &mut recipe.data {
            files.resolve(path.parent().unwrap_or(Path::new(".")));
        }
        Ok(recipe)
    }

    /// Parses recipe text; the error is one line with the line number.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let recipe: Self = toml::from_str(text).map_err(|e| {
            // `[data]` is read through its `source` tag, which loses the position of errors
            // inside it: read that section alone, on its own lines, to find where.
            let (inner, doc) = data_section_error(text).unwrap_or((e, text.to_string()));
            let line = inner.span().map(|s| doc[..s.start.min(doc.len())].matches('\n').count() + 1);
            let msg = reco_runtime::error::one_line(inner.message());
            // The line itself names the key: serde's message often only names the type.
            let source = line.and_then(|l| doc.lines().nth(l - 1)).map(str::trim).filter(|t| !t.is_empty());
            match (line, source) {
                (Some(l), Some(t)) => format!("line {l} (`{}`): {msg}", t.chars().take(80).collect::<String>()),
                (Some(l), None) => format!("line {l}: {msg}"),
                (None, _) => msg,
            }
        })?;
        recipe.validate().map_err(|e| e.to_string())?;
        Ok(recipe)
    }

    /// `quantize.embedding_table_bits` names categorical features the recipe can have: the
    /// built-in ones and its declared categorical ones (a built-in one the data lacks is
    /// caught by `quantize`, against the model's own tables).
    fn check_table_bits(&self) -> Result<()> {
        let declared: Vec<&str> = match &self.data {
            DataConfig::Synth(_) => Vec::new(),
            DataConfig::Files(f) => {
                f.features.iter().filter(|d| d.kind.is_embedded()).map(|d| d.feature_name()).collect()
            }
        };
        let known: Vec<&str> = crate::data::builtin::CATEGORICAL.into_iter().chain(declared).collect();
        match self.quantize.settings.embedding_table_bits.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Error::input(format!(
                "quantize.embedding_table_bits: `{k}` is not a categorical feature of this recipe; expected one of {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Range checks that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(Error::input(format!("name {:?}: expected a plain directory name", self.name)));
        }
        self.prepare.validate()?;
        self.train.validate()?;
        self.gates.validate()?;
        self.distill.validate()?;
        self.serve.validate()?;
        self.track.validate()?;
        if self.gates.min_distill_gain.is_some() && !self.distill.scratch_baseline {
            return Err(Error::input(
                "gates.min_distill_gain compares the distilled student with the scratch one: it needs distill.scratch_baseline = true",
            ));
        }
        self.quantize.settings.validate(|k| format!("quantize.{k} ="))?;
        self.check_table_bits()?;
        match &self.data {
            DataConfig::Synth(s) => {
                let params =
                    crate::data::synth::SynthParams { users: s.users, places: s.places, days: s.days, seed: self.seed };
                params.validate().map_err(|e| e.with_prefix("data: "))?;
                if s.places <= self.prepare.ranking_candidates {
                    return Err(Error::input(format!(
                        "data.places = {}: a ranking query needs prepare.ranking_candidates = {} other places; expected more places",
                        s.places, self.prepare.ranking_candidates
                    )));
                }
            }
            DataConfig::Files(f) => f.validate()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\n[data]\nsource = \"synth\"\n";

    /// Unset epochs and batch size follow the training rows; set ones are kept.
    #[test]
    fn unset_epochs_and_batch_size_are_sized_to_the_training_rows() {
        let t = TrainConfig::default();
        let s = |rows| {
            let s = t.schedule(rows);
            (s.batch_size, s.epochs)
        };
        // 5k rows: batches of 32, 157 steps an epoch, 20 epochs for 3000 steps.
        assert_eq!(s(5_000), (32, 20));
        assert_eq!(s(50_000), (64, 12));
        assert_eq!(s(600_000), (512, 12));
        assert_eq!(s(5_000_000), (512, 12));
        // Tiny logs: at most 40 epochs; never a batch of 0.
        assert_eq!(s(300), (32, 40));
        assert_eq!(s(0), (32, 40));
        let set = TrainConfig { epochs: Some(3), batch_size: Some(100), ..TrainConfig::default() };
        assert_eq!(set.schedule(5_000), Schedule { epochs: 3, batch_size: 100 });
    }

    /// The README's defaults table is the code's: every key of every section is a row, with
    /// the default the code has (`unset` for an unset option).
    #[test]
    fn the_readme_defaults_table_matches_the_code() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let mut defaults = serde_json::to_value(Recipe::parse(MINIMAL).unwrap()).unwrap();
        // `train.interaction` is not serialized when it is `none` (manifests keep their bytes).
        if defaults["train"].get("interaction").is_none() {
            defaults["train"]["interaction"] = serde_json::json!(DEFAULT_INTERACTION);
        }
        let mut rows = 0;
        let table = readme.lines().skip_while(|l| *l != "| key | default | meaning |").take_while(|l| !l.is_empty());
        for line in table {
            let cells: Vec<&str> = line.split(" | ").collect();
            let Some(key) = cells.first().and_then(|c| c.strip_prefix("| `")).and_then(|c| c.strip_suffix('`')) else {
                continue;
            };
            let Some(want) = cells.get(1) else { continue };
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            // `prepare.max_rows_in_memory` is not serialized (it changes nothing written).
            let unserialized = serde_json::json!(PrepareConfig::default().max_rows_in_memory);
            let have = match (section, name) {
                ("", _) => &defaults[name],
                ("prepare", "max_rows_in_memory") => &unserialized,
                _ => &defaults[section][name],
            };
            let want: serde_json::Value = match want.strip_prefix('`').and_then(|w| w.strip_suffix('`')) {
                Some(literal) => serde_json::from_str(literal).unwrap_or_else(|e| panic!("{key}: {literal}: {e}")),
                None => serde_json::Value::Null,
            };
            assert_eq!(have, &want, "README default of {key}");
            rows += 1;
        }
        let keys: usize = ["prepare", "train", "distill", "quantize", "gates"]
            .iter()
            .map(|s| defaults[s].as_object().map_or(0, serde_json::Map::len))
            .sum();
        assert_eq!(
            rows,
            keys + 5,
            "one row per key (seed, the three synthetic sizes and the unserialized one besides)"
        );
    }

    #[test]
    fn minimal_recipe_gets_defaults() {
        let r = Recipe::parse(MINIMAL).unwrap();
        assert_eq!(r.seed, 42);
        assert_eq!(r.train, TrainConfig::default());
        assert_eq!(r.data, DataConfig::Synth(SynthConfig::default()));
    }

    #[test]
    fn the_interaction_is_a_closed_set_and_none_is_left_out_of_the_resolved_recipe() {
        let dot = Recipe::parse(&format!("{MINIMAL}[train]\ninteraction = \"dot\"\n")).unwrap();
        assert_eq!(dot.train.interaction, Interaction::Dot);
        assert_eq!(serde_json::to_value(&dot.train).unwrap()["interaction"], "dot");
        let none = Recipe::parse(&format!("{MINIMAL}[train]\ninteraction = \"none\"\n")).unwrap();
        assert_eq!(none.train.interaction, Interaction::None);
        assert!(serde_json::to_value(&none.train).unwrap().get("interaction").is_none());
        assert_eq!(Recipe::parse(MINIMAL).unwrap().train.interaction, DEFAULT_INTERACTION);
        let err = Recipe::parse(&format!("{MINIMAL}[train]\ninteraction = \"cross\"\n")).unwrap_err();
        assert!(err.contains("line 5") && err.contains("cross") && err.contains("`dot`"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_key_and_line() {
        let text = format!("{MINIMAL}[train]\nepochs = 3\nlearning_rat = 0.1\n");
        let err = Recipe::parse(&text).unwrap_err();
        assert!(err.contains("learning_rat") && err.contains("line 6"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn two_roles_on_one_column_and_a_timestamp_format_chrono_cannot_use_are_refused_by_key() {
        let text = "name = \"t\"\n[data]\nsource = \"files\"\ndir = \"raw\"\n[data.interactions]\ncolumns = { user = \"place_id\" }\n";
        let err = Recipe::parse(text).unwrap_err();
        assert!(err.contains("data.interactions.columns.user = \"place_id\"") && err.contains("`place` role"), "{err}");
        let err = Recipe::parse(&text.replace("user = ", "place = \"v\", user = \"v\", lat = ")).unwrap_err();
        assert!(err.contains("roles `user` and `place` both map to column `v`"), "{err}");
        // A places section read from the interactions file maps its roles explicitly only.
        let shared = "name = \"t\"\n[data]\nsource = \"files\"\n[data.interactions]\npath = \"log.csv\"\n\
                      [data.places]\ncolumns = { place = \"venue\", category = \"place_id\" }\n";
        Recipe::parse(shared).unwrap();
        let err = Recipe::parse(&shared.replace("\"place_id\"", "\"venue\"")).unwrap_err();
        assert!(err.contains("data.places.columns: roles `place` and `category` both map to column `venue`"), "{err}");
        let ts = |f: &str| {
            Recipe::parse(&format!(
                "name = \"t\"\n[data]\nsource = \"files\"\ndir = \"raw\"\ntimestamp_format = {f:?}\n"
            ))
        };
        for bad in ["%Y-%m-%d %Q", "%", "no fields"] {
            let err = ts(bad).unwrap_err();
            assert!(err.contains("data.timestamp_format") && err.contains(bad), "{err}");
        }
        ts("%a %b %d %H:%M:%S %z %Y").unwrap();
    }

    #[test]
    fn a_files_recipe_maps_columns_and_rejects_a_role_the_table_cannot_have() {
        let text = "name = \"t\"\n[data]\nsource = \"files\"\ntimezone = \"America/New_York\"\n\
                    [data.interactions]\npath = \"checkins.csv\"\ncolumns = { user = \"userId\", place = \"venueId\" }\n";
        let r = Recipe::parse(text).unwrap();
        let DataConfig::Files(f) = &r.data else { panic!("not files") };
        assert_eq!(f.interactions.columns[&crate::data::schema::Role::Place], "venueId");
        let err = Recipe::parse(&text.replace("user = ", "segment = ")).unwrap_err();
        assert!(err.contains("data.interactions.columns.segment") && err.contains("expected one of"), "{err}");
        let err = Recipe::parse(&text.replace("America/New_York", "Mars/Olympus")).unwrap_err();
        assert!(err.contains("Mars/Olympus") && err.contains("IANA"), "{err}");
        let err = Recipe::parse(&text.replace("place = ", "venue = ")).unwrap_err();
        assert!(err.contains("venue"), "{err}");
        // Errors inside [data] name their own line, not the section's.
        let err = Recipe::parse(&text.replace("timezone =", "timezon =")).unwrap_err();
        assert!(err.starts_with("line 4 (`timezon = ") && err.contains("unknown field `timezon`"), "{err}");
        let err = Recipe::parse(&format!(
            "{text}[[data.features]]\ntable = \"users\"\ncolumn = \"age\"\nkind = \"numerical\"\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("line 11 (`kind = \"numerical\"`):")
                && err.contains("expected one of `numeric`, `categorical`, `multi_categorical`"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let err = Recipe::parse(&format!("{MINIMAL}[prepare]\nradius_km = -1\n")).unwrap_err();
        assert!(err.contains("radius_km"), "{err}");
        let err = Recipe::parse(&format!("{MINIMAL}[train]\nhidden = [64, 0]\n")).unwrap_err();
        assert!(err.contains("hidden"), "{err}");
        let err = Recipe::parse(&format!("{MINIMAL}[prepare]\nranking_candidates = 0\n")).unwrap_err();
        assert!(err.contains("prepare.ranking_candidates = 0"), "{err}");
        let err = Recipe::parse(&format!("{MINIMAL}[prepare]\ncalibration_rows = 1\n")).unwrap_err();
        assert!(err.contains("prepare.calibration_rows = 1"), "{err}");
        let err = Recipe::parse(&format!("{MINIMAL}[train]\nweight_decay = nan\n")).unwrap_err();
        assert!(err.contains("train.weight_decay = NaN"), "{err}");
        let err = Recipe::parse(&format!("{MINIMAL}[gates]\nmin_distill_gain = 5\n")).unwrap_err();
        assert!(err.contains("gates.min_distill_gain = 5: expected an NDCG@10 difference"), "{err}");
        let text = format!("{MINIMAL}[gates]\nmin_distill_gain = 0\n[distill]\nscratch_baseline = false\n");
        let err = Recipe::parse(&text).unwrap_err();
        assert!(err.contains("needs distill.scratch_baseline = true"), "{err}");
        assert!(Recipe::parse(&format!("{MINIMAL}[gates]\nmin_distill_gain = 0\n")).is_ok());
        for (value, want) in [
            ("ratios = [0.5, 0.5]", "0.5 is there twice"),
            ("ratios = [0.5, 0]", "0 is not in (0, 1]"),
            ("ratios = [0.5, 0.4, 0.3, 0.2, 0.1]", "5 sizes, expected at most 4"),
            ("teachers = 0", "distill teachers = 0: expected 1 to 16"),
            ("listwise = -1", "distill listwise = -1: expected a number in [0, 100]"),
        ] {
            let err = Recipe::parse(&format!("{MINIMAL}[distill]\n{value}\n")).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
        let r = Recipe::parse(&format!("{MINIMAL}[distill]\nratios = [0.25, 0.5]\n")).unwrap();
        assert_eq!((r.distill.main().ratio, r.distill.extra_ratios()), (0.25, &[0.5][..]));
        assert_eq!(Recipe::parse(MINIMAL).unwrap().distill.main().ratio, 0.5);
    }
}
