//! Operands laid out in AMX tiles, rounded from f32 to bf16 on the way (`VCVTNE2PS2BF16`, round
//! to nearest even, as [`super::to_bf16`]; unlike it, the instruction flushes subnormal inputs
//! to zero, which `TDPBF16PS` does to its operands anyway).
//!
//! Both operands are packed from the matrix whose rows are the tile rows: the left operand A
//! [m, k] itself, and the right operand's transpose Bᵀ [n, k]. Call that matrix M [r, k]. A left
//! tile holds 16 rows of M along 32 of k, row i = M[16t + i, 32kb ..]; `TDPBF16PS` wants a right
//! tile in pairs: row p, pair j = (M[16t + j, 32kb + 2p], M[16t + j, 32kb + 2p + 1]). The two
//! are each other's transposes as 16 × 16 matrices of 32-bit pairs. M comes either row-major
//! ([`Source::rows`]) or as Mᵀ [k, r] row-major ([`Source::transposed`]: the activations x of a
//! weight gradient xᵀ·g, or a weight W [d_in, d_out] as B); from rows one makes left tiles a
//! line at a time, from Mᵀ right tiles (two rows of Mᵀ interleaved per line), and the other kind
//! by transposing the tile in registers.

use rayon::prelude::*;

use super::{KTILE, TILE};

/// One tile row: 32 bf16 (64 bytes) on a cache line of its own. A tile whose rows straddle two
/// lines loads several times slower (measured here: `TILELOADD` of 16-byte-aligned tiles ran
/// at a sixth of the aligned rate, and a whole product at half).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub(super) struct Line([u16; KTILE]);

/// The f32 matrix M [r, k] an operand is packed from (see the module's note): M row-major,
/// or Mᵀ [k, r] row-major, dense or with rows `stride` values apart (one head's columns of
/// [batch, length, heads · d]), each value multiplied by `scale` before it is rounded.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    values: &'a [f32],
    transposed: bool,
    stride: Option<usize>,
    // Read only by the x86-64 packing helpers; off x86-64 nothing packs.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    scale: f32,
}

impl<'a> Source<'a> {
    /// M stored row-major.
    pub fn rows(values: &'a [f32]) -> Self {
        Source {
            values,
            transposed: false,
            stride: None,
            scale: 1.0,
        }
    }

    /// Mᵀ [k, r] stored row-major.
    pub fn transposed(values: &'a [f32]) -> Self {
        Source {
            transposed: true,
            ..Source::rows(values)
        }
    }

    /// The right operand's source from B [k, n] row-major, or from Bᵀ [n, k] where
    /// `transposed`: the packer's M is Bᵀ, so B itself is Mᵀ.
    pub fn of_b(b: &'a [f32], transposed: bool) -> Self {
        match transposed {
            true => Source::rows(b),
            false => Source::transposed(b),
        }
    }

    /// How many values the source's slice holds.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// Rows (of M, or of Mᵀ) `stride` values apart.
    pub fn with_stride(self, stride: usize) -> Self {
        Source {
            stride: Some(stride),
            ..self
        }
    }

    /// Every value times `scale` before rounding (attention's 1/√d folded into its queries).
    pub fn scaled(self, scale: f32) -> Self {
        Source { scale, ..self }
    }

    /// Rows `row0 ..` of M [rows, k] as a source of their own: the rows one task packs.
    pub(super) fn rows_after(&self, row0: usize, (rows, k): (usize, usize)) -> Source<'a> {
        let stride = self.checked_stride(rows, k);
        let offset = match self.transposed {
            false => row0 * stride,
            true => row0,
        };
        Source {
            values: &self.values[offset..],
            stride: Some(stride),
            ..*self
        }
    }

    /// Values between rows (of M, or of Mᵀ), checked against the slice: M [rows, k].
    fn checked_stride(&self, rows: usize, k: usize) -> usize {
        let (outer, inner) = match self.transposed {
            true => (k, rows),
            false => (rows, k),
        };
        let stride = self.stride.unwrap_or(inner);
        // One row (attention's dV with a single key) has no neighbour to overlap.
        assert!(outer <= 1 || stride >= inner, "rows overlap");
        let extent = match outer * inner {
            0 => 0,
            _ => (outer - 1) * stride + inner,
        };
        match self.stride {
            None => assert_eq!(self.values.len(), rows * k, "operand of the wrong size"),
            Some(_) => assert!(self.values.len() >= extent, "operand shorter than its rows"),
        }
        stride
    }
}

