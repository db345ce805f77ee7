//! bf16 matrix products on Intel AMX tiles, accumulated in f32: C = A · B with A [m, k] and
//! B [k, n] given in f32, rounded to bf16 (round to nearest even) as they are packed, and
//! multiplied by `TDPBF16PS` (16 × 16 f32 outputs per instruction, 32 products each).
//!
//! Stable Rust has no AMX intrinsics (rust-lang/rust#126622); the tile instructions are written
//! with `asm!`. Linux hands out the tile state only to a process that asked for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which [`available`] does once, after
//! CPUID says the CPU has AMX-TILE and AMX-BF16.

use std::sync::OnceLock;

use rayon::prelude::*;

/// `precision = "bf16-mixed"` is on (and AMX available): the large linear products use AMX.
static MIXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns bf16-mixed products on or off for this process; without AMX, on says so in one
/// line and stays off.
pub fn set_mixed(on: bool) {
    if on && !available() {
        errln!(
            "precision bf16-mixed: this CPU has no AMX-BF16 (or Linux refused its tile state): \
             the matrix products run in f32"
        );
    }
    MIXED.store(on && available(), std::sync::atomic::Ordering::Relaxed);
}

/// Whether the large linear products run on AMX tiles now.
pub fn mixed() -> bool {
    MIXED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Rows of a tile, and f32 columns of an output tile.
const TILE: usize = 16;
/// bf16 values of the shared dimension per tile row (64 bytes).
const KTILE: usize = 32;

/// Whether this process can run the AMX kernels: the CPU has them and Linux granted the tile
/// state. Checked once; `PIPE_AMX=off` says no, to test the fallback.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var("PIPE_AMX").is_ok_and(|v| v == "off") {
            return false;
        }
        cpu_has_amx() && request_tile_permission()
    })
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_amx() -> bool {
    // CPUID leaf 7, subleaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with two integer arguments; it only changes which register
    // state the kernel lets this process use.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_permission() -> bool {
    false
}

/// f32 → bf16, rounded to nearest even (as `VCVTNEPS2BF16` and PyTorch do); NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// bf16 → f32 (exact).
pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// A [rows, cols] f32 matrix (row stride `stride`) packed in tiles for the kernel, zero-padded
/// to whole tile pairs: `tiles[r][kb]` is 16 rows × 32 bf16 of the shared dimension.
pub struct Packed {
    data: Vec<u16>,
    /// Tile rows (a multiple of 2) and tiles along the shared dimension.
    row_tiles: usize,
    k_tiles: usize,
}

impl Packed {
    fn tile(&self, r: usize, kb: usize) -> *const u16 {
        self.data[(r * self.k_tiles + kb) * TILE * KTILE..].as_ptr()
    }

    /// `rows` rows (A's, or B's columns) along a shared dimension of `k`, zero-padded to whole
    /// tile pairs, in `buffer` (a reused allocation: every element is written here, so its old
    /// contents do not matter); `fill(tile_row, valid_rows, panel)` writes each panel of 16
    /// rows that holds data, on rayon, onto zeros where the panel is not full.
    fn build(
        mut buffer: Vec<u16>,
        rows: usize,
        k: usize,
        fill: impl Fn(usize, usize, &mut [u16]) + Sync,
    ) -> Packed {
        let row_tiles = rows.div_ceil(2 * TILE) * 2;
        let k_tiles = k.div_ceil(KTILE);
        let len = row_tiles * k_tiles * TILE * KTILE;
        // Growing zeroes only the new part, once; a reused buffer is written over below.
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        buffer.truncate(len);
        buffer
            .par_chunks_mut(k_tiles * TILE * KTILE)
            .enumerate()
            .for_each(|(rt, panel)| {
                let valid = TILE.min(rows.saturating_sub(rt * TILE));
                if valid < TILE || !k.is_multiple_of(KTILE) {
                    panel.fill(0);
                }
                if valid > 0 {
                    fill(rt, valid, panel);
                }
            });
        Packed {
            data: buffer,
            row_tiles,
            k_tiles,
        }
    }

