//! reco-runtime: what a serving system links to score reco-cli's artifacts.
//!
//! Load and verify an artifact ([`artifact`]), encode raw feature columns exactly as its
//! feature spec says and score them in float or INT8 ([`runtime`], on our own float and
//! integer [`kernels`]), and coalesce single requests into batches ([`runtime::coalesce`]). Its
//! dependencies are small (serde, safetensors, sha2, thiserror; arrow behind the `arrow`
//! feature): no burn, polars, protobuf, clap or tokio.
//!
//! Layering (each arrow is "may use"): `runtime -> {artifact, kernels, quant}`,
//! `artifact -> quant`, everything -> `error`.

pub mod artifact;
pub mod error;
pub mod features;
pub mod kernels;
pub mod quant;
pub mod rng;
pub mod runtime;

pub use error::{Error, ErrorKind, Result};

/// The version written into every manifest and file metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
