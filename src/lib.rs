//! reco: the library behind `reco-cli`.
//!
//! It owns every stage of the pipeline (synthetic data, feature preparation, teacher
//! training, evaluation, scoring) and the artifact format serving systems consume. It never
//! prints, draws progress bars or exits: progress goes through [`progress::Progress`], errors
//! come back as [`error::Error`] and the binary decides what to show and which exit code to use.
//!
//! Layering (each arrow is "may use"; `scripts/check_layout.py` checks there is no cycle):
//! `pipeline -> {data, model, outputs, metrics, recipe}`, `data -> geo`, and everything ->
//! `reco_runtime`. The artifact format, the runtime and its kernels are the `reco-runtime`
//! crate (no burn, no polars: a serving system links it alone); ONNX graphs are `reco-onnx`.
//! Both are used under their own names, so `crate::` always means code in `src/`.

pub mod data;
pub mod fuzz;
pub mod geo;
pub mod metrics;
pub mod model;
pub mod outputs;
pub mod parquet_out;
pub mod pipeline;
pub mod progress;
pub mod recipe;

pub use reco_runtime::{Error, Result, VERSION};
