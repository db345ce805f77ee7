//! The tile kernel itself: 32 × 32 blocks of C, each from four accumulator tiles, written with
//! `asm!` (stable Rust has no AMX intrinsics). x86-64 only; elsewhere [`super::available`] says
//! no, so nothing reaches it.

#[cfg(doc)]
use super::block_row;
use super::{F32Line, KTILE, Output, Packed, Start, TILE};

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

/// [`block_row`] with its rows of the left operand at tile rows `r0`, `r0 + 1` of `left`.
///
/// # Safety
/// As [`block_row`].
pub(super) unsafe fn block_row_packed(
    (left, r0): (&Packed, usize),
    right: &Packed,
    c: Output,
    pair: usize,
    start: Start,
    bias: Option<&[F32Line]>,
) {
    let height = (2 * TILE).min(c.m - pair * 2 * TILE);
    let config = TileConfig::new();
    let mut out = [[F32Line::default(); TILE]; 4];
    // SAFETY: the block row starts inside C.
    let rows = unsafe { c.c.add(pair * 2 * TILE * c.stride) };
    // SAFETY: `available()` was checked by the caller; the configuration is valid for palette 1.
    unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
    for col_pair in 0..right.row_tiles / 2 {
        let c0 = 2 * col_pair;
        let edge = EdgeBlock {
            rows,
            n: c.n,
            stride: c.stride,
            height,
            c0,
        };
        // A whole 32 × 32 block inside C is loaded and stored in place; an edge one through
        // `out`, which starts as its part of C, the bias or zeros.
        let whole = height == 2 * TILE && (c0 + 2) * TILE <= c.n;
        // Inside this task's rows of C for a whole block (wrapping: an edge block's may not be).
        let in_c = [0, TILE, TILE * c.stride, TILE * c.stride + TILE]
            .map(|o| rows.wrapping_add(c0 * TILE + o));
        let out_tiles = out.each_mut().map(|t| t.as_mut_ptr().cast::<f32>());
        let stored = match whole {
            true => (in_c, c.stride * 4),
            false => (out_tiles, TILE * 4),
        };
        let init = match (start, whole) {
            (Start::Zero, true) => None,
            (Start::Onto, true) => Some((in_c.map(|p| p.cast_const()), c.stride * 4)),
            (Start::Bias(_), _) => {
                let b = bias.expect("a padded bias");
                let line = |t: usize| b[c0 + t % 2].0.as_ptr();
                Some(([0, 1, 2, 3].map(line), 0))
            }
            (_, false) => {
                for (t, tile) in out.iter_mut().enumerate() {
                    tile.fill(F32Line::default());
                    if matches!(start, Start::Onto) {
                        // SAFETY: the block's part of C, in this task's rows.
                        unsafe { edge.copy(t, tile, true) };
                    }
                }
                Some((out_tiles.map(|p| p.cast_const()), TILE * 4))
            }
        };
        // SAFETY: every operand tile lies inside its packed buffer (both are padded to whole
        // tile pairs); `init` and `stored` point at four 16 × 16 f32 tiles with their row
        // strides, in C, in `out` or in the bias lines (stride 0: one line for every row).
        unsafe { tile_products(left, right, r0, c0, init, stored) };
        if !whole {
            for (t, tile) in out.iter_mut().enumerate() {
                // SAFETY: the block's part of C, in this task's rows.
                unsafe { edge.copy(t, tile, false) };
            }
        }
    }
    // SAFETY: releases this thread's tile state, which `ldtilecfg` above took.
    unsafe { std::arch::asm!("tilerelease", options(nostack)) };
    if let Some(then) = c.then {
        for i in 0..height {
            // SAFETY: row i of this task's rows, all of it written above.
            let row = unsafe { std::slice::from_raw_parts_mut(rows.add(i * c.stride), c.n) };
            then(pair * 2 * TILE + i, row);
        }
    }
}

/// A 32 × 32 block at tile column `c0` of the block row at `rows` (`height` rows of C, `n`
/// wide, `stride` apart) that does not lie whole inside C.
struct EdgeBlock {
    rows: *mut f32,
    n: usize,
    stride: usize,
    height: usize,
    c0: usize,
}

impl EdgeBlock {
    /// Copies the part of tile `t` that lies inside C from C into `tile` (`into_tile`) or back.
    ///
    /// # Safety
    /// `rows` is this task's block row of C.
    unsafe fn copy(&self, t: usize, tile: &mut [F32Line; TILE], into_tile: bool) {
        let (dr, dc) = (t / 2 * TILE, (self.c0 + t % 2) * TILE);
        let width = TILE.min(self.n.saturating_sub(dc));
        for (i, line) in tile
            .iter_mut()
            .enumerate()
            .take(self.height.saturating_sub(dr))
        {
            // SAFETY: row dr + i < height and columns dc .. dc + width < n: inside C.
            unsafe {
                let at = self.rows.add((dr + i) * self.stride + dc);
                match into_tile {
                    true => std::ptr::copy_nonoverlapping(at, line.0.as_mut_ptr(), width),
                    false => std::ptr::copy_nonoverlapping(line.0.as_ptr(), at, width),
                }
            }
        }
    }
}

/// One 32 × 32 block: the four C tiles loaded from `init` (pointers and row stride in bytes)
/// or zeroed, the products over the whole shared dimension added, the tiles stored to
/// `stored`.
///
/// # Safety
/// The tile configuration is loaded; `init` and `stored` hold four 16 × 16 f32 tiles with
/// their row strides, readable and writable; tile rows `r0`, `r0 + 1` of `left` and `c0`,
/// `c0 + 1` of `right` exist.
unsafe fn tile_products(
    left: &Packed,
    right: &Packed,
    r0: usize,
    c0: usize,
    init: Option<([*const f32; 4], usize)>,
    (c, stride): ([*mut f32; 4], usize),
) {
    unsafe {
        match init {
            Some((i, s)) => std::arch::asm!(
                "tileloadd tmm0, [{o0} + {s}*1]",
                "tileloadd tmm1, [{o1} + {s}*1]",
                "tileloadd tmm2, [{o2} + {s}*1]",
                "tileloadd tmm3, [{o3} + {s}*1]",
                o0 = in(reg) i[0], o1 = in(reg) i[1], o2 = in(reg) i[2], o3 = in(reg) i[3],
                s = in(reg) s,
                options(nostack),
            ),
            None => std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack)
            ),
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
            s = in(reg) stride,
            options(nostack),
        );
    }
}