    /// The left operand: row i of a tile holds A[i, kb·32 .. kb·32 + 32].
    pub fn left(a: &[f32], m: usize, k: usize) -> Packed {
        Packed::left_in(Vec::new(), &mut Vec::new(), a, m, k)
    }

    fn left_in(buffer: Vec<u16>, staging: &mut Vec<u16>, a: &[f32], m: usize, k: usize) -> Packed {
        convert_all(a, k, staging);
        let a = &staging[..];
        Packed::build(buffer, m, k, |rt, rows, panel| {
            for i in 0..rows {
                let row = &a[(rt * TILE + i) * k..][..k];
                for (kb, part) in row.chunks(KTILE).enumerate() {
                    panel[(kb * TILE + i) * KTILE..][..part.len()].copy_from_slice(part);
                }
            }
        })
    }

    /// The left operand A [m, k] from its transpose `at` [k, m] stored row-major (xᵀ of a
    /// weight gradient xᵀ·g): each tile row gathers one column of `at`.
    fn left_transposed_in(
        buffer: Vec<u16>,
        staging: &mut Vec<u16>,
        at: &[f32],
        m: usize,
        k: usize,
    ) -> Packed {
        convert_all(at, m, staging);
        let at = &staging[..];
        Packed::build(buffer, m, k, |rt, rows, panel| {
            for kk in 0..k {
                // Row kk of `at` over this tile's rows of A.
                let column = &at[kk * m + rt * TILE..][..rows];
                let (kb, c) = (kk / KTILE, kk % KTILE);
                for (i, &v) in column.iter().enumerate() {
                    panel[(kb * TILE + i) * KTILE + c] = v;
                }
            }
        })
    }

    /// The right operand in the pair-interleaved (VNNI) layout `TDPBF16PS` reads: row r of a
    /// tile holds, for each of 16 columns j, B[kb·32 + 2r, j] then B[kb·32 + 2r + 1, j].
    /// `b` is [k, n]; `transposed`: `b` is given as [n, k] (Bᵀ stored row-major).
    pub fn right(b: &[f32], k: usize, n: usize, transposed: bool) -> Packed {
        Packed::right_in(Vec::new(), &mut Vec::new(), b, k, n, transposed)
    }

    fn right_in(
        buffer: Vec<u16>,
        staging: &mut Vec<u16>,
        b: &[f32],
        k: usize,
        n: usize,
        transposed: bool,
    ) -> Packed {
        convert_all(b, if transposed { k } else { n }, staging);
        let b = &staging[..];
        Packed::build(buffer, n, k, |ct, columns, panel| {
            // B[kk, ct·16 + j] sits at `b[kk·n + ct·16 + j]`, or at `b[(ct·16 + j)·k + kk]`.
            let at = |kk: usize, j: usize| match transposed {
                false => b[kk * n + ct * TILE + j],
                true => b[(ct * TILE + j) * k + kk],
            };
            for kk in 0..k {
                let (kb, r, p) = (kk / KTILE, kk % KTILE / 2, kk % 2);
                let tile_row = &mut panel[(kb * TILE + r) * KTILE..][..KTILE];
                for j in 0..columns {
                    tile_row[2 * j + p] = at(kk, j);
                }
            }
        })
    }
}

/// `src` [rows, cols] in bf16 into `out` (a reused allocation, resized to `src.len()`), a
/// block of rows per rayon task: one conversion call per row, not per 16-value piece of a
/// tile (those calls cost more than the conversions).
fn convert_all(src: &[f32], cols: usize, out: &mut Vec<u16>) {
    // Growing zeroes only the new part, once; every element is written below.
    if out.len() < src.len() {
        out.resize(src.len(), 0);
    }
    out.truncate(src.len());
    let cols = cols.max(1);
    let per = (16_384 / cols).max(1) * cols;
    out.par_chunks_mut(per)
        .zip(src.par_chunks(per))
        .for_each(|(o, s)| {
            for (o, s) in o.chunks_mut(cols).zip(s.chunks(cols)) {
                convert(s, o);
            }
        });
}

