//! The AMX bf16 product (src/fused/amx.rs) beside gemm's f32 product, on MiniLM's shapes
//! (32 texts × 128 tokens = 4,096 rows; hidden 384, feed-forward 1,536), all cores:
//!
//!     cargo run --release --example amx_matmul [ROUNDS]
//!
//! Each round times every shape once each way, alternating; the medians are printed with the
//! largest relative difference between the two results. "AMX bf16" includes rounding and
//! packing both operands (what a product costs when nothing is packed in advance); "AMX
//! prepacked" is the tile products alone, on operands packed before.

use std::time::Instant;

use pipe::fused::amx;

fn gemm_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    // SAFETY: a, b and c are dense row-major [m, k], [k, n] and [m, n].
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
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    };
    c
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
    ];
    println!(
        "shape                               gemm f32 ms   AMX bf16 ms   speed-up   AMX prepacked ms   speed-up   max rel diff"
    );
    for (name, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let (mut f32_ms, mut amx_ms, mut packed_ms) = (Vec::new(), Vec::new(), Vec::new());
        let (left, right) = (
            amx::Packed::left(&a, m, k),
            amx::Packed::right(&b, k, n, false),
        );
        let mut diff = 0f64;
        for _ in 0..rounds {
            let t = Instant::now();
            let want = gemm_f32(&a, &b, m, k, n);
            f32_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let got = amx::matmul(&a, &b, m, k, n, false);
            amx_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let prepacked = amx::matmul_packed(&left, &right, m, n);
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
}
