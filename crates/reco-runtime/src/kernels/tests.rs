//! One property suite for every kernel this CPU runs, against the scalar reference and a
//! direct i64 computation: odd shapes (1, 7, 15, 16, 17, 63, 65, ...), extreme values
//! (all 255 × ±127, the worst case for i16 saturation), 7-bit and full 8-bit weights.

use super::*;
use crate::rng::Rng;

fn direct(x: &[u8], m: usize, k: usize, kp: usize, w: &[i8], n: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for r in 0..m {
        for c in 0..n {
            let s: i64 = (0..k).map(|i| i64::from(x[r * kp + i]) * i64::from(w[c * k + i])).sum();
            out[r * n + c] = i32::try_from(s).unwrap();
        }
    }
    out
}

fn check(kernel: Kernel, m: usize, k: usize, n: usize, gen_x: &mut dyn FnMut() -> u8, gen_w: &mut dyn FnMut() -> i8) {
    let kp = padded(k);
    let mut x = vec![0u8; m * kp];
    for r in 0..m {
        for i in 0..k {
            x[r * kp + i] = gen_x();
        }
    }
    let w: Vec<i8> = (0..n * k).map(|_| gen_w()).collect();
    let packed = PackedWeights::new(&w, n, k);
    let want = direct(&x, m, k, kp, &w, n);
    let mut reference = vec![0i32; m * n];
    gemm_u8s8(Kernel::Scalar, &x, m, &packed, &mut reference);
    assert_eq!(reference, want, "scalar m={m} k={k} n={n}");
    let mut got = vec![0i32; m * n];
    gemm_u8s8(kernel, &x, m, &packed, &mut got);
    assert_eq!(got, want, "{} m={m} k={k} n={n} max|w|={}", kernel.name(), packed.max_abs);
}

const SHAPES: [usize; 10] = [1, 2, 7, 15, 16, 17, 63, 64, 65, 130];

#[test]
fn every_kernel_matches_the_reference_on_odd_shapes_and_random_values() {
    let mut rng = Rng::new(17);
    for kernel in Kernel::available() {
        for &k in &SHAPES {
            // n up to 130: every tile width of every kernel (16-channel VNNI blocks 4 + 4 + 1,
            // 4 + 2 + 1 at 100) and their edges; n ≤ 2 takes the dot-product path.
            for &n in &[1usize, 2, 3, 4, 5, 17, 63, 100, 130] {
                // m = 40: two whole 16-row groups of the narrow path and a partial one.
                let rows: &[usize] = if n <= 2 { &[1, 3, 9, 16, 40] } else { &[1, 3, 9] };
                for &m in rows {
                    let mut r1 = rng.clone();
                    let mut r2 = Rng::new(rng.next_u64());
                    check(kernel, m, k, n, &mut || r1.below(256) as u8, &mut || (r2.below(255) as i32 - 127) as i8);
                    let mut r3 = Rng::new(rng.next_u64());
                    let mut r4 = Rng::new(rng.next_u64());
                    // 7-bit weights (the AVX2 vpmaddubsw path).
                    check(kernel, m, k, n, &mut || r3.below(256) as u8, &mut || (r4.below(127) as i32 - 63) as i8);
                }
            }
        }
    }
}

#[test]
fn extreme_values_do_not_saturate() {
    for kernel in Kernel::available() {
        for &k in &[1usize, 17, 64, 255, 1000] {
            // n = 5: channel blocks; n = 1: the dot-product path.
            for n in [5, 1] {
                for w in [127i8, -127, -128, 63, -63] {
                    check(kernel, 2, k, n, &mut || 255, &mut || w);
                }
                check(kernel, 2, k, n, &mut || 0, &mut || -128);
            }
        }
    }
}

