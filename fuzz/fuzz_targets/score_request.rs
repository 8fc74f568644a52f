//! libFuzzer target: `reco::fuzz::score_request` (see src/fuzz.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reco::fuzz::score_request(data));
