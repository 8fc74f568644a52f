//! A training loop's checkpoints: every epoch's weights (`epoch-NNN.safetensors`; a best
//! that is a midpoint of two epochs also `midpoint-NNN.safetensors`) and, while
//! the loop is unfinished, what `--resume` needs to continue exactly where a killed process
//! stopped: the optimizer's moments (`optimizer-NNN.bpk`, burn's burnpack), the learning rate
//! and the history (`resume.json`); the row order is replayed from the seed.
//!
//! Write order makes a kill at any moment safe: the epoch's weights, then its optimizer state,
//! then `resume.json` naming that epoch (each file atomically); a `resume.json` therefore
//! never names files that are missing. The state carries a fingerprint of the data and
//! settings: a checkpoint made from other data or settings is refused, not continued.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use reco_runtime::artifact::manifest::Architecture;
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::FloatWeights;
use reco_runtime::artifact::{sha256_bytes, write_atomic};
use reco_runtime::error::{Error, IoContext, Result};

/// File name of the resume state inside a checkpoint directory.
pub const STATE: &str = "resume.json";

/// Where an unfinished training loop stood after its last completed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Hash of the training data, labels and settings this state belongs to.
    pub fingerprint: String,
    /// Last completed epoch (1-based).
    pub epoch: usize,
    /// Learning rate for the next epoch.
    #[serde(with = "exact")]
    pub lr: f64,
    /// Mean training loss per completed epoch.
    #[serde(with = "exact_vec")]
    pub train_loss: Vec<f64>,
    /// Validation AUC per completed epoch.
    #[serde(with = "exact_vec")]
    pub valid_auc: Vec<f64>,
    /// Best epoch so far (its weights are `epoch-<best>.safetensors`, or
    /// `midpoint-<best>.safetensors` when `best_midpoint`).
    pub best_epoch: usize,
    /// Validation AUC of the best weights (absent in states written before it was recorded:
    /// then `valid_auc[best_epoch - 1]`).
    #[serde(with = "exact_opt", default)]
    pub best_auc: Option<f64>,
    /// The best weights are the midpoint found after `best_epoch`.
    #[serde(default)]
    pub best_midpoint: bool,
}

/// f64 values as their bit patterns: JSON number parsing may round the last bit, and a
/// resumed run must carry on with exactly the values it stopped with.
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn to_hex(v: f64) -> String {
        format!("{:016x}", v.to_bits())
    }

    pub fn from_hex<E: serde::de::Error>(text: &str) -> Result<f64, E> {
        u64::from_str_radix(text, 16).map(f64::from_bits).map_err(E::custom)
    }

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_hex(&String::deserialize(d)?)
    }
}

/// [`exact`] for an optional value.
mod exact_opt {
    use super::exact::{from_hex, to_hex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.serialize_some(&to_hex(*x)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<String>::deserialize(d)?.map(|t| from_hex(&t)).transpose()
    }
}

/// [`exact`] for a list.
mod exact_vec {
    use super::exact::{from_hex, to_hex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|&x| to_hex(x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<String>::deserialize(d)?.iter().map(|t| from_hex(t)).collect()
    }
}

/// What a resumed loop starts from.
pub struct Resumed {
    /// The saved state.
    pub state: ResumeState,
    /// Weights after the last completed epoch.
    pub current: FloatWeights,
    /// Weights of the best epoch so far.
    pub best: FloatWeights,
    /// Optimizer state (burnpack bytes).
    pub optimizer: Vec<u8>,
}

/// Path of one epoch's weights.
pub fn epoch_weights(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}.safetensors"))
}

/// Path of the midpoint weights kept after one epoch.
pub fn midpoint_weights(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("midpoint-{epoch:03}.safetensors"))
}

fn optimizer_file(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("optimizer-{epoch:03}.bpk"))
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |mut f| std::io::Write::write_all(&mut f, bytes).at(path))
}

