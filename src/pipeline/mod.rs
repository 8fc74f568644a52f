//! The pipeline stages, one file each. Each stage takes resolved settings and paths, reports
//! through [`crate::progress::Progress`], and returns a summary the CLI prints.

pub mod bench;
pub mod distill;
pub mod eval;
pub mod export;
pub mod precompute;
pub mod predict;
pub mod prepare;
pub mod quantize;
pub mod report;
pub mod run;
pub mod train;
