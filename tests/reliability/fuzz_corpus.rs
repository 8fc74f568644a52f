//! The fuzz harnesses (`reco::fuzz`, run by `scripts/fuzz` under libFuzzer) replayed in every
//! `cargo test`: on seeds from a tiny run, on a few hundred deterministic mutations of them
//! (truncations, bit flips, overwritten and deleted spans), and on every input that once
//! crashed (`fuzz/regressions/<target>/`). A harness panics on a crash, a panic inside a
//! loader, or bad input reported as an internal error.

use std::path::Path;

use reco::fuzz::{TableFormat, artifact, encode_artifact, raw_table, recipe};

use super::common::{repo, tiny_run};

/// xorshift64: the same mutations on every machine.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to three edits of `seed`; positions fall in the first `hot` bytes half the time
    /// (the manifest, a header), where a flip reaches a parser rather than tensor data.
    fn mutate(&mut self, seed: &[u8], hot: usize) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=self.below(3) {
            if v.is_empty() {
                break;
            }
            let span = if self.below(2) == 0 { hot.min(v.len()) } else { v.len() };
            let at = self.below(span);
            match self.below(5) {
                0 => v.truncate(at),
                1 => v[at] ^= 1 << self.below(8),
                2 => v[at] = [b'0', b'9', b'-', b'"', b',', 0x00, 0xFF, b'\n'][self.below(8)],
                3 => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    v.drain(at..end);
                }
                _ => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    let chunk = v[at..end].to_vec();
                    v.splice(at..at, chunk);
                }
            }
        }
        v
    }
}

/// Runs `harness` on each seed, `per_seed` mutations of it, and the target's regressions.
fn replay(target: &str, seeds: &[Vec<u8>], hot: usize, per_seed: usize, harness: impl Fn(&[u8])) -> usize {
    let mut m = Mutator(0x2545_F491_4F6C_DD1D);
    let mut runs = 0;
    for seed in seeds {
        harness(seed);
        for _ in 0..per_seed {
            harness(&m.mutate(seed, hot));
        }
        runs += 1 + per_seed;
    }
    let dir = repo().join("fuzz/regressions").join(target);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            harness(&std::fs::read(&p).unwrap());
            runs += 1;
        }
    }
    runs
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn artifact_loader_survives_its_corpus() {
    let run = tiny_run();
    let seeds: Vec<Vec<u8>> = ["teacher", "student", "teacher-int8", "student-int8"]
        .iter()
        .map(|s| {
            encode_artifact(&read(&run.join(s).join("manifest.json")), &read(&run.join(s).join("model.safetensors")))
        })
        .collect();
    let hot = seeds.iter().map(Vec::len).min().unwrap_or(0);
    // Valid seeds load and score: the harness reaches the scoring path, not only the parsers.
    for s in &seeds {
        artifact(s);
    }
    assert!(replay("artifact", &seeds, hot, 150, artifact) >= 600);
}

#[test]
fn recipe_parser_survives_its_corpus() {
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(repo().join("recipes")).unwrap() {
        seeds.push(read(&e.unwrap().path()));
    }
    seeds.push(read(&repo().join("tests/fixtures/checkins/recipe.toml")));
    assert!(replay("recipe", &seeds, 4096, 100, recipe) >= 300);
}

#[test]
fn table_readers_survive_their_corpus() {
    let csv = vec![
        read(&repo().join("tests/fixtures/checkins/venues.csv")),
        b"user_id,place_id,timestamp,label\n1,10,1767571200,1\n2,11,2026-01-05T10:00:00Z,0\n".to_vec(),
    ];
    assert!(replay("table_csv", &csv, 256, 150, |d| raw_table(d, TableFormat::Csv)) >= 300);
    let parquet =
        vec![read(&tiny_run().join("raw/places.parquet")), read(&tiny_run().join("raw/interactions.parquet"))];
    assert!(replay("table_parquet", &parquet, 1024, 100, |d| raw_table(d, TableFormat::Parquet)) >= 200);
}

#[test]
fn score_request_parser_survives_its_corpus() {
    let seeds = reco::fuzz::score_request_seeds();
    for s in &seeds {
        reco::fuzz::score_request(s);
    }
    assert!(replay("score_request", &seeds, 256, 400, reco::fuzz::score_request) >= 1200);
}
