//! Stage reuse: each stage of `run` records a key — a sha256 over the stage's name, the tool
//! version, its resolved configuration and the keys (or content hashes) of its inputs — with
//! its summary in `<out>/stages/<stage>.json`. A later `run` whose key for the stage matches,
//! and whose recorded outputs are still intact (artifacts verify against their manifests,
//! other files against recorded hashes), reuses the stage instead of running it. Keys chain:
//! a stage's key holds its inputs' stage keys, which is sound because a stage's outputs are
//! a deterministic function of its key (same recipe, data and seed give the same bytes).
//!
//! A record is removed, with those of every stage that reads its outputs (directly or through
//! another), before its stage runs, and written after it succeeds: a killed stage is never
//! reused, nor a later one whose inputs the rerun replaces. The model directories of those
//! dependent stages go too, so a failed rerun never leaves a student or INT8 model beside a
//! parent it was not made from. An artifact is recorded by its whole manifest (exports aside),
//! so an edited feature spec or status makes its stage run again. `--force` recomputes every
//! stage, `--from STAGE` that stage and all after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::synth::SynthSummary;
use crate::pipeline::distill::DistillSummary;
use crate::pipeline::eval::EvalReport;
use crate::pipeline::export::ExportSummary;
use crate::pipeline::prepare::PrepareSummary;
use crate::pipeline::quantize::QuantizeSummary;
use crate::pipeline::train::TrainSummary;
use crate::progress::Progress;
use reco_runtime::artifact::{sha256_bytes, sha256_file};
use reco_runtime::error::{Error, IoContext, Result};

/// One stage that ran.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Wall time, seconds (a file that holds no timings lacks it).
    pub seconds: f64,
    /// Stage summary.
    pub detail: StageDetail,
    /// Whether an earlier run's result was reused (its inputs and configuration matched).
    pub reused: bool,
}

impl<'de> Deserialize<'de> for StageReport {
    /// The detail is read as the summary type its stage's name says.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            #[serde(default)]
            seconds: f64,
            detail: Value,
            reused: bool,
        }
        let Raw { name, seconds, detail, reused } = Raw::deserialize(d)?;
        let detail = StageDetail::parse(&name, detail).map_err(serde::de::Error::custom)?;
        Ok(Self { name, seconds, detail, reused })
    }
}

/// What a stage returned: its typed summary (serialized as the summary itself, so the JSON
/// the report and the records hold is the summary's own).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum StageDetail {
    /// `datasets synth`'s row counts.
    Synth(SynthSummary),
    /// What `prepare` wrote.
    Prepare(Box<PrepareSummary>),
    /// The teacher's training.
    Train(Box<TrainSummary>),
    /// The student's and the scratch baseline's trainings.
    Distill(Box<DistillSummary>),
    /// One INT8 model's quantization.
    Quantize(Box<QuantizeSummary>),
    /// The side-by-side evaluation.
    Eval(Box<EvalReport>),
    /// The ONNX files written.
    Export(Vec<ExportSummary>),
}

impl StageDetail {
    /// The summary of stage `name` (`quantize-teacher` is a quantize stage) from its JSON.
    pub fn parse(name: &str, v: Value) -> std::result::Result<Self, String> {
        let bad = |e: serde_json::Error| format!("the summary of stage {name} does not read as one: {e}");
        Ok(match Stage::of(name).ok_or_else(|| format!("no stage is named {name:?}"))? {
            Stage::Synth => Self::Synth(serde_json::from_value(v).map_err(bad)?),
            Stage::Prepare => Self::Prepare(serde_json::from_value(v).map_err(bad)?),
            Stage::Train => Self::Train(serde_json::from_value(v).map_err(bad)?),
            Stage::Distill => Self::Distill(serde_json::from_value(v).map_err(bad)?),
            Stage::Quantize => Self::Quantize(serde_json::from_value(v).map_err(bad)?),
            Stage::Eval => Self::Eval(serde_json::from_value(v).map_err(bad)?),
            Stage::Export => Self::Export(serde_json::from_value(v).map_err(bad)?),
        })
    }
}

