//! Kernel benchmarks: u8×s8→i32 GEMM per kernel, and the float layer kernel per kernel (weights
//! packed once, as a loaded model holds them), on the teacher-sized layers (64→256→128).
//!
//! How to compare two kernels: `cargo bench --bench kernels -- 256x64` runs every kernel on
//! the same shape in one process; criterion prints time per call, and
//! `MACs per call / time` gives the throughput (the `elements` column counts MACs).
//! `RECO_KERNEL` does not apply here: every kernel the CPU supports is measured. The `peak`
//! group times each INT8 kernel's inner instruction alone: its rate is the ceiling. The
//! `relu inputs` groups time the float layer on mostly-zero inputs, dense and skipping zeros.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reco_runtime::kernels::float::{PackedF32, Rows, RowsMut, dense_f32, dense_f32_skipping_zeros, vector_lanes};
use reco_runtime::kernels::{Kernel, PackedWeights, gemm_u8s8, padded};
use reco_runtime::rng::Rng;

fn shapes() -> [(usize, usize, usize); 4] {
    // (batch m, input k, output n)
    [(64, 64, 256), (64, 256, 128), (1024, 64, 256), (1, 64, 256)]
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    for (m, k, n) in shapes() {
        let kp = padded(k);
        let x: Vec<u8> = (0..m * kp).map(|_| rng.below(256) as u8).collect();
        let w8: Vec<i8> = (0..n * k).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let w7: Vec<i8> = w8.iter().map(|&v| v / 2).collect();
        let mut group = c.benchmark_group(format!("gemm {n}x{k} batch {m}"));
        group.throughput(Throughput::Elements((m * k * n) as u64));
        for kernel in Kernel::available() {
            for (bits, w) in [(8, &w8), (7, &w7)] {
                let packed = PackedWeights::new(w, n, k);
                let mut acc = vec![0i32; m * n];
                group.bench_function(format!("{} w{bits}", kernel.name()), |b| {
                    b.iter(|| gemm_u8s8(kernel, black_box(&x), m, &packed, &mut acc));
                });
            }
        }
        let xf: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let weight: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32).collect();
        let packed = PackedF32::new(&weight, &vec![0.0; n], n, k);
        let mut out = vec![0f32; m * packed.np()];
        for kernel in Kernel::available() {
            group.bench_function(format!("f32 {}", kernel.name()), |b| {
                b.iter(|| {
                    let x = Rows { data: black_box(&xf), stride: k, rows: m };
                    dense_f32(kernel, x, &packed, true, RowsMut { data: &mut out, stride: packed.np() });
                });
            });
        }
        group.finish();
    }
}

/// One core's INT8 peak (`reco_runtime::kernels::peak`): the GEMM figures above read as a
/// share of this one's `elements` rate.
fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("peak");
    for kernel in Kernel::available() {
        let Some(macs) = reco_runtime::kernels::peak::int8_step_macs(kernel) else { continue };
        group.throughput(Throughput::Elements((macs * 10_000) as u64));
        group.bench_function(format!("int8 {}", kernel.name()), |b| {
            b.iter(|| reco_runtime::kernels::peak::int8_loop(kernel, black_box(10_000)));
        });
    }
    group.finish();
}

/// Float layers on ReLU-like inputs (a share of exact zeros, the rest positive), dense tiles
/// against the lists of nonzero inputs, on the hidden layers of the [128, 64] and [256, 128]
/// teachers at the zero shares measured on them (65%) and around the switch (40–55%).
fn skipping(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    for (k, n) in [(128, 64), (256, 128), (64, 32)] {
        let m = 64;
        let weight: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32).collect();
        let packed = PackedF32::new(&weight, &vec![0.0; n], n, k);
        let mut out = vec![0f32; m * packed.np()];
        for zeros in [0.65, 0.55] {
            let x: Vec<f32> =
                (0..m * k).map(|_| if rng.uniform() < zeros { 0.0 } else { rng.normal().abs() as f32 }).collect();
            let mut group = c.benchmark_group(format!("relu inputs {n}x{k} batch {m} zeros {zeros}"));
            group.throughput(Throughput::Elements((m * k * n) as u64));
            for kernel in Kernel::available() {
                group.bench_function(format!("dense {}", kernel.name()), |b| {
                    b.iter(|| {
                        let rows = Rows { data: black_box(&x), stride: k, rows: m };
                        dense_f32(kernel, rows, &packed, true, RowsMut { data: &mut out, stride: packed.np() });
                    });
                });
                if vector_lanes(kernel) != Some(16) {
                    continue; // only AVX-512 skips zeros: the others run the dense tiles
                }
                group.bench_function(format!("skipping {}", kernel.name()), |b| {
                    b.iter(|| {
                        let rows = Rows { data: black_box(&x), stride: k, rows: m };
                        let out = RowsMut { data: &mut out, stride: packed.np() };
                        dense_f32_skipping_zeros(kernel, rows, &packed, true, out);
                    });
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench, peak, skipping);
criterion_main!(benches);
