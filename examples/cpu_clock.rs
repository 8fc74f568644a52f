//! Measures the core clock this process actually runs at (turbo and VM included), for
//! stating benchmark results as a fraction of a per-cycle peak: a chain of dependent 64-bit
//! `imul`s takes 3 cycles each on every current x86-64 core (Intel since Nehalem, AMD since
//! Zen). A chain of `add reg, imm` is no good: recent Intel cores fold those at rename.
//!
//! `cargo run --release --example cpu_clock` prints GHz to stdout.

#[cfg(target_arch = "x86_64")]
fn muls(iterations: u64) -> u64 {
    let mut x: u64 = 3;
    let mut n = iterations;
    // SAFETY: pure register arithmetic, no memory access.
    unsafe {
        std::arch::asm!(
            "2:",
            "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
            "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            n = inout(reg) n,
            options(nomem, nostack),
        );
    }
    let _ = n;
    x
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let iterations = 100_000_000u64;
    std::hint::black_box(muls(iterations / 10)); // warm up (frequency ramp)
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        std::hint::black_box(muls(iterations));
        best = best.min(t.elapsed().as_secs_f64());
    }
    // 8 imuls of 3 cycles per iteration.
    println!("{:.3}", (iterations * 24) as f64 / best / 1e9);
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("cpu_clock: x86-64 only");
    std::process::exit(2);
}
