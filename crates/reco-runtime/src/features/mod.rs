//! The built-in features' definitions, shared by `prepare` (batch) and a server (online):
//! a user's own history at a place ([`history`]). One formula each, so a row computed
//! either way gets the same numbers.

pub mod history;
