//! Reliability tests (issue 12): the bad-input matrix, byte-identical reruns, kill -9 at
//! random moments, two runs into one output, and the fuzz harnesses on their seed corpus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod bad_inputs;
mod common;
mod crash;
mod determinism;
mod fuzz_corpus;
mod gates;
mod reuse;