/// `out[i] = bf16(src[i])`, 16 at a time with `VCVTNEPS2BF16` where the CPU has AVX512-BF16
/// (every CPU with AMX-BF16 has), the same rounding as [`to_bf16`].
fn convert(src: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX512-F and AVX512-BF16 (checked just above).
        unsafe { convert_avx512(src, out) };
        return;
    }
    for (o, &v) in out.iter_mut().zip(src) {
        *o = to_bf16(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_avx512(src: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    let whole = src.len().min(out.len()) / 16 * 16;
    for (s, o) in src[..whole]
        .chunks_exact(16)
        .zip(out[..whole].chunks_exact_mut(16))
    {
        // SAFETY: `s` holds 16 f32 and `o` room for 16 bf16 (unaligned loads and stores).
        unsafe {
            let v = _mm512_loadu_ps(s.as_ptr());
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(o.as_mut_ptr().cast(), h);
        }
    }
    for (o, &v) in out[whole..].iter_mut().zip(&src[whole..]) {
        *o = to_bf16(v);
    }
}

/// The tile configuration: palette 1, tiles 0–3 the 16 × 16 f32 outputs, 4–5 the left
/// operand's 16 × 32 bf16 tiles, 6–7 the right operand's 16 × (16 pairs) tiles; all 16 rows
/// of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        for t in 0..8 {
            // colsb (bytes per row) at 16 + 2t, rows at 48 + t.
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = TILE as u8;
        }
        TileConfig(c)
    }
}

/// The left operand of a product: A [m, k] row-major, or given as Aᵀ [k, m].
#[derive(Clone, Copy)]
pub enum Left<'a> {
    Rows(&'a [f32]),
    Transposed(&'a [f32]),
}

thread_local! {
    /// The calling thread's packing buffers, kept between products: fresh ones of this size
    /// (MiniLM's 4,096 × 1,536 activations: 12 MB) cost more in page faults than packing.
    static BUFFERS: std::cell::RefCell<[Vec<u16>; 3]> = Default::default();
}

/// C [m, n] = A · B, or C += A · B where `accumulate`: B is [k, n], or [n, k] where
/// `b_transposed`. Every operand in f32; the products of their bf16 roundings are summed in
/// f32. Needs [`available`].
pub fn matmul_into(
    c: &mut [f32],
    accumulate: bool,
    a: Left,
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    b_transposed: bool,
) {
    assert!(available(), "AMX kernels called without AMX");
    assert_eq!(c.len(), m * n);
    assert_eq!(b.len(), k * n);
    let [left_buffer, right_buffer, mut staging] =
        BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let left = match a {
        Left::Rows(a) => Packed::left_in(left_buffer, &mut staging, a, m, k),
        Left::Transposed(at) => Packed::left_transposed_in(left_buffer, &mut staging, at, m, k),
    };
    let right = Packed::right_in(right_buffer, &mut staging, b, k, n, b_transposed);
    multiply(&left, &right, c, n, accumulate);
    BUFFERS.with(|b| *b.borrow_mut() = [left.data, right.data, staging]);
}

/// C [m, n] = A · B: B is [k, n], or [n, k] where `b_transposed` (see [`matmul_into`]).
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, b_transposed: bool) -> Vec<f32> {
    assert_eq!(a.len(), m * k);
    let mut c = vec![0f32; m * n];
    matmul_into(&mut c, false, Left::Rows(a), b, (m, k, n), b_transposed);
    c
}

/// C [m, n] = Aᵀ · B with `at` = A stored as [k, m] and B [k, n]: the weight gradient xᵀ·g.
pub fn matmul_left_transposed(at: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!(at.len(), m * k);
    let mut c = vec![0f32; m * n];
    matmul_into(&mut c, false, Left::Transposed(at), b, (m, k, n), false);
    c
}

/// C [m, n] from operands packed before ([`Packed::left`] of A [m, k], [`Packed::right`] of B),
/// so that an operand used in several products (a weight within a step) is packed once.
pub fn matmul_packed(left: &Packed, right: &Packed, m: usize, n: usize) -> Vec<f32> {
    assert!(available(), "AMX kernels called without AMX");
    assert!(left.row_tiles * TILE >= m);
    let mut c = vec![0f32; m * n];
    multiply(left, right, &mut c, n, false);
    c
}

