//! What one core can do at most with the instruction each kernel's inner loop is made of,
//! measured: independent accumulator chains of that instruction on registers (twelve; six on
//! AVX2, whose step needs a temporary per chain), written in `asm!` so that no compiler can
//! merge or hoist them, with no loads or stores: the instruction's throughput on this machine
//! at its current clock. Benchmarks report their GEMM and model figures as a share of it.
//!
//! - INT8: AVX-512 VNNI `vpdpbusd` (64 u8·s8 multiply-adds); AVX2 `vpmaddubsw` + `vpmaddwd` +
//!   `vpaddd` (32 multiply-adds, the 7-bit path: a model with 8-bit weights runs AVX2's
//!   widened `vpmaddwd` path, half as many multiply-adds an instruction, so its share of this
//!   peak stays under about 50%).
//! - Float: `vfmadd` on 16 lanes (AVX-512) or 8 (AVX2 + FMA).
//!
//! The scalar reference has no peak worth stating: `None`.

use std::time::Instant;

use super::Kernel;
use super::x86;

/// Billions of multiply-adds per second one core runs through the INT8 kernel's inner
/// instruction (`None` for the scalar kernel or a CPU without it).
pub fn int8_gmacs(kernel: Kernel) -> Option<f64> {
    let macs = int8_step_macs(kernel)?;
    Some(best_rate(macs, |steps| int8_loop(kernel, steps)))
}

/// Multiply-adds in one step of [`int8_loop`] (`None` where it does not run).
pub fn int8_step_macs(kernel: Kernel) -> Option<usize> {
    match kernel {
        Kernel::Vnni if x86::has_vnni() => Some(12 * 64),
        Kernel::Avx2 if x86::has_avx2() => Some(6 * 32),
        _ => None,
    }
}

/// `steps` steps of the INT8 peak loop (for benchmarks that time it themselves); returns a
/// checksum of its accumulators.
pub fn int8_loop(kernel: Kernel, steps: usize) -> f32 {
    x86::peak_int8(kernel, steps)
}

/// Billions of multiply-adds per second one core runs through the float kernel's fused
/// multiply-add (`None` where the float kernel is the scalar reference).
pub fn f32_gmacs(kernel: Kernel) -> Option<f64> {
    let lanes = super::float::vector_lanes(kernel)?;
    Some(best_rate(12 * lanes, |steps| x86::peak_f32(lanes, steps)))
}

/// The best of three timings of `run(steps)` (each step `macs` multiply-adds), with `steps`
/// doubled until one run takes 20 ms, in billions of multiply-adds per second.
fn best_rate(macs: usize, run: impl Fn(usize) -> f32) -> f64 {
    let mut steps = 1 << 12;
    let time = |steps| {
        let start = Instant::now();
        std::hint::black_box(run(steps));
        start.elapsed().as_secs_f64()
    };
    while time(steps) < 0.02 && steps < 1 << 30 {
        steps *= 2;
    }
    let best = (0..3).map(|_| time(steps)).fold(f64::INFINITY, f64::min);
    (steps * macs) as f64 / best.max(1e-9) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_loops_run_every_step_on_every_chain() {
        // Lane 0 of chain i starts at i and gains 4 (INT8) or 1 (float) a step.
        for kernel in Kernel::available() {
            let (chains, want) = match kernel {
                Kernel::Vnni => (12.0, 66.0 + 48.0 * 1000.0),
                Kernel::Avx2 => (6.0, 15.0 + 24.0 * 1000.0),
                Kernel::Scalar => (0.0, 0.0),
            };
            assert_eq!(x86::peak_int8(kernel, 1000), want, "{} ({chains} chains)", kernel.name());
            if let Some(lanes) = crate::kernels::float::vector_lanes(kernel) {
                assert_eq!(x86::peak_f32(lanes, 1000), 66.0 + 12.0 * 1000.0, "{} float", kernel.name());
            }
        }
        assert_eq!(int8_gmacs(Kernel::Scalar), None);
        assert_eq!(f32_gmacs(Kernel::Scalar), None);
        for kernel in Kernel::available().into_iter().filter(|k| *k != Kernel::Scalar) {
            assert!(int8_gmacs(kernel).is_some_and(|p| p.is_finite() && p > 0.0), "{}", kernel.name());
            assert!(f32_gmacs(kernel).is_some_and(|p| p.is_finite() && p > 0.0), "{}", kernel.name());
        }
    }
}
