//! DeBERTa's relative-position scores, forward and backward: forward, one rayon task per
//! (batch row, head) block, `gemm` of the block's rows against the position rows its distances
//! read, then each score picked from that product by its distance; backward, one task per
//! head over its batch rows (burn's gather over the whole
//! [batch, heads, length, 2·span] product ran on one core and took most of a DeBERTa step).

use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;

use super::{Ft, Written, contiguous, is_f32, mm, tensor, values};
use crate::fused::{RelativeOptions, reference};

/// The sizes of one call, and the position rows it reads: `first..first + used`.
struct Dims {
    b: usize,
    h: usize,
    l: usize,
    d: usize,
    first: usize,
    used: usize,
}

impl Dims {
    /// The sizes, checked against the table: the gemm views below read (and the backward
    /// writes) rows first..=last of a [rows, heads·d] table.
    fn of(x: &Ft, table: &Ft, o: &RelativeOptions) -> Self {
        let s = x.shape();
        let (first, last) = o.rows_used();
        let t = table.shape();
        assert_eq!(t[1], s[2], "position table width");
        assert!(last < t[0], "distances read table row {last} of {}", t[0]);
        assert_eq!(
            o.rows_by_distance.len(),
            2 * s[1] - 1,
            "one table row per distance"
        );
        Dims {
            b: s[0],
            h: o.num_heads,
            l: s[1],
            d: s[2] / o.num_heads,
            first,
            used: last + 1 - first,
        }
    }

    /// Column of block row `i`, score column `j` in the [length, used rows] product.
    fn column(&self, o: &RelativeOptions, i: usize, j: usize) -> usize {
        o.rows_by_distance[i + self.l - 1 - j] as usize - self.first
    }
}

/// out[b, h, i, j] = scale · x[b, i or j, h] · table[row(i − j), h]: x_i where not
/// `transposed` (content to position), x_j where it is (position to content).
pub fn relative_scores(x: Ft, table: Ft, o: &RelativeOptions) -> Ft {
    if !is_f32(&[&x, &table]) {
        return reference::relative_scores::<Flex>(x, table, o);
    }
    let d = Dims::of(&x, &table, o);
    let (x, table) = (contiguous(&x), contiguous(&table));
    let (xv, tv) = (values(&x), values(&table));
    let w = (d.h * d.d) as isize;
    let block = d.l * d.l;
    let out = super::par_filled(d.b * d.h * block, block, |bh, scores| {
        let (bi, hi) = (bh / d.h, bh % d.h);
        let mut product = vec![0f32; d.l * d.used];
        // SAFETY: the views stay inside x's rows of batch row `bi`, head `hi`, and the table's
        // rows first..first + used of head `hi`; `product` is [l, used].
        unsafe {
            mm(
                (d.l, d.used, d.d),
                (product.as_mut_ptr(), d.used as isize, 1),
                (xv[bi * d.l * d.h * d.d + hi * d.d..].as_ptr(), w, 1),
                (tv[d.first * d.h * d.d + hi * d.d..].as_ptr(), 1, w),
                o.scale,
                false,
            );
        }
        for (i, row) in scores.chunks_exact_mut(d.l).enumerate() {
            for (j, s) in row.iter_mut().enumerate() {
                let source = if o.transposed { j } else { i };
                *s = product[source * d.used + d.column(o, i, j)];
            }
        }
    });
    tensor(out, &[d.b, d.h, d.l, d.l])
}

/// (dx, dtable) from the scores' gradient [b, h, l, l]. One task per head, its batch rows in
/// turn, so that the head's table gradient is summed in one place.
pub fn relative_scores_backward(x: Ft, table: Ft, grad: Ft, o: &RelativeOptions) -> (Ft, Ft) {
    if !is_f32(&[&x, &table, &grad]) {
        return reference::relative_scores_backward::<Flex>(x, table, grad, o);
    }
    let d = Dims::of(&x, &table, o);
    let rows = table.shape()[0];
    let (x, table, grad) = (contiguous(&x), contiguous(&table), contiguous(&grad));
    let (xv, tv, gv) = (values(&x), values(&table), values(&grad));
    let w = (d.h * d.d) as isize;
    let block = d.l * d.l;
    let mut dx = Written::new(d.b * d.l * d.h * d.d);
    let dx_ptr = dx.ptr();
    // Rows of the table no distance reads get no gradient: zeros, written once here.
    let mut dtable = vec![0f32; rows * d.h * d.d];
    let dtable_ptr = super::Shared(dtable.as_mut_ptr());
    (0..d.h).into_par_iter().for_each(|hi| {
        let mut dproduct = vec![0f32; d.l * d.used];
        for bi in 0..d.b {
            dproduct.fill(0.0);
            let g = &gv[(bi * d.h + hi) * block..][..block];
            for (i, row) in g.chunks_exact(d.l).enumerate() {
                for (j, &gij) in row.iter().enumerate() {
                    let source = if o.transposed { j } else { i };
                    dproduct[source * d.used + d.column(o, i, j)] += gij;
                }
            }
            let x0 = bi * d.l * d.h * d.d + hi * d.d;
            // SAFETY: dx's columns of head `hi` (every batch row) and the table gradient's
            // columns of head `hi` belong to this task alone; rows first..first + used exist
            // (checked in Dims::of).
            unsafe {
                // dx = scale · dP · table
                mm(
                    (d.l, d.d, d.used),
                    (dx_ptr.get().add(x0), w, 1),
                    (dproduct.as_ptr(), d.used as isize, 1),
                    (tv[d.first * d.h * d.d + hi * d.d..].as_ptr(), w, 1),
                    o.scale,
                    false,
                );
                // dtable += scale · dPᵀ · x
                mm(
                    (d.used, d.d, d.l),
                    (dtable_ptr.get().add(d.first * d.h * d.d + hi * d.d), w, 1),
                    (dproduct.as_ptr(), 1, d.used as isize),
                    (xv[x0..].as_ptr(), w, 1),
                    o.scale,
                    true,
                );
            }
        }
    });
    // SAFETY: each head's task wrote its columns of every batch row of dx.
    let dx = unsafe { dx.assume_written() };
    (
        tensor(dx, &[d.b, d.l, d.h * d.d]),
        tensor(dtable, &[rows, d.h * d.d]),
    )
}
