//! The pipeline stages, one file each. Each stage takes resolved settings and paths, reports
//! through [`crate::progress::Progress`], and returns a summary the CLI prints.

pub mod bench;
pub mod checkpoint;
pub mod distill;
pub mod eval;
pub mod export;
pub mod feature_files;
pub mod featurize;
pub mod gates;
pub mod paths;
pub mod precompute;
pub mod predict;
pub mod prepare;
pub mod prepare_stream;
pub mod prom;
pub mod quantize;
pub mod report;
pub mod reuse;
pub mod run;
pub mod spill;
pub mod stable;
pub mod train;
