//! reco: the library behind `reco-cli`.
//!
//! It owns every stage of the pipeline (synthetic data, feature preparation, teacher
//! training, evaluation, scoring) and the artifact format serving systems consume. It never
//! prints, draws progress bars or exits: progress goes through [`progress::Progress`], errors
//! come back as [`error::Error`] and the binary decides what to show and which exit code to use.
//!
//! Layering (each arrow is "may use"):
//! `pipeline -> {data, model, artifact, runtime, metrics}`, `runtime -> artifact`,
//! `data -> geo`, `onnx -> artifact`. `runtime` and `artifact` use neither burn nor polars, so a serving system
//! can link them alone.

pub mod artifact;
pub mod data;
pub mod error;
pub mod fuzz;
pub mod geo;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod progress;
pub mod quant;
pub mod recipe;
pub mod rng;
pub mod runtime;

pub use error::{Error, Result};

/// The version written into every manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
