//! The built-in features' definitions, shared by `prepare` (batch) and a server (online):
//! time and distance ([`calendar`]), a place's trailing window ([`window`]) and a user's own
//! history at a place ([`history`]). One formula each, so a row computed either way gets the
//! same numbers. A server keeps the event-fed [`state`] and turns raw requests into model
//! inputs with [`online`]; [`files`] reads what `prepare` writes for it to start warm.

pub mod calendar;
#[cfg(feature = "parquet")]
pub mod files;
pub mod history;
pub mod json;
pub mod online;
pub mod state;
pub mod window;