/// C (+)= left · right, one task per pair of output tile rows (32 rows of C).
fn multiply(left: &Packed, right: &Packed, c: &mut [f32], n: usize, accumulate: bool) {
    assert_eq!(
        left.k_tiles, right.k_tiles,
        "operands of different shared sizes"
    );
    assert!(right.row_tiles * TILE >= n);
    c.par_chunks_mut(2 * TILE * n)
        .enumerate()
        .for_each(|(pair, rows)| block_row(left, right, pair, rows, n, accumulate));
}

/// Output rows 32·pair .. 32·pair + 32 (fewer at the end), every column, in 32 × 32 blocks,
/// each accumulated on top of what `rows` holds where `accumulate`, else from zero.
fn block_row(
    left: &Packed,
    right: &Packed,
    pair: usize,
    rows: &mut [f32],
    n: usize,
    accumulate: bool,
) {
    let config = TileConfig::new();
    let mut out = [[0f32; TILE * TILE]; 4];
    let height = rows.len() / n;
    // SAFETY: `available()` was checked by the caller; the configuration is valid for palette 1.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
    for col_pair in 0..right.row_tiles / 2 {
        let c0 = 2 * col_pair;
        // A whole 32 × 32 block inside C is loaded and stored in place; an edge one through
        // `out`, which holds its part of C (zero-padded) or zeros.
        let whole = height == 2 * TILE && (c0 + 2) * TILE <= n;
        let block = match whole {
            true => {
                let base = rows[c0 * TILE..].as_mut_ptr();
                // SAFETY: the block's four tiles lie inside `rows` (whole block).
                let tiles = unsafe {
                    [
                        base,
                        base.add(TILE),
                        base.add(TILE * n),
                        base.add(TILE * n + TILE),
                    ]
                };
                (tiles, n * 4)
            }
            false => {
                for (t, tile) in out.iter_mut().enumerate() {
                    tile.fill(0.0);
                    if accumulate {
                        edge_tile(rows, n, height, t, c0, |c, o| o.copy_from_slice(c), tile);
                    }
                }
                let [o0, o1, o2, o3] = &mut out;
                (
                    [
                        o0.as_mut_ptr(),
                        o1.as_mut_ptr(),
                        o2.as_mut_ptr(),
                        o3.as_mut_ptr(),
                    ],
                    TILE * 4,
                )
            }
        };
        // SAFETY: every tile pointer points at a whole 16 × 64-byte tile inside its packed
        // buffer (both are padded to whole tile pairs); `block` points at four 16 × 16 f32
        // tiles with row stride `block.1` bytes, in `rows` or in `out`.
        unsafe { tile_products(left, right, 2 * pair, c0, block, accumulate || !whole) };
        if !whole {
            for (t, tile) in out.iter_mut().enumerate() {
                edge_tile(rows, n, height, t, c0, |c, o| c.copy_from_slice(o), tile);
            }
        }
    }
    // SAFETY: releases this thread's tile state, which `ldtilecfg` above took.
    unsafe { std::arch::asm!("tilerelease", options(nostack)) };
}

/// Applies `copy(part of C, part of the tile)` to the rows and columns of edge tile `t` of the
/// block at tile column `c0` that lie inside C.
fn edge_tile(
    rows: &mut [f32],
    n: usize,
    height: usize,
    t: usize,
    c0: usize,
    copy: impl Fn(&mut [f32], &mut [f32]),
    tile: &mut [f32; TILE * TILE],
) {
    let (dr, dc) = (t / 2 * TILE, (c0 + t % 2) * TILE);
    let width = TILE.min(n.saturating_sub(dc));
    if width == 0 {
        return;
    }
    for i in 0..TILE.min(height.saturating_sub(dr)) {
        copy(
            &mut rows[(dr + i) * n + dc..][..width],
            &mut tile[i * TILE..][..width],
        );
    }
}

