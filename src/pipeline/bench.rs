//! `bench`: scoring throughput of float and INT8 artifacts, measured interleaved in one run
//! (round-robin over every model × batch size, several rounds, best round kept) so that the
//! machine's drift hits all of them alike. End to end by default: raw columns -> encoding
//! -> logits; [`Scope::Dense`] times the dense layers alone on prepared MLP inputs, as a
//! peer runtime given the same layers (`scripts/bench_peers.py`) is timed. Each run also
//! measures one core's peak for the kernels' inner instructions and gives every figure as a
//! share of it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::features::FeatureFrame;
use reco_runtime::artifact::Manifest;
use reco_runtime::error::{Error, Result};
use reco_runtime::kernels::{Kernel, peak};
use reco_runtime::runtime::{Columns, Model};

/// What each timed call covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Raw feature columns to logits: encoding, embedding lookups and the dense layers.
    EndToEnd,
    /// The dense layers alone, from the float MLP input (embedding rows and normalized
    /// numbers, built before timing) to logits; INT8 models quantize that input.
    Dense,
}

impl Scope {
    /// The name `--scope` takes and reports carry.
    pub fn name(self) -> &'static str {
        match self {
            Self::EndToEnd => "end-to-end",
            Self::Dense => "dense",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Artifact directory name.
    pub model: String,
    /// `float` or `int8`.
    pub kind: reco_runtime::runtime::Precision,
    /// Rows per call.
    pub batch: usize,
    /// Throughput.
    pub rows_per_s: f64,
    /// Latency per row, microseconds.
    pub us_per_row: f64,
    /// Dense-layer multiply-accumulates per second, in billions (rows/s × Σ in·out): the
    /// figure to hold against a core's peak (e.g. 64 u8·s8 MACs per cycle with AVX-512 VNNI).
    pub gmac_per_s: f64,
    /// Throughput relative to the float parent (INT8 rows), if it is in the run.
    pub speedup_vs_float: Option<f64>,
    /// `gmac_per_s` as a percentage of the measured peak of its kind (INT8 or float) times
    /// the threads ([`Peaks`]); absent where the kernel has no peak (scalar).
    pub percent_of_peak: Option<f64>,
}

/// One core's measured peak, in billions of multiply-adds per second, for the instruction
/// each kernel's inner loop runs ([`reco_runtime::kernels::peak`]), measured in the same run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Peaks {
    /// The INT8 kernel's (`vpdpbusd`, or AVX2's `vpmaddubsw` sequence).
    pub int8: Option<f64>,
    /// The float kernel's fused multiply-add.
    pub float: Option<f64>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// CPU model name.
    pub cpu: String,
    /// Concurrent scoring threads (each call runs on one; rows/s is their total).
    pub threads: usize,
    /// INT8 kernel used.
    pub kernel: String,
    /// What each timed call covers.
    pub scope: Scope,
    /// One core's peaks, measured before the models.
    pub peak_gmac_per_s: Peaks,
    /// Measurements, model-major.
    pub results: Vec<BenchResult>,
}

/// CPU model name from /proc/cpuinfo (or the architecture).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// `count` consecutive batches of `batch` rows from `cols`, wrapping around at its end: what
/// the benchmarks cycle through.
pub fn batches_of(cols: &Columns, batch: usize, count: usize) -> Vec<Columns> {
    (0..count)
        .map(|i| {
            let idx: Vec<usize> = (0..batch).map(|j| (i * batch + j) % cols.rows).collect();
            cols.take(&idx)
        })
        .collect()
}

/// The batches one model cycles through at one batch size.
enum Batches {
    /// Raw columns ([`Scope::EndToEnd`]).
    Columns(Vec<Columns>),
    /// MLP inputs ([`Scope::Dense`]), `batch` rows each.
    Dense(Vec<Vec<f32>>),
}

impl Batches {
    fn new(model: &Model, cols: Vec<Columns>, scope: Scope) -> Result<Self> {
        Ok(match scope {
            Scope::EndToEnd => Self::Columns(cols),
            Scope::Dense => Self::Dense(cols.iter().map(|c| model.input_matrix(&c.view())).collect::<Result<_>>()?),
        })
    }

