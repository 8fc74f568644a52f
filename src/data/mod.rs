//! Data in and out: raw tables, the synthetic generator, feature files.
//!
//! Everything that touches a polars `DataFrame` lives here or in `pipeline::prepare`; the rest
//! of the crate sees plain columns ([`features::FeatureFrame`]).

pub mod builtin;
pub mod chunks;
pub mod features;
pub mod io;
pub mod movielens;
mod narrow;
pub mod raw;
pub mod schema;
pub mod synth;
pub mod table;
pub mod timespan;
