//! Stage reuse: each stage of `run` records a key — a sha256 over the stage's name, the tool
//! version, its resolved configuration and the keys (or content hashes) of its inputs — with
//! its summary in `<out>/stages/<stage>.json`. A later `run` whose key for the stage matches,
//! and whose recorded outputs are still intact (artifacts verify against their manifests,
//! other files against recorded hashes), reuses the stage instead of running it. Keys chain:
//! a stage's key holds its inputs' stage keys, which is sound because a stage's outputs are
//! a deterministic function of its key (same recipe, data and seed give the same bytes).
//!
//! A record is removed, with those of every later stage, before its stage runs, and written
//! after it succeeds: a killed stage is never reused, nor a later one whose outputs the rerun
//! may have replaced. `--force` recomputes every stage, `--from STAGE` that stage and all after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::{sha256_bytes, sha256_file};
use crate::error::{Error, IoContext, Result};
use crate::pipeline::run::StageReport;
use crate::progress::Progress;

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
    /// Content hash of each artifact directory, by path relative to the output root.
    artifacts: BTreeMap<String, String>,
    /// Artifacts that must carry an ONNX export.
    exported: Vec<String>,
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
        let artifact = |a: &String| crate::artifact::open(&self.out.join(a)).ok();
        let intact = record.key == key
            && record.artifacts.iter().all(|(a, h)| artifact(a).is_some_and(|m| m.content_hash() == *h))
            && record.exported.iter().all(|a| artifact(a).is_some_and(|m| m.exports.contains_key("onnx")))
            && record.files.iter().all(|(f, h)| sha256_file(&self.out.join(f)).ok().as_ref() == Some(h));
        intact.then_some(record)
    }

    fn base(&self) -> String {
        std::path::absolute(&self.out).unwrap_or_else(|_| self.out.clone()).to_string_lossy().into_owned()
    }

    fn record(&self, name: &str, key: &str, detail: &Value, outputs: &Outputs) -> Result<()> {
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
            let m = crate::artifact::open(a)?;
            if outputs.exported && m.status == crate::artifact::manifest::Status::Ok {
                exported.push(rel(&self.out, a));
            }
            artifacts.insert(rel(&self.out, a), m.content_hash());
        }
        let detail = exact(detail.clone(), true);
        let record = Record { key: key.into(), base: self.base(), detail, files, artifacts, exported };
        crate::pipeline::run::write_json(&self.path(name), &record)
    }

    /// Removes the record of `name` and of every later stage before `name` runs: a killed
    /// stage is never reused, and a later stage's outputs may live in what `name` rewrites
    /// (export writes into the model directories).
    fn forget_from(&self, name: &str) -> Result<()> {
        let dir = self.out.join("stages");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        let this = Stage::of(name);
        for e in entries.filter_map(std::result::Result::ok) {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(other) = file.strip_suffix(".json") else { continue };
            if other == name || (Stage::of(other) > this && this.is_some()) {
                let p = e.path();
                std::fs::remove_file(&p).at(&p)?;
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
        run: impl FnOnce() -> Result<Value>,
    ) -> Result<StageReport> {
        if let Some(r) = self.lookup(name, key) {
            progress.log(&format!("{name}: reused (its inputs and configuration are unchanged)"));
            let detail = rebase(exact(r.detail, false), &r.base, &self.base());
            return Ok(StageReport { name: name.into(), seconds: 0.0, detail, reused: true });
        }
        self.forget_from(name)?;
        let start = Instant::now();
        let detail = run()?;
        let seconds = start.elapsed().as_secs_f64();
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