    /// Scores batch `i` (modulo the count).
    fn score(&self, model: &Model, i: usize, batch: usize) -> Result<Vec<f32>> {
        match self {
            Self::Columns(v) => model.logits(&v[i % v.len()]),
            Self::Dense(v) => model.dense(&v[i % v.len()], batch),
        }
    }
}

/// Scores batches round-robin (starting at batch `first`) for `seconds`; returns rows scored.
fn score_for(model: &Model, batches: &Batches, batch: usize, seconds: f64, first: usize) -> Result<usize> {
    let start = Instant::now();
    let (mut done, mut i) = (0usize, first);
    while done == 0 || start.elapsed().as_secs_f64() < seconds {
        let out = batches.score(model, i, batch)?;
        std::hint::black_box(&out);
        done += batch;
        i += 1;
    }
    Ok(done)
}

/// Measures every model at every batch size for about `seconds` each in total.
///
/// Each call scores on one thread (the runtime's float and INT8 kernels never start threads):
/// `threads` > 1 runs that many callers at once (rows/s is their total).
pub fn bench(
    models: &[PathBuf],
    data: &Path,
    batch_sizes: &[usize],
    seconds: f64,
    threads: usize,
    scope: Scope,
) -> Result<BenchReport> {
    if models.is_empty() || batch_sizes.is_empty() || batch_sizes.contains(&0) {
        return Err(Error::input("bench: expected model directories and positive --batch-sizes"));
    }
    let mut opened = Vec::new();
    for dir in models {
        let (manifest, model) = Model::open(dir)?;
        opened.push((dir, manifest, model));
    }
    let frame = FeatureFrame::read(data, opened[0].2.spec(), false)?;
    for (dir, _, m) in &opened[1..] {
        if m.spec().input_names() != opened[0].2.spec().input_names() {
            return Err(Error::input(format!("{}: its inputs differ from the other models'", dir.display())));
        }
    }
    let max_b = *batch_sizes.iter().max().unwrap_or(&1);
    let columns: Vec<(usize, Vec<Columns>)> =
        batch_sizes.iter().map(|&b| (b, batches_of(&frame.columns, b, (max_b / b).clamp(1, 64)))).collect();
    // Per model: its own MLP inputs in dense scope (float and INT8 build them differently).
    let prepared: Vec<Vec<(usize, Batches)>> = opened
        .iter()
        .map(|(_, _, model)| {
            columns.iter().map(|(b, cols)| Ok((*b, Batches::new(model, cols.clone(), scope)?))).collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    let models: Vec<&Model> = opened.iter().map(|(_, _, m)| m).collect();
    let kernel = Kernel::detect()?;
    let peaks = Peaks { int8: peak::int8_gmacs(kernel), float: peak::f32_gmacs(kernel) };
    let best = measure(&models, &prepared, seconds, threads)?;
    // One core's peak of each kind, times the callers: what each result is a share of.
    let ceiling = |p: Option<f64>| p.map(|p| p * threads.max(1) as f64);
    let ceilings = (ceiling(peaks.int8), ceiling(peaks.float));
    let results =
        opened.iter().enumerate().flat_map(|(mi, m)| results_of(mi, m, &opened, &columns, &best, ceilings)).collect();
    Ok(BenchReport {
        cpu: cpu_name(),
        threads,
        kernel: kernel.name().to_string(),
        scope,
        peak_gmac_per_s: peaks,
        results,
    })
}

/// The best rows/s of every model at every batch size, interleaved: as many rounds as slices
/// of ≥ 0.1 s allow (5 to 100), so that a burst of noise on a busy machine costs one short
/// slice of one cell, not a whole cell's measurement.
fn measure(
    models: &[&Model],
    prepared: &[Vec<(usize, Batches)>],
    seconds: f64,
    threads: usize,
) -> Result<Vec<Vec<f64>>> {
    let batches = prepared.first().map_or(0, Vec::len);
    let cells = models.len() * batches;
    let rounds = ((seconds / (cells as f64 * 0.1)) as usize).clamp(5, 100);
    let per = seconds / (rounds * cells) as f64;
    let mut best = vec![vec![0f64; batches]; models.len()];
    for _ in 0..rounds {
        for (mi, model) in models.iter().enumerate() {
            for (bi, (b, cols)) in prepared[mi].iter().enumerate() {
                let start = Instant::now();
                let done = if threads <= 1 {
                    score_for(model, cols, *b, per, 0)?
                } else {
                    std::thread::scope(|sc| {
                        let workers: Vec<_> =
                            (0..threads).map(|t| sc.spawn(move || score_for(model, cols, *b, per, t))).collect();
                        workers.into_iter().try_fold(0usize, |sum, w| {
                            Ok(sum + w.join().map_err(|_| Error::Internal("bench worker panicked".into()))??)
                        })
                    })?
                };
                let rps = done as f64 / start.elapsed().as_secs_f64();
                best[mi][bi] = best[mi][bi].max(rps);
            }
        }
    }
    Ok(best)
}

/// Model `mi`'s results, one per batch size, with its speed-up over its float parent when that
/// was measured too, and its share of `ceilings` (INT8, float: the peaks times the callers).
fn results_of(
    mi: usize,
    (dir, manifest, model): &(&PathBuf, Manifest, Model),
    opened: &[(&PathBuf, Manifest, Model)],
    batches: &[(usize, Vec<Columns>)],
    best: &[Vec<f64>],
    (int8_ceiling, float_ceiling): (Option<f64>, Option<f64>),
) -> Vec<BenchResult> {
    use reco_runtime::runtime::Precision;
    let ceiling = match model.precision() {
        Precision::Int8 => int8_ceiling,
        Precision::Float => float_ceiling,
    };
    let macs: usize = manifest.architecture.layer_shapes(model.spec()).iter().map(|(i, o)| i * o).sum();
    let parent = manifest.lineage.as_ref().map(|l| l.parent_content_sha256.clone());
    let float_parent = opened.iter().position(|(_, m, md)| {
        md.precision() == Precision::Float && parent.as_deref() == Some(m.content_hash().as_str())
    });
    batches
        .iter()
        .enumerate()
        .map(|(bi, (b, _))| {
            let rps = best[mi][bi];
            let gmac_per_s = rps * macs as f64 / 1e9;
            BenchResult {
                model: crate::outputs::dir_name(dir),
                kind: model.precision(),
                batch: *b,
                rows_per_s: rps,
                us_per_row: 1e6 / rps,
                gmac_per_s,
                speedup_vs_float: float_parent
                    .filter(|_| model.precision() == Precision::Int8)
                    .map(|p| rps / best[p][bi]),
                percent_of_peak: ceiling.map(|c| 100.0 * gmac_per_s / c),
            }
        })
        .collect()
}

/// The human-readable table.
pub fn table(r: &BenchReport) -> String {
    let scope = match r.scope {
        Scope::EndToEnd => "end to end",
        Scope::Dense => "dense layers only",
    };
    let mut s = format!("cpu: {}  threads: {}  int8 kernel: {}  scope: {scope}\n", r.cpu, r.threads, r.kernel);
    let peak = |p: Option<f64>| p.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
    s.push_str(&format!(
        "peak GMAC/s of one core: int8 {}  float {}\n",
        peak(r.peak_gmac_per_s.int8),
        peak(r.peak_gmac_per_s.float)
    ));
    s.push_str(&format!(
        "{:<18} {:<6} {:>6} {:>13} {:>10} {:>8} {:>7} {:>14}\n",
        "model", "kind", "batch", "rows/s", "us/row", "GMAC/s", "% peak", "int8/float"
    ));
    for x in &r.results {
        s.push_str(&format!(
            "{:<18} {:<6} {:>6} {:>13.0} {:>10.3} {:>8.1} {:>7} {:>14}\n",
            x.model,
            x.kind,
            x.batch,
            x.rows_per_s,
            x.us_per_row,
            x.gmac_per_s,
            x.percent_of_peak.map_or_else(|| "-".into(), |v| format!("{v:.0}")),
            x.speedup_vs_float.map_or_else(|| "-".into(), |v| format!("{v:.2}x"))
        ));
    }
    s
}
