//! libFuzzer target: `reco::fuzz::recipe` (see src/fuzz.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(init: reco::fuzz::keep_going_after_caught_panics(), |data: &[u8]| reco::fuzz::recipe(data));
