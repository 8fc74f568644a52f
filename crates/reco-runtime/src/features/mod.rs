//! The built-in features' definitions, shared by `prepare` (batch) and a server (online):
//! time and distance ([`calendar`]), a place's trailing window ([`window`]) and a user's own
//! history at a place ([`history`]). One formula each, so a row computed either way gets the
//! same numbers.

pub mod calendar;
pub mod history;
pub mod window;