/// The stages `--from` can name, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Synthetic data (when the recipe uses it).
    Synth,
    /// Features.
    Prepare,
    /// The teacher.
    Train,
    /// Student and scratch baseline.
    Distill,
    /// INT8 models.
    Quantize,
    /// Evaluation.
    Eval,
    /// ONNX export.
    Export,
}

impl Stage {
    /// The stage a report name (`quantize-teacher`) belongs to.
    fn of(name: &str) -> Option<Self> {
        match name.split('-').next()? {
            "synth" => Some(Self::Synth),
            "prepare" => Some(Self::Prepare),
            "train" => Some(Self::Train),
            "distill" => Some(Self::Distill),
            "quantize" => Some(Self::Quantize),
            "eval" => Some(Self::Eval),
            "export" => Some(Self::Export),
            _ => None,
        }
    }
}

/// Every stage of a run: its name, the stages whose outputs it reads, and the model
/// directories it writes (relative to the output root).
const STAGES: [(&str, &[&str], &[&str]); 8] = [
    ("synth", &[], &[]),
    ("prepare", &["synth"], &[]),
    ("train", &["prepare"], &["teacher"]),
    ("distill", &["train"], &["student", "student-scratch"]),
    ("quantize-teacher", &["train"], &["teacher-int8"]),
    ("quantize-student", &["distill"], &["student-int8"]),
    ("eval", &["prepare", "train", "distill", "quantize-teacher", "quantize-student"], &[]),
    ("export", &["eval"], &[]),
];

/// Whether stage `later` reads, directly or through others, what stage `earlier` writes.
fn depends_on(later: &str, earlier: &str) -> bool {
    let direct = STAGES.iter().find(|(n, _, _)| *n == later).map_or(&[][..], |(_, d, _)| *d);
    direct.iter().any(|d| *d == earlier || depends_on(d, earlier))
}

/// The model directories stage `name` writes.
fn outputs_of(name: &str) -> &'static [&'static str] {
    STAGES.iter().find(|(n, _, _)| *n == name).map_or(&[], |(_, _, o)| *o)
}

/// Which recorded stages may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any stage whose key matches.
    Auto,
    /// None.
    Force,
    /// Stages before this one.
    From(Stage),
}

/// What a stage wrote, checked before it is reused.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Artifact directories: each must verify against its manifest and still hold the same
    /// content (another command writing there makes the stage run again).
    pub artifacts: Vec<PathBuf>,
    /// Directories whose every file is hashed when the stage is recorded.
    pub dirs: Vec<PathBuf>,
    /// The stage exports its artifacts: each that passed its gate must still record its ONNX
    /// export.
    pub exported: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    key: String,
    /// The output root when the stage ran (absolute): paths in `detail` below it are moved to
    /// the current root when it was renamed since.
    base: String,
    /// The stage summary as it was returned (with its timings).
    detail: Value,
    /// sha256 of each file of `Outputs::dirs`, by path relative to the output root.
    files: BTreeMap<String, String>,
    /// [`Manifest::state_hash`](reco_runtime::artifact::Manifest::state_hash) of each artifact
    /// directory, by path relative to the output root.
    artifacts: BTreeMap<String, String>,
    /// Artifacts that must carry an ONNX export.
    exported: Vec<String>,
    /// sha256 of `detail` as written, with the key: a record edited by hand (a metric made to
    /// pass a gate) is not reused.
    #[serde(default)]
    sealed: String,
}

impl Record {
    /// The seal of a record's key and detail.
    fn seal(key: &str, detail: &Value) -> String {
        sha256_bytes(format!("{key}\n{}", serde_json::to_string(detail).unwrap_or_default()).as_bytes())
    }
}

/// The key of a stage: sha256 over its name, the tool version and `inputs`.
pub fn key(stage: &str, inputs: &Value) -> String {
    let v = serde_json::json!({ "stage": stage, "version": crate::VERSION, "inputs": inputs });
    sha256_bytes(&serde_json::to_vec(&v).unwrap_or_default())
}

/// Stage records of one output root.
pub struct Reuse {
    out: PathBuf,
    mode: Mode,
}

fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out).unwrap_or(p).to_string_lossy().into_owned()
}

/// Every file below `dir`, sorted.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).at(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_below(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

