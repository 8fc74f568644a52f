//! `reco-cli prepare`: small CSV tables (`tables`), the check-in log's real-data shapes
//! (`checkins`), streamed against in-memory preparation (`streamed`).

mod checkins;
mod streamed;
mod tables;
