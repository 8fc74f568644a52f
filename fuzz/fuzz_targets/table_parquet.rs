//! libFuzzer target: `reco::fuzz::raw_table` on bytes written as `interactions.parquet`.
#![no_main]

libfuzzer_sys::fuzz_target!(init: reco::fuzz::keep_going_after_caught_panics(), |data: &[u8]| reco::fuzz::raw_table(data, reco::fuzz::TableFormat::Parquet));