#[test]
fn requantize_rounds_half_to_even_clamps_and_fuses_relu() {
    let ep = Epilogue {
        input_zero_point: 3,
        offset: vec![10, -10],
        multiplier: vec![0.5, 0.25],
        output_zero_point: 4,
        relu: true,
    };
    // (acc + offset) * mult: row 0: (1+10)*0.5 = 5.5 -> 6 (+4 = 10); (-30-10)*0.25 = -10 -> 4 (ReLU at z).
    // row 1: (1000+10)*0.5 = 505 -> 255 (clamp); (2-10)*0.25 = -2 -> 4+(-2) = 2 -> ReLU 4.
    let acc = [1, -30, 1000, 2];
    let mut out = [0u8; 4];
    requantize(&acc, 2, &ep, &mut out, 2);
    assert_eq!(out, [10, 4, 255, 4]);
    let no_relu = Epilogue { relu: false, ..ep.clone() };
    requantize(&acc, 2, &no_relu, &mut out, 2);
    assert_eq!(out, [10, 0, 255, 2]);
    // 2.5 rounds to 2 (ties to even), 3.5 to 4.
    let half = Epilogue {
        input_zero_point: 0,
        offset: vec![0, 0],
        multiplier: vec![0.5, 0.5],
        output_zero_point: 0,
        relu: false,
    };
    requantize(&[5, 7], 1, &half, &mut out, 2);
    assert_eq!(&out[..2], &[2, 4]);
}

#[test]
fn simd_epilogue_equals_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng::new(23);
    for &n in &[1usize, 7, 8, 9, 16, 31, 256] {
        let m = 3;
        let acc: Vec<i32> = (0..m * n).map(|_| (rng.next_u64() as i32) >> (rng.below(24) + 1)).collect();
        for relu in [false, true] {
            let ep = Epilogue {
                input_zero_point: 7,
                offset: (0..n).map(|_| rng.below(2001) as i32 - 1000).collect(),
                multiplier: (0..n).map(|_| (rng.uniform() * 0.01) as f32).collect(),
                output_zero_point: rng.below(256) as i32,
                relu,
            };
            let (mut a, mut b) = (vec![0u8; m * (n + 3)], vec![0u8; m * (n + 3)]);
            requantize_scalar(&acc, m, &ep, &mut a, n + 3);
            requantize(&acc, m, &ep, &mut b, n + 3);
            assert_eq!(a, b, "n={n} relu={relu}");
        }
    }
    // Exact halves go to even and huge values saturate, in both.
    let ep = Epilogue {
        input_zero_point: 0,
        offset: vec![0; 8],
        multiplier: vec![0.5; 8],
        output_zero_point: 0,
        relu: false,
    };
    let acc = [1, 3, 5, 7, i32::MAX, i32::MIN, 9, 11];
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    requantize_scalar(&acc, 1, &ep, &mut a, 8);
    requantize(&acc, 1, &ep, &mut b, 8);
    assert_eq!(a, [0, 2, 2, 4, 255, 0, 4, 6]);
    assert_eq!(a, b);
}

#[test]
fn fused_gemm_requantize_equals_gemm_then_scalar_epilogue() {
    let mut rng = Rng::new(29);
    for kernel in Kernel::available() {
        for &(m, k, n) in &[
            (1usize, 7usize, 1usize),
            (3, 17, 9),
            (4, 64, 16),
            (5, 65, 17),
            (9, 130, 40),
            (4, 33, 8),
            (9, 130, 100),
            (5, 64, 130),
        ] {
            let kp = padded(k);
            let x: Vec<u8> = (0..m * kp).map(|i| if i % kp < k { rng.below(256) as u8 } else { 0 }).collect();
            let w: Vec<i8> = (0..n * k).map(|_| (rng.below(127) as i32 - 63) as i8).collect();
            let packed = PackedWeights::new(&w, n, k);
            for relu in [false, true] {
                let ep = Epilogue {
                    input_zero_point: 5,
                    offset: (0..n).map(|_| rng.below(4001) as i32 - 2000).collect(),
                    multiplier: (0..n).map(|_| (rng.uniform() * 0.003) as f32).collect(),
                    output_zero_point: rng.below(256) as i32,
                    relu,
                };
                let stride = n + 3;
                let mut acc = vec![0i32; m * n];
                gemm_u8s8(Kernel::Scalar, &x, m, &packed, &mut acc);
                let mut want = vec![0xAAu8; m * stride];
                requantize_scalar(&acc, m, &ep, &mut want, stride);
                let mut got = vec![0xAAu8; m * stride];
                gemm_requantize(kernel, &x, m, &packed, &ep, &mut got, stride);
                // Equal bytes, padding columns included (left untouched).
                assert_eq!(got, want, "{} m={m} k={k} n={n} relu={relu}", kernel.name());
            }
        }
    }
}