/// Which side of the product a packed operand is.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Side {
    Left,
    Right,
}

/// An operand packed in tiles for the kernel, zero-padded to whole tile pairs: tile (t, kb) is
/// 16 lines at `data[(t · k_tiles + kb) · 16 ..]`.
pub struct Packed {
    data: Vec<Line>,
    /// Tile rows (a multiple of 2) and tiles along the shared dimension.
    pub(super) row_tiles: usize,
    pub(super) k_tiles: usize,
}

impl Packed {
    /// The left operand A [m, k] of A · B from A ([`Source::rows`]) or from Aᵀ [k, m]
    /// ([`Source::transposed`]).
    pub fn left(a: Source, m: usize, k: usize) -> Packed {
        Packed::new(Vec::new(), Side::Left, a, (m, k), true)
    }

    /// The right operand B [k, n] of A · B from B row-major, or from Bᵀ [n, k] where
    /// `transposed`.
    pub fn right(b: &[f32], k: usize, n: usize, transposed: bool) -> Packed {
        Packed::new(
            Vec::new(),
            Side::Right,
            Source::of_b(b, transposed),
            (n, k),
            true,
        )
    }

    /// M [rows, k] from `source` packed as `side`'s tiles into `buffer` (a reused allocation:
    /// only grown, never shrunk, so that alternating shapes do not zero it again), one rayon
    /// task per tile row where `parallel` (not inside a task of its own, as attention's blocks).
    pub(super) fn new(
        buffer: Vec<Line>,
        side: Side,
        source: Source,
        (rows, k): (usize, usize),
        parallel: bool,
    ) -> Packed {
        assert!(
            super::packing_instructions(),
            "AMX packing needs AVX512-BF16 and AVX512-BW"
        );
        let stride = source.checked_stride(rows, k);
        let mut packed = Packed::unfilled(buffer, (rows, k));
        let len = packed.row_tiles * packed.k_tiles * TILE;
        // Left tiles are made from rows of M, right ones from pairs of rows of Mᵀ.
        let transpose = source.transposed == (side == Side::Left);
        let fill_panel = |t: usize, panel: &mut [Line]| {
            for (kb, tile) in panel.chunks_exact_mut(TILE).enumerate() {
                // SAFETY: the CPU has AVX512-F/BW/BF16 (asserted above); `stride` was checked
                // against the values, and the helpers read only M [rows, k] (or Mᵀ).
                unsafe { fill_tile(tile, &source, stride, (rows, k), (t, kb), transpose) };
            }
        };
        // At least one line, so that k = 0 (nothing to pack) makes no zero-sized chunks.
        let panel = (packed.k_tiles * TILE).max(1);
        let lines = &mut packed.data[..len];
        match parallel {
            true => lines
                .par_chunks_mut(panel)
                .enumerate()
                .for_each(|(t, p)| fill_panel(t, p)),
            false => lines
                .chunks_mut(panel)
                .enumerate()
                .for_each(|(t, p)| fill_panel(t, p)),
        }
        packed
    }

    /// Room for M [rows, k] as tiles in `buffer` (grown where too short; see [`Packed::new`]),
    /// its lines as they were.
    pub(super) fn unfilled(mut buffer: Vec<Line>, (rows, k): (usize, usize)) -> Packed {
        let row_tiles = rows.div_ceil(2 * TILE) * 2;
        let k_tiles = k.div_ceil(KTILE);
        let len = row_tiles * k_tiles * TILE;
        if buffer.len() < len {
            buffer.resize(len, Line::default());
        }
        Packed {
            data: buffer,
            row_tiles,
            k_tiles,
        }
    }