impl Reuse {
    /// Records under `out/stages`, reused as `mode` allows.
    pub fn new(out: &Path, mode: Mode) -> Self {
        Self { out: out.to_path_buf(), mode }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.out.join("stages").join(format!("{name}.json"))
    }

    fn allowed(&self, name: &str) -> bool {
        match self.mode {
            Mode::Auto => true,
            Mode::Force => false,
            Mode::From(from) => Stage::of(name).is_some_and(|s| s < from),
        }
    }

    /// The recorded summary of `name`, when its key is `key` and its outputs are intact.
    fn lookup(&self, name: &str, key: &str) -> Option<Record> {
        if !self.allowed(name) {
            return None;
        }
        let record: Record = serde_json::from_slice(&std::fs::read(self.path(name)).ok()?).ok()?;
        let artifact = |a: &String| reco_runtime::artifact::open(&self.out.join(a)).ok();
        let intact = record.key == key
            && record.sealed == Record::seal(key, &record.detail)
            && record.artifacts.iter().all(|(a, h)| artifact(a).is_some_and(|m| m.state_hash() == *h))
            && record.exported.iter().all(|a| artifact(a).is_some_and(|m| m.exports.contains_key("onnx")))
            && record.files.iter().all(|(f, h)| sha256_file(&self.out.join(f)).ok().as_ref() == Some(h));
        intact.then_some(record)
    }

    fn base(&self) -> String {
        std::path::absolute(&self.out).unwrap_or_else(|_| self.out.clone()).to_string_lossy().into_owned()
    }

    fn record(&self, name: &str, key: &str, detail: &StageDetail, outputs: &Outputs) -> Result<()> {
        let mut files = BTreeMap::new();
        for d in &outputs.dirs {
            let mut all = Vec::new();
            files_below(d, &mut all)?;
            for f in all {
                files.insert(rel(&self.out, &f), sha256_file(&f)?);
            }
        }
        let mut artifacts = BTreeMap::new();
        let mut exported = Vec::new();
        for a in &outputs.artifacts {
            let m = reco_runtime::artifact::open(a)?;
            if outputs.exported && m.status == reco_runtime::artifact::manifest::Status::Ok {
                exported.push(rel(&self.out, a));
            }
            artifacts.insert(rel(&self.out, a), m.state_hash());
        }
        let detail = exact(serde_json::to_value(detail).map_err(|e| Error::Internal(e.to_string()))?, true);
        let sealed = Record::seal(key, &detail);
        let record = Record { key: key.into(), base: self.base(), detail, files, artifacts, exported, sealed };
        crate::outputs::write_json(&self.path(name), &record)
    }

    /// The model directories of the stages that depend on `name` (those that exist).
    fn dependent_models(&self, name: &str) -> Vec<PathBuf> {
        let dependents = STAGES.iter().map(|(n, _, _)| *n).filter(|d| depends_on(d, name));
        let dirs = dependents.flat_map(outputs_of).map(|d| self.out.join(d));
        dirs.filter(|p| p.join(reco_runtime::artifact::MANIFEST).is_file()).collect()
    }

    /// What a stage's outputs hold now: each artifact's state hash and each file's sha256
    /// (`None` for what is missing or unreadable).
    fn signature(outputs: &Outputs) -> Vec<Option<String>> {
        let artifacts = outputs.artifacts.iter().map(|a| reco_runtime::artifact::open(a).ok().map(|m| m.state_hash()));
        let files = outputs.dirs.iter().flat_map(|d| {
            let mut all = Vec::new();
            let _ = files_below(d, &mut all);
            all.into_iter().map(|f| sha256_file(&f).ok())
        });
        artifacts.chain(files).collect()
    }

