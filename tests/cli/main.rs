//! End-to-end tests of the `reco-cli` binary as a user runs it, one module per subcommand (and
//! `artifacts`, `inputs` for what every subcommand does alike): a tiny pipeline built once and
//! shared (`support::pipeline`), and one test per kind of bad input (exit code 2, one-line error
//! naming the file or column, nothing half-written). One test binary, not one per subcommand:
//! the tiny pipeline is built once and the test crate linked once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod artifacts;
mod bench;
mod datasets;
mod distill;
mod eval;
mod export;
mod inputs;
mod inspect;
mod online;
mod online_serve;
mod precompute;
mod predict;
mod prepare;
mod quantize;
mod run;
mod serve;
mod train;
