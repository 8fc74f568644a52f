//! What commands write and how: the run's directory layout ([`paths`]), the output guard
//! ([`guard`]), one writer per folder ([`lock`]), files that hold no timings and no absolute
//! paths ([`stable`]), the Prometheus text of `--metrics-out` ([`prom`]), and atomic writes.

pub mod guard;
pub mod junit;
pub mod lock;
pub mod paths;
pub mod prom;
pub mod stable;
pub mod summary;

use std::path::Path;

use serde::Serialize;

pub use guard::{Format, OutputGuard, Written, check_output, check_root};
pub use lock::OutputLock;
pub use paths::{RunPaths, dir_name, is_inside, relative};

use reco_runtime::error::{Error, IoContext, Result};

/// Writes JSON through a temporary file renamed into place.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    write_file(path, &bytes)
}

/// Writes `bytes` to `path` (its folder created when missing) through a temporary file
/// renamed into place.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    reco_runtime::artifact::write_atomic(path, |mut f| std::io::Write::write_all(&mut f, bytes).at(path))
}
