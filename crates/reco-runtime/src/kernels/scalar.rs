//! The reference kernel: plain loops, exact i32 arithmetic.

use super::PackedWeights;

/// See [`super::gemm_u8s8`].
pub(crate) fn gemm_u8s8(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    for r in 0..m {
        let xr = &x[r * w.kp..r * w.kp + w.k];
        for c in 0..w.n {
            let wr = &w.w8[c * w.kp..c * w.kp + w.k];
            acc[r * w.n + c] = xr.iter().zip(wr).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        }
    }
}