    /// The 32 bf16 values of row `row` along k-tile `kb` of a left operand, to write.
    pub fn line_mut(&mut self, row: usize, kb: usize) -> &mut [u16; KTILE] {
        assert!(
            row < self.row_tiles * TILE && kb < self.k_tiles,
            "outside the operand"
        );
        let line = ((row / TILE) * self.k_tiles + kb) * TILE + row % TILE;
        &mut self.data[line].0
    }

    /// The operand's rows open to writing from several tasks at once, as a left operand A
    /// [m, k] ([`LeftRows::write`]); `k` is A's, which this operand's k-tiles hold.
    pub fn rows_writer(&mut self, k: usize) -> LeftRows {
        assert_eq!(
            k.div_ceil(KTILE),
            self.k_tiles,
            "a left operand of another width"
        );
        LeftRows {
            lines: self.data.as_mut_ptr(),
            rows: self.row_tiles * TILE,
            k_tiles: self.k_tiles,
            k,
        }
    }

    /// Tile (t, kb): 16 lines of 64 bytes, each on its own cache line.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn tile(&self, t: usize, kb: usize) -> *const u16 {
        self.data[(t * self.k_tiles + kb) * TILE..].as_ptr().cast()
    }

    /// The allocation, to be reused for the next operand.
    pub(super) fn into_buffer(self) -> Vec<Line> {
        self.data
    }
}

/// A left operand's lines written a row at a time by the tasks that compute the rows (a
/// feed-forward's inner activations, rounded as the product before them writes them), from
/// [`Packed::rows_writer`].
#[derive(Clone, Copy)]
pub struct LeftRows {
    lines: *mut Line,
    rows: usize,
    k_tiles: usize,
    k: usize,
}
// SAFETY: each task writes only its own rows (`write`'s contract).
unsafe impl Send for LeftRows {}
unsafe impl Sync for LeftRows {}

impl LeftRows {
    /// Rounds row `row` of A (its k values) into its lines, as [`Packed::new`] does from A's
    /// rows: the same bf16 values, zeros past k.
    ///
    /// # Safety
    /// The [`Packed`] this came from is neither moved, dropped nor otherwise used meanwhile,
    /// and no other task writes row `row` at the same time.
    pub unsafe fn write(&self, row: usize, values: &[f32]) {
        assert!(
            row < self.rows && values.len() == self.k,
            "outside the operand"
        );
        for kb in 0..self.k_tiles {
            let k0 = kb * KTILE;
            let at = ((row / TILE) * self.k_tiles + kb) * TILE + row % TILE;
            // SAFETY: `at` is within the operand's lines (row < rows, kb < k_tiles); the
            // packer asserted AVX512-BF16 when the operand was made; k0 + valid <= k values.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                *self.lines.add(at) = row_line(values.as_ptr().add(k0), KTILE.min(self.k - k0), 1.0)
            };
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("no operand is packed off x86-64 ({at})");
        }
    }
}

