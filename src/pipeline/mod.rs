//! The pipeline stages, one module each (a folder where a stage has several steps:
//! `prepare/`, `train/`, `quantize/`, `run/`, `report/`). Each stage takes resolved settings
//! and paths, reports through [`crate::progress::Progress`], and returns a summary the CLI
//! prints. What is not a stage lives outside: paths, locks and the output guard in
//! [`crate::outputs`], tables in [`crate::data`].

pub mod bench;
pub mod distill;
pub mod eval;
pub mod export;
pub mod precompute;
pub mod predict;
pub mod prepare;
pub mod quantize;
pub mod raw;
pub mod report;
pub mod run;
pub mod track;
pub mod train;
pub mod triton;
