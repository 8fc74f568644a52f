//! `prepare`: raw tables -> leakage-free feature files, as named steps:
//!
//! 1. [`crate::data::raw::read`]: the tables as the recipe maps them, validated (ids, types,
//!    timestamps, local time).
//! 2. [`labels`]: an explicit 0/1 column, a rating threshold, or implicit (visits only).
//! 3. [`context`]: where the user was: the interaction's location, the user's home, or the
//!    place of their previous visit; rows without one are dropped and counted.
//! 4. [`candidates`]: the rows, with `negatives_per_positive` sampled places for implicit
//!    data (within `radius_km` of the context with a grid index, by popularity otherwise).
//! 5. [`splits`]: by time, the earliest part trains, then valid, then test; the ranking set of
//!    sampled test positives, each with `ranking_candidates` other places.
//! 6. [`window`]: point-in-time place statistics over a trailing window, from events strictly
//!    before each row's timestamp.
//! 7. [`featurize`]: joins, haversine distance, local-time features and declared features as
//!    one polars lazy plan, written a chunk at a time ([`feature_files`]).
//! 8. [`finish`]: vocabularies and mean/std on the training split, a random calibration
//!    sample, the place snapshot, `feature_spec.json`, `prepare.json`.
//!
//! Two drivers run the steps: [`memory`] for tables that fit in memory, [`stream`] for a large
//! Parquet interactions table (through disk, [`spill`]); both write the same bytes. Nothing in
//! a step imports a driver. Output directory (written atomically):
//! `train|valid|test|calibration|ranking.parquet`, `places.parquet`, `feature_spec.json`,
//! `prepare.json`.

pub mod candidates;
pub mod context;
pub mod events;
pub mod feature_files;
pub mod featurize;
pub mod finish;
pub mod history;
pub mod labels;
pub mod memory;
pub mod spill;
pub mod splits;
pub mod stream;
pub mod window;

use std::path::Path;

pub use context::ContextKind;
pub use finish::{PrepareSummary, REQUEST_FEATURES};
pub use labels::LabelSource;

use crate::data::schema::FilesConfig;
use crate::progress::Progress;
use crate::recipe::PrepareConfig;
use reco_runtime::error::Result;

/// Runs the whole preparation of the tables `data` describes into `out_dir`: a large Parquet
/// interactions table streams ([`stream`]), the rest is read into memory ([`memory`]).
pub fn prepare(
    data: &FilesConfig,
    out_dir: &Path,
    cfg: &PrepareConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    match stream::plan(data, cfg)? {
        Some(plan) => stream::prepare(data, plan, out_dir, cfg, seed, progress),
        None => memory::prepare(data, out_dir, cfg, seed, progress),
    }
}
