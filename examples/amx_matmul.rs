//! The AMX bf16 product (src/fused/amx/) beside gemm's f32 product, on MiniLM's shapes
//! (32 texts × 128 tokens = 4,096 rows; hidden 384, feed-forward 1,536), forward and the two
//! backward products of the FFN's up projection, and attention's per-head blocks, all cores:
//!
//!     cargo run --release --example amx_matmul [ROUNDS]
//!
//! Each round times every shape once each way, alternating; the medians are printed with the
//! largest relative difference between the two results. "AMX bf16" includes rounding and
//! packing both operands (what a product costs when nothing is packed in advance); "AMX
//! prepacked" is the tile products alone, on operands packed before. Every output is written
//! into the same allocation each round, so that no side pays the page faults of a fresh one.

use std::time::Instant;

use pipe::fused::amx;

/// How a product's operands are stored: as a forward pass, a backward dx = g·Wᵀ, or a
/// backward dW = xᵀ·g has them.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Plain,
    BTransposed,
    ATransposed,
}

impl Layout {
    /// (row stride, column stride) of A [m, k] and of B [k, n] as stored.
    fn strides(self, m: usize, k: usize, n: usize) -> [(isize, isize); 2] {
        let (m, k, n) = (m as isize, k as isize, n as isize);
        match self {
            Layout::Plain => [(k, 1), (n, 1)],
            Layout::BTransposed => [(k, 1), (1, k)],
            Layout::ATransposed => [(1, m), (n, 1)],
        }
    }
}

fn gemm_f32(a: &[f32], b: &[f32], c: &mut [f32], (m, k, n): (usize, usize, usize), layout: Layout) {
    let [(ra, ca), (rb, cb)] = layout.strides(m, k, n);
    // SAFETY: a, b and c are dense [m, k], [k, n] and [m, n] with these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            ca,
            ra,
            b.as_ptr(),
            cb,
            rb,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    };
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !amx::available() {
        eprintln!("no AMX on this CPU (or Linux refused the tile state)");
        std::process::exit(2);
    }
    let rounds: usize = std::env::args().nth(1).map_or(5, |r| r.parse().unwrap());
    let shapes = [
        ("QKV / output (4096×384·384×384)", 4096, 384, 384),
        ("FFN up (4096×384·384×1536)", 4096, 384, 1536),
        ("FFN down (4096×1536·1536×384)", 4096, 1536, 384),
        ("model A dense (32768×32·32×64)", 32768, 32, 64),
        ("FFN up dx (4096×1536·(384×1536)ᵀ)", 4096, 1536, 384),
        ("FFN up dW ((4096×384)ᵀ·4096×1536)", 384, 4096, 1536),
    ];
    println!(
        "shape                               gemm f32 ms   AMX bf16 ms   speed-up   AMX prepacked ms   speed-up   max rel diff"
    );
    for (name, m, k, n) in shapes {
        let layout = match name {
            _ if name.contains(" dx ") => Layout::BTransposed,
            _ if name.contains(" dW ") => Layout::ATransposed,
            _ => Layout::Plain,
        };
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let (mut f32_ms, mut amx_ms, mut packed_ms) = (Vec::new(), Vec::new(), Vec::new());
        let source = match layout {
            Layout::ATransposed => amx::Source::transposed(&a),
            _ => amx::Source::rows(&a),
        };
        let b_transposed = layout == Layout::BTransposed;
        let (left, right) = (
            amx::Packed::left(source, m, k),
            amx::Packed::right(&b, k, n, b_transposed),
        );
        let mut diff = 0f64;
        let (mut want, mut got, mut prepacked) =
            (vec![0f32; m * n], vec![0f32; m * n], vec![0f32; m * n]);
        for _ in 0..rounds {
            let t = Instant::now();
            gemm_f32(&a, &b, &mut want, (m, k, n), layout);
            f32_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            amx::matmul_into(
                &mut got,
                amx::Start::Zero,
                source,
                &b,
                (m, k, n),
                b_transposed,
            );
            amx_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            amx::matmul_packed(&left, &right, &mut prepacked, m, n);
            packed_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(prepacked, got);
            let scale = want.iter().fold(0f64, |s, w| s.max(w.abs() as f64));
            for (g, w) in got.iter().zip(&want) {
                diff = diff.max((g - w).abs() as f64 / scale);
            }
        }
        let (f, x, p) = (median(f32_ms), median(amx_ms), median(packed_ms));
        println!(
            "{name:<36}{f:>10.2}{x:>14.2}{:>10.2}×{p:>19.2}{:>10.2}×{diff:>15.2e}",
            f / x,
            f / p
        );
    }
    attention_blocks(rounds);
}

/// Attention's per-head products as the fused kernel runs them: 32 × 12 (batch row, head)
/// blocks on rayon, each QKᵀ [128 × 32 · 32 × 128] then P·V [128 × 128 · 128 × 32] on one
/// thread, from [batch, 128, 384] q / k / v (MiniLM), and 32 × 2 blocks of 256 tokens with
/// 32-wide heads from [batch, 256, 64] (model A).
fn attention_blocks(rounds: usize) {
    use rayon::prelude::*;
    for (name, b, h, l, d) in [
        ("MiniLM attention", 32, 12, 128, 32),
        ("model A attention", 32, 2, 256, 32),
    ] {
        let width = h * d;
        let qkv: Vec<f32> = (0..b * l * width)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut scores = vec![0f32; b * h * l * l];
        let mut out = vec![0f32; b * l * width];
        let run = |mixed: bool, scores: &mut [f32], out: &mut [f32]| {
            let (sp, op) = (scores.as_mut_ptr() as usize, out.as_mut_ptr() as usize);
            (0..b * h).into_par_iter().for_each(|bh| {
                let (bi, hi) = (bh / h, bh % h);
                let head = &qkv[bi * l * width + hi * d..][..(l - 1) * width + d];
                let p = (sp as *mut f32).wrapping_add(bh * l * l);
                let o = (op as *mut f32).wrapping_add(bi * l * width + hi * d);
                // SAFETY: each block writes its own scores and its head's output columns; the
                // scores are read as a slice only after they are written.
                if mixed {
                    let q = amx::Source::rows(head).with_stride(width);
                    unsafe {
                        amx::block_product((p, l), amx::Start::Zero, q, q, (l, d, l));
                        let probs = std::slice::from_raw_parts(p, l * l);
                        let v = amx::Source::transposed(head).with_stride(width);
                        amx::block_product(
                            (o, width),
                            amx::Start::Zero,
                            amx::Source::rows(probs),
                            v,
                            (l, l, d),
                        );
                    }
                } else {
                    unsafe {
                        gemm::gemm(
                            l,
                            l,
                            d,
                            p,
                            1,
                            l as isize,
                            false,
                            head.as_ptr(),
                            1,
                            width as isize,
                            head.as_ptr(),
                            width as isize,
                            1,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                        gemm::gemm(
                            l,
                            d,
                            l,
                            o,
                            1,
                            width as isize,
                            false,
                            p,
                            1,
                            l as isize,
                            head.as_ptr(),
                            1,
                            width as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            });
        };
        let (mut f32_ms, mut amx_ms) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            run(false, &mut scores, &mut out);
            f32_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            run(true, &mut scores, &mut out);
            amx_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (f, x) = (median(f32_ms), median(amx_ms));
        println!("{name:<36}{f:>10.2}{x:>14.2}{:>10.2}×", f / x);
    }
}