/// One 32 × 32 block: C tiles loaded from `block` (or zeroed unless `load`), the products over
/// the whole shared dimension added, the tiles stored back.
///
/// # Safety
/// The tile configuration is loaded; `block` holds four writable 16 × 16 f32 tiles with row
/// stride `block.1` bytes; tile rows `r0`, `r0 + 1` of `left` and `c0`, `c0 + 1` of `right`
/// exist.
unsafe fn tile_products(
    left: &Packed,
    right: &Packed,
    r0: usize,
    c0: usize,
    (c, stride): ([*mut f32; 4], usize),
    load: bool,
) {
    let s = stride as isize;
    unsafe {
        if load {
            std::arch::asm!(
                "tileloadd tmm0, [{o0} + {s}*1]",
                "tileloadd tmm1, [{o1} + {s}*1]",
                "tileloadd tmm2, [{o2} + {s}*1]",
                "tileloadd tmm3, [{o3} + {s}*1]",
                o0 = in(reg) c[0], o1 = in(reg) c[1], o2 = in(reg) c[2], o3 = in(reg) c[3],
                s = in(reg) s,
                options(nostack),
            );
        } else {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            );
        }
        let operand_stride = (KTILE * 2) as isize;
        for kb in 0..left.k_tiles {
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) left.tile(r0, kb),
                a1 = in(reg) left.tile(r0 + 1, kb),
                b0 = in(reg) right.tile(c0, kb),
                b1 = in(reg) right.tile(c0 + 1, kb),
                s = in(reg) operand_stride,
                options(nostack),
            );
        }
        std::arch::asm!(
            "tilestored [{o0} + {s}*1], tmm0",
            "tilestored [{o1} + {s}*1], tmm1",
            "tilestored [{o2} + {s}*1], tmm2",
            "tilestored [{o3} + {s}*1], tmm3",
            o0 = in(reg) c[0], o1 = in(reg) c[1], o2 = in(reg) c[2], o3 = in(reg) c[3],
            s = in(reg) s,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C = A · B in f64 from the bf16 roundings of A and B.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let r = |x: f32| from_bf16(to_bf16(x)) as f64;
        (0..m * n)
            .map(|ij| {
                (0..k)
                    .map(|p| r(a[ij / n * k + p]) * r(b[p * n + ij % n]))
                    .sum()
            })
            .collect()
    }

    fn pattern(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn products_match_an_f64_reference_on_odd_shapes() {
        if !available() {
            eprintln!("skipped: no AMX here");
            return;
        }
        for (m, k, n) in [
            (1, 1, 1),
            (17, 33, 15),
            (64, 384, 96),
            (45, 70, 50),
            (128, 32, 32),
        ] {
            let (a, b) = (pattern(m * k, 1), pattern(k * n, 7));
            let got = matmul(&a, &b, m, k, n, false);
            let want = reference(&a, &b, m, k, n);
            for (g, w) in got.iter().zip(&want) {
                // Only the f32 accumulation differs from the f64 sum of the same bf16 products.
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{m}x{k}x{n}: {g} vs {w}"
                );
            }
            // Accumulated onto what C holds: C + A·B.
            let mut onto: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
            matmul_into(&mut onto, true, Left::Rows(&a), &b, (m, k, n), false);
            for (i, (o, g)) in onto.iter().zip(&got).enumerate() {
                assert!(
                    (o - (i as f32 + g)).abs() <= 1e-4 * (1.0 + o.abs()),
                    "{m}x{k}x{n} +="
                );
            }
            // Aᵀ given instead of A: the same products.
            let at: Vec<f32> = (0..k * m).map(|pi| a[pi % m * k + pi / m]).collect();
            assert_eq!(
                matmul_left_transposed(&at, &b, m, k, n),
                got,
                "{m}x{k}x{n} Aᵀ"
            );
            // Bᵀ given instead of B: the same products.
            let bt: Vec<f32> = (0..n * k).map(|jp| b[jp % k * n + jp / k]).collect();
            assert_eq!(
                matmul(&a, &bt, m, k, n, true),
                got,
                "{m}x{k}x{n} transposed"
            );
        }
    }

    #[test]
    fn bf16_representable_operands_multiply_exactly() {
        if !available() {
            eprintln!("skipped: no AMX here");
            return;
        }
        // Small integers are exact in bf16, and so are their sums in f32.
        let (m, k, n) = (33, 64, 40);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let got = matmul(&a, &b, m, k, n, false);
        let want = reference(&a, &b, m, k, n);
        assert!(got.iter().zip(&want).all(|(g, w)| *g as f64 == *w));
    }
}