    /// Removes the record of `name` and of every stage that depends on it before `name`
    /// runs: a killed stage is never reused, nor one whose inputs the rerun may replace
    /// (export writes into the model directories).
    fn forget_from(&self, name: &str) -> Result<()> {
        let dir = self.out.join("stages");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        for e in entries.filter_map(std::result::Result::ok) {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(other) = file.strip_suffix(".json") else { continue };
            if other == name || depends_on(other, name) {
                let p = e.path();
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        Ok(())
    }

    /// Records the new state hashes of `changed` artifacts in every record that lists them
    /// (after a run wrote its gates' verdicts into them), so the next run still reuses the
    /// stages that made them.
    pub fn refresh(&self, changed: &[(PathBuf, String)]) -> Result<()> {
        let changed: BTreeMap<String, &String> = changed.iter().map(|(p, h)| (rel(&self.out, p), h)).collect();
        for (name, _, _) in STAGES {
            let path = self.path(name);
            let Some(mut record) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            else {
                continue;
            };
            let mut touched = false;
            for (a, h) in record.artifacts.iter_mut() {
                if let Some(new) = changed.get(a) {
                    h.clone_from(new);
                    touched = true;
                }
            }
            if touched {
                crate::outputs::write_json(&path, &record)?;
            }
        }
        Ok(())
    }

    /// Runs stage `name` (`run` returns its summary), or reuses it when its key and outputs
    /// allow, saying which on stderr.
    pub fn stage(
        &self,
        name: &str,
        key: &str,
        outputs: &Outputs,
        progress: &dyn Progress,
        run: impl FnOnce() -> Result<StageDetail>,
    ) -> Result<StageReport> {
        // A record whose summary no longer reads as its stage's is not reused either.
        let recorded = self.lookup(name, key).map(|r| rebase(exact(r.detail, false), &r.base, &self.base()));
        if let Some(detail) = recorded.and_then(|d| StageDetail::parse(name, d).ok()) {
            progress.log(&format!("{name}: reused (its inputs and configuration are unchanged)"));
            return Ok(StageReport { name: name.into(), seconds: 0.0, detail, reused: true });
        }
        self.forget_from(name)?;
        // Models made from what this stage writes go once it has written something else: they
        // were made from its old outputs. A stage that fails, or writes the same bytes again,
        // leaves them (they are still what they were made from).
        let dependents = self.dependent_models(name);
        let before = (!dependents.is_empty()).then(|| Self::signature(outputs));
        let start = Instant::now();
        let detail = run()?;
        let seconds = start.elapsed().as_secs_f64();
        if before.is_some_and(|b| b != Self::signature(outputs)) {
            for p in dependents {
                std::fs::remove_dir_all(&p).at(&p)?;
            }
        }
        self.record(name, key, &detail, outputs)?;
        Ok(StageReport { name: name.into(), seconds, detail, reused: false })
    }
}

/// Marks a float written as its bit pattern (a string `EXACT` + 16 hex digits).
const EXACT: &str = "\u{1}f64:";

/// Floats as bit-pattern strings (`encode`) or back: serde_json's default parser may read a
/// float back one ulp off, and a reused stage must report the very numbers it reported when
/// it ran (the report is byte-identical to a fresh run's).
fn exact(v: Value, encode: bool) -> Value {
    match v {
        Value::Number(n) if encode && n.is_f64() => {
            Value::String(format!("{EXACT}{:016x}", n.as_f64().map_or(0, f64::to_bits)))
        }
        Value::String(s) if !encode && s.starts_with(EXACT) => {
            let bits = u64::from_str_radix(&s[EXACT.len()..], 16).unwrap_or(0);
            serde_json::Number::from_f64(f64::from_bits(bits)).map_or(Value::Null, Value::Number)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| exact(x, encode)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, exact(x, encode))).collect()),
        other => other,
    }
}

/// `v` with every string that starts with `from` starting with `to` instead.
fn rebase(v: Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) if from != to && s.starts_with(from) => Value::String(format!("{to}{}", &s[from.len()..])),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| rebase(x, from, to)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, rebase(x, from, to))).collect()),
        other => other,
    }
}

/// A content fingerprint of raw tables: every file under each configured location.
pub fn files_fingerprint(locations: &[PathBuf]) -> Result<String> {
    let mut listing = String::new();
    for loc in locations {
        // The content hash `Table::read` records: parts named relative to the location, so a
        // copied or moved run keeps its keys.
        let h = crate::data::table::location_sha256(loc)
            .map_err(|e| Error::input(format!("{}: cannot fingerprint the input ({e})", loc.display())))?;
        listing.push_str(&format!("{h}\n"));
    }
    Ok(sha256_bytes(listing.as_bytes()))
}

/// A key no record holds (never reused).
pub fn unique_key() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("unfingerprinted-{}-{nanos}", std::process::id())
}