/// Saves epoch `state.epoch`: its weights (and the midpoint kept as the best after it, if
/// any), the optimizer state, then the resume state; older optimizer files go once the new
/// state names the new one.
pub fn save(
    dir: &Path,
    state: &ResumeState,
    (weights, midpoint): (&[u8], Option<&[u8]>),
    optimizer: &[u8],
) -> Result<()> {
    write_bytes(&epoch_weights(dir, state.epoch), weights)?;
    if let Some(m) = midpoint {
        write_bytes(&midpoint_weights(dir, state.epoch), m)?;
    }
    write_bytes(&optimizer_file(dir, state.epoch), optimizer)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal(e.to_string()))?;
    write_bytes(&dir.join(STATE), &json)?;
    remove_optimizer_files(dir, Some(state.epoch))
}

/// Removes the resume state and every optimizer file (the loop finished: nothing to resume;
/// the per-epoch weights stay).
pub fn finish(dir: &Path) -> Result<()> {
    let state = dir.join(STATE);
    if state.exists() {
        std::fs::remove_file(&state).at(&state)?;
    }
    remove_optimizer_files(dir, None)
}

fn remove_optimizer_files(dir: &Path, keep: Option<usize>) -> Result<()> {
    let keep = keep.map(|e| optimizer_file(dir, e));
    for entry in std::fs::read_dir(dir).at(dir)? {
        let p = entry.at(dir)?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("optimizer-") && name.ends_with(".bpk") && Some(&p) != keep.as_ref() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}

/// The saved state of `dir`, if there is one; refused when it was made from other data or
/// settings than `fingerprint` says.
pub fn load(dir: &Path, fingerprint: &str, spec: &FeatureSpec, arch: &Architecture) -> Result<Option<Resumed>> {
    let path = dir.join(STATE);
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let state: ResumeState = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("{}: not a reco-cli resume state ({e})", path.display())))?;
    if state.fingerprint != fingerprint {
        return Err(Error::input(format!(
            "{}: made from other training data or settings than this run's; remove {} to start over",
            path.display(),
            dir.display()
        )));
    }
    let bad = |what: &str| Error::input(format!("{}: {what}", path.display()));
    if state.epoch == 0
        || state.best_epoch == 0
        || state.best_epoch > state.epoch
        || state.valid_auc.len() != state.epoch
    {
        return Err(bad("inconsistent epochs"));
    }
    let current = FloatWeights::load(&epoch_weights(dir, state.epoch), spec, arch)?;
    let best_path = if state.best_midpoint {
        midpoint_weights(dir, state.best_epoch)
    } else {
        epoch_weights(dir, state.best_epoch)
    };
    let best = FloatWeights::load(&best_path, spec, arch)?;
    let opt = optimizer_file(dir, state.epoch);
    let optimizer = std::fs::read(&opt).at(&opt)?;
    Ok(Some(Resumed { state, current, best, optimizer }))
}

/// Fingerprint of what a loop's trajectory depends on: the settings (as JSON, without the epoch
/// budget, which only says where to stop) and every byte of the encoded data.
pub fn fingerprint(settings: &serde_json::Value, data: &[&[u8]]) -> String {
    let mut text = settings.to_string().into_bytes();
    for d in data {
        text.extend_from_slice(sha256_bytes(d).as_bytes());
    }
    sha256_bytes(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_state_round_trips_every_bit() {
        // 0.45867844416045117 came back one ulp off through a JSON number.
        let v = [0.45867844416045117, 0.1 + 0.2, f64::MIN_POSITIVE, 1.0 / 3.0];
        let state = ResumeState {
            fingerprint: "f".into(),
            epoch: 4,
            lr: 0.001 * 0.9_f64.powi(3),
            train_loss: v.to_vec(),
            valid_auc: v.to_vec(),
            best_epoch: 2,
            best_auc: Some(v[0]),
            best_midpoint: true,
        };
        let back: ResumeState = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
        assert_eq!(back, state);
        assert!(back.valid_auc.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(back.best_auc.map(f64::to_bits), Some(v[0].to_bits()));
    }
}