/// Tile (t, kb) of M [rows, k] from `source` (rows `stride` apart): lines as the source
/// gives them (rows of M, or pairs of rows of Mᵀ), transposed after where the side wants the
/// other kind.
///
/// # Safety
/// AVX512-F/BW/BF16 are available; `stride` is `source`'s, checked against its values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_tile(
    tile: &mut [Line],
    source: &Source,
    stride: usize,
    (rows, k): (usize, usize),
    (t, kb): (usize, usize),
    transpose: bool,
) {
    let (k0, values, scale) = (kb * KTILE, source.values.as_ptr(), source.scale);
    match source.transposed {
        false => {
            let valid = KTILE.min(k - k0);
            // The rows' lines two k-tiles on, asked for now: 16 rows `stride` apart are 16
            // streams that the prefetchers follow poorly, and these loads waited on memory
            // (MiniLM's inference step, 8 alternated pairs: median step lower in 5, about 3 %).
            if k0 + 2 * KTILE < k {
                for i in 0..TILE.min(rows.saturating_sub(t * TILE)) {
                    let ahead = values.wrapping_add((t * TILE + i) * stride + k0 + 2 * KTILE);
                    // A prefetch never faults, wherever `ahead` points.
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        ahead.cast(),
                    );
                }
            }
            for (i, line) in tile.iter_mut().enumerate() {
                let row = t * TILE + i;
                *line = match row < rows {
                    // SAFETY: row < rows and k0 + valid <= k: inside the values.
                    true => unsafe { row_line(values.add(row * stride + k0), valid, scale) },
                    false => Line::default(),
                };
            }
        }
        true => {
            let c0 = t * TILE;
            let valid = TILE.min(rows.saturating_sub(c0));
            for (p, line) in tile.iter_mut().enumerate() {
                let (even, odd) = (k0 + 2 * p, k0 + 2 * p + 1);
                // SAFETY: rows `even`/`odd` of Mᵀ are read only where they exist (< k), and
                // columns c0 .. c0 + valid of them lie inside.
                *line = unsafe {
                    pair_line(
                        // Wrapping: a padding tile's columns (c0 ≥ rows) are never read.
                        (even < k).then(|| values.wrapping_add(even * stride + c0)),
                        (odd < k).then(|| values.wrapping_add(odd * stride + c0)),
                        valid,
                        scale,
                    )
                };
            }
        }
    }
    if transpose {
        // SAFETY: the tile is 16 lines; AVX-512 is available.
        unsafe { transpose_pairs(tile) };
    }
}

/// Off x86-64 there is nothing to pack with: [`Packed::new`] refuses first, as
/// [`super::packing_instructions`] says no there.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn fill_tile(
    _: &mut [Line],
    _: &Source,
    _: usize,
    _: (usize, usize),
    _: (usize, usize),
    _: bool,
) {
    unreachable!("AMX packing off x86-64")
}

/// `valid` (≤ 32) f32 from `src` times `scale`, rounded to bf16, zeros after them.
///
/// # Safety
/// AVX512-F/BF16; `src` holds `valid` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn row_line(src: *const f32, valid: usize, scale: f32) -> Line {
    use std::arch::x86_64::*;
    let low = mask(valid.min(TILE));
    let high = mask(valid.saturating_sub(TILE));
    // SAFETY: masked loads read only the `valid` values (masked-off lanes do not fault).
    unsafe {
        let scale = _mm512_set1_ps(scale);
        let lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(low, src), scale);
        // Wrapping: with `valid` ≤ 16 the second half is all masked off, maybe past the end.
        let hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(high, src.wrapping_add(TILE)), scale);
        std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
    }
}

/// Line of interleaved pairs: (even[j], odd[j]) times `scale` for the first `valid` (≤ 16)
/// columns, zeros after them and for a missing row.
///
/// # Safety
/// AVX512-F/BW/BF16; each row given holds `valid` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pair_line(
    even: Option<*const f32>,
    odd: Option<*const f32>,
    valid: usize,
    scale: f32,
) -> Line {
    use std::arch::x86_64::*;
    let m = mask(valid);
    // SAFETY: masked loads read only the `valid` values of a row that exists.
    unsafe {
        let scale = _mm512_set1_ps(scale);
        let load = |row: Option<*const f32>| {
            row.map_or(_mm512_setzero_ps(), |r| {
                _mm512_mul_ps(_mm512_maskz_loadu_ps(m, r), scale)
            })
        };
        // Words 0–15 the even row, 16–31 the odd one; then word 2j ← j, 2j + 1 ← 16 + j.
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(load(odd), load(even)));
        let order = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        std::mem::transmute(_mm512_permutexvar_epi16(order, both))
    }
}