#[test]
fn fused_epilogue_saturates_like_the_reference_at_extreme_multipliers() {
    // Products far past ±2^31 (the conversion's overflow), exact halves, zero accumulators
    // under a huge multiplier, every zero point's bounds; full 8-bit weights.
    let mut rng = Rng::new(31);
    let (m, k, n) = (9, 70, 35);
    let kp = padded(k);
    let x: Vec<u8> = (0..m * kp).map(|i| if i % kp < k { rng.below(256) as u8 } else { 0 }).collect();
    let w: Vec<i8> = (0..n * k).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
    let packed = PackedWeights::new(&w, n, k);
    let scales = [1e-12f32, 0.5, 1.0, 1e6, 3e38, f32::MAX];
    for kernel in Kernel::available() {
        for z in [0, 1, 128, 254, 255] {
            for relu in [false, true] {
                let ep = Epilogue {
                    input_zero_point: 0,
                    offset: (0..n).map(|_| rng.below(2_000_001) as i32 - 1_000_000).collect(),
                    multiplier: (0..n).map(|c| scales[c % scales.len()]).collect(),
                    output_zero_point: z,
                    relu,
                };
                let mut acc = vec![0i32; m * n];
                gemm_u8s8(Kernel::Scalar, &x, m, &packed, &mut acc);
                let mut want = vec![0u8; m * n];
                requantize_scalar(&acc, m, &ep, &mut want, n);
                let mut got = vec![0u8; m * n];
                gemm_requantize(kernel, &x, m, &packed, &ep, &mut got, n);
                assert_eq!(got, want, "{} z={z} relu={relu}", kernel.name());
                assert!(want.contains(&255) && want.contains(&(if relu { z as u8 } else { 0 })));
            }
        }
    }
}

#[test]
fn kernel_names_parse_and_unknown_or_unsupported_ones_are_errors() {
    assert_eq!(Kernel::parse("scalar").unwrap(), Kernel::Scalar);
    assert_eq!(Kernel::parse("auto").unwrap(), Kernel::best());
    let e = Kernel::parse("avx3").unwrap_err().to_string();
    assert!(e.contains("\"avx3\"") && e.contains("expected auto, scalar, avx2 or vnni"), "{e}");
    for (name, supported) in [("avx2", x86::has_avx2()), ("vnni", x86::has_vnni())] {
        match Kernel::parse(name) {
            Ok(k) => assert!(supported && Kernel::available().contains(&k)),
            Err(e) => assert!(!supported && e.to_string().contains("does not support"), "{e}"),
        }
    }
}

#[test]
fn packing_for_one_kernel_keeps_one_layout_and_gives_the_same_accumulators() {
    let mut rng = Rng::new(4);
    let (m, n, k) = (5, 19, 13);
    for max in [63i32, 127] {
        let w: Vec<i8> = (0..n * k).map(|_| (rng.below(2 * max as usize + 1) as i32 - max) as i8).collect();
        let x: Vec<u8> = (0..m * padded(k)).map(|i| if i % padded(k) < k { rng.below(256) as u8 } else { 0 }).collect();
        let mut want = vec![0i32; m * n];
        gemm_u8s8(Kernel::Scalar, &x, m, &PackedWeights::new(&w, n, k), &mut want);
        for kernel in Kernel::available() {
            let p = PackedWeights::for_kernel(&w, n, k, kernel);
            assert!(p.bytes() < PackedWeights::new(&w, n, k).bytes(), "{}", kernel.name());
            // The layout its own kernel reads is there (else it would silently run scalar).
            let own = match kernel {
                Kernel::Scalar => true,
                Kernel::Avx2 if max <= 63 => has_layout(&p.k4_nb8, n, p.kp, 8, 4),
                Kernel::Avx2 => has_layout(&p.k2_nb8, n, p.kp, 8, 2),
                Kernel::Vnni => has_layout(&p.k4_nb16, n, p.kp, 16, 4),
            };
            assert!(own, "{} weights lack their layout", kernel.name());
            // Its own kernel and every other (falling back to scalar) agree.
            for other in Kernel::available() {
                let mut got = vec![0i32; m * n];
                gemm_u8s8(other, &x, m, &p, &mut got);
                assert_eq!(got, want, "packed for {}, run on {}", kernel.name(), other.name());
            }
        }
    }
}

#[test]
#[should_panic(expected = "buffers too small")]
fn a_short_activation_buffer_panics_instead_of_reading_past_it() {
    let p = PackedWeights::new(&[1i8; 16 * 8], 16, 8);
    let mut acc = vec![0i32; 2 * 16];
    gemm_u8s8(Kernel::best(), &[0u8; 8], 2, &p, &mut acc);
}
