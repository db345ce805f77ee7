//! Branch-free `exp` and `erf` for f32 and lane-wise reductions, written so that LLVM
//! vectorises them (burn-flex's exp and erf are scalar loops), plus the CPU feature check that
//! lets the hot loops run with AVX2 on machines that have it while the binary stays portable.

/// `e^x` with a relative error under 2e-7 on [-87, 88]; 0 below, clamped above.
/// Cody–Waite range reduction (x = n·ln2 + r) and a degree-6 polynomial (Cephes' expf).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let input = x;
    let x = x.clamp(-87.336_55, 88.376_26);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer, read from t's low mantissa bits (t = 2^23 + 2^22 + n): integer
    // arithmetic that vectorises, unlike a saturating float-to-int cast.
    let n_int = t.to_bits() as i32 - 0x4B40_0000;
    // mul_add: one fused multiply-add each in the AVX2 / AVX-512 builds of the hot loops
    // (a third fewer instructions than mul + add); correctly rounded, so every build gives
    // the same bits.
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p: f32 = 1.987_569_1e-4;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r) + 1.0;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    // Below the smallest normal result, flush to 0 (as a select, so it stays vectorised).
    if input < -87.336_55 { 0.0 } else { e * scale }
}

/// [`erf`]'s rational fit on [-4, 4], x·P(x²)/Q(x²): numerator and denominator coefficients
/// from x⁰ up.
pub(crate) const ERF_P: [f32; 6] = [
    std::f32::consts::FRAC_2_SQRT_PI, // erf′(0)
    0.189_912_9,
    0.052_666_318,
    0.003_741_368_4,
    0.000_283_743_4,
    2.044_655e-6,
];
pub(crate) const ERF_Q: [f32; 6] = [
    1.0,
    0.501_638_77,
    0.113_889_895,
    0.014_919_092,
    0.001_155_689_7,
    3.797_954_2e-5,
];

/// erf(x) with an absolute error under 5e-7 in f32: x·P(x²)/Q(x²) with P and Q of degree 5,
/// fitted to erf on [0, 4] (iterated weighted least squares on the relative error, 8e-8 in
/// exact arithmetic), x clamped to ±4 where erf rounds to ±1 in f32. Ten multiply-adds and a
/// division: half the time of Abramowitz & Stegun's 7.1.26 with its exp, which GELU spent
/// 8 % of a bf16-mixed MiniLM inference step in.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let s = x * x;
    let mut p = ERF_P[5];
    let mut q = ERF_Q[5];
    for i in (0..5).rev() {
        p = p.mul_add(s, ERF_P[i]);
        q = q.mul_add(s, ERF_Q[i]);
    }
    // The fit overshoots 1 by up to 2 ulp above x ≈ 3.65.
    (x * p / q).clamp(-1.0, 1.0)
}

/// Accumulator lanes: one AVX-512 register or two AVX2 ones.
const LANES: usize = 16;

/// Maximum of a slice (−∞ when empty), lane-wise.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = fold_lanes(acc, |a, b| if a > b { a } else { b });
    for &x in rest {
        m = m.max(x);
    }
    m
}

/// Sum of a slice, lane-wise (a fixed order, so results are reproducible).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    fold_lanes(acc, |a, b| a + b) + rest.iter().sum::<f32>()
}

/// Dot product, lane-wise.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    fold_lanes(acc, |a, b| a + b) + rest
}

/// Folds the lanes pairwise (8 + 8, 4 + 4, …): a fixed order, done with vector shuffles
/// instead of fifteen dependent scalar steps.
#[inline(always)]
fn fold_lanes(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = f(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
}

/// `e^x − m` for each x of `row`, written back, and their sum: softmax's middle pass in one.
#[inline(always)]
pub fn exp_shifted_sum(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = exp(c[i] - m);
            acc[i] += c[i];
        }
    }
    let mut rest = 0.0;
    for x in chunks.into_remainder() {
        *x = exp(*x - m);
        rest += *x;
    }
    fold_lanes(acc, |a, b| a + b) + rest
}

/// The widest vector unit this CPU has, checked once: 2 = AVX-512, 1 = AVX2 + FMA, 0 = neither.
#[cfg(target_arch = "x86_64")]
pub fn simd_level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
            2
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            1
        } else {
            0
        }
    })
}

/// Defines `$name` that runs `$body` compiled for AVX-512 or AVX2 where the CPU has them,
/// else for the baseline target: the same source, vectorised 16, 8 or 4 lanes wide.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::fused::math::simd_level() {
                    // SAFETY: the CPU supports these features (checked at run time).
                    2 => return unsafe { avx512($($arg),*) },
                    1 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0.0f64;
        for i in 0..100_000 {
            let x = -6.0 + 12.0 * i as f64 / 100_000.0;
            let want = libm_erf(x);
            worst = worst.max((erf(x as f32) as f64 - want).abs());
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        // Near 0, where GELU's derivative reads erf: relative error.
        for x in [1e-30f32, 1e-6, 0.01, -0.3] {
            let rel = (erf(x) as f64 / libm_erf(x as f64) - 1.0).abs();
            assert!(rel < 1e-6, "erf({x}): relative error {rel}");
        }
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(-1e30), -1.0);
    }

    /// erf by its Taylor series (|x| < 3) and continued fraction (else), in f64.
    fn libm_erf(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut total) = (a, a);
            for n in 1..200 {
                term *= -a * a / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        v.copysign(x)
    }

    #[test]
    fn reductions_match_plain_loops() {
        let xs: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        assert_eq!(max(&xs), 5.0);
        assert_eq!(sum(&xs), xs.iter().sum::<f32>());
        assert_eq!(dot(&xs, &xs), xs.iter().map(|x| x * x).sum::<f32>());
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