/// The lowest `n` (≤ 16) lanes.
#[cfg(target_arch = "x86_64")]
fn mask(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

/// The 16 × 16 matrix of 32-bit pairs in `tile` transposed in place: unpack 32- and 64-bit
/// halves within 128-bit lanes, then gather the lanes (the usual AVX-512 transpose).
///
/// # Safety
/// AVX512-F; `tile` is 16 lines.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_pairs(tile: &mut [Line]) {
    use std::arch::x86_64::*;
    assert_eq!(tile.len(), TILE);
    // SAFETY: each line is 64 aligned bytes.
    unsafe {
        let r: [__m512i; 16] =
            std::array::from_fn(|i| _mm512_load_si512(tile[i].0.as_ptr().cast()));
        // t[2i] = rows 2i, 2i+1 interleaved by 32 bits (columns 0, 1 of each lane), t[2i+1] the
        // same for columns 2, 3.
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            match i % 2 {
                0 => _mm512_unpacklo_epi32(a, b),
                _ => _mm512_unpackhi_epi32(a, b),
            }
        });
        // u[4g + c]: rows 4g .. 4g+4 of column c (+ 4·lane) in each 128-bit lane.
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (g, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * g + c / 2], t[4 * g + c / 2 + 2]);
            match c % 2 {
                0 => _mm512_unpacklo_epi64(a, b),
                _ => _mm512_unpackhi_epi64(a, b),
            }
        });
        for c in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
            let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
            let v3 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
            let out = [
                (c, _mm512_shuffle_i32x4::<0x88>(v0, v2)),
                (c + 8, _mm512_shuffle_i32x4::<0xDD>(v0, v2)),
                (c + 4, _mm512_shuffle_i32x4::<0x88>(v1, v3)),
                (c + 12, _mm512_shuffle_i32x4::<0xDD>(v1, v3)),
            ];
            for (row, v) in out {
                _mm512_store_si512(tile[row].0.as_mut_ptr().cast(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::no_amx;
    use super::super::to_bf16;
    use super::*;

    fn pattern(len: usize) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    /// The tile (t, kb) as the kernel reads it, 16 × 32 words.
    fn tile_words(p: &Packed, t: usize, kb: usize) -> Vec<u16> {
        p.data[(t * p.k_tiles + kb) * TILE..][..TILE]
            .iter()
            .flat_map(|l| l.0)
            .collect()
    }

    #[test]
    fn tiles_hold_what_the_kernel_reads_from_every_source() {
        if no_amx() {
            return;
        }
        // Odd sizes: partial tiles along both dimensions, an odd k (a lone last pair).
        let (r, k) = (37, 71);
        let m = pattern(r * k);
        let mt: Vec<f32> = (0..k * r).map(|i| m[i % r * k + i / r]).collect();
        let at = |row: usize, kk: usize| match row < r && kk < k {
            true => to_bf16(m[row * k + kk]),
            false => 0,
        };
        for side in [Side::Left, Side::Right] {
            let from_rows = Packed::new(Vec::new(), side, Source::rows(&m), (r, k), true);
            let from_transposed =
                Packed::new(Vec::new(), side, Source::transposed(&mt), (r, k), false);
            assert_eq!((from_rows.row_tiles, from_rows.k_tiles), (4, 3));
            for t in 0..4 {
                for kb in 0..3 {
                    let want: Vec<u16> = (0..TILE * KTILE)
                        .map(|w| {
                            let (line, word) = (w / KTILE, w % KTILE);
                            match side {
                                Side::Left => at(t * TILE + line, kb * KTILE + word),
                                Side::Right => {
                                    at(t * TILE + word / 2, kb * KTILE + 2 * line + word % 2)
                                }
                            }
                        })
                        .collect();
                    assert!(tile_words(&from_rows, t, kb) == want, "rows, tile {t},{kb}");
                    assert!(
                        tile_words(&from_transposed, t, kb) == want,
                        "Mᵀ, tile {t},{kb}"
                    );
                }
            }
        }
    }
}
