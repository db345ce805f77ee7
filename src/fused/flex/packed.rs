//! Operations on the parts of a packed projection (ModernBERT's query|key|value and
//! input|gate), forward and backward, a block of rows per rayon task: one part taken out
//! (rotated by its rotary table where it has one), and GeGLU. burn's slices, head splits and
//! rotate-half concatenations of these parts were strided single-core copies: about half of a
//! ModernBERT step.

use burn::backend::Flex;
use burn::tensor::TensorMetadata;

use super::{ELEMENTS_PER_TASK, Ft, contiguous, is_f32, par_filled, tensor, values};
use crate::fused::math::multiversion;
use crate::fused::{PartOptions, Rotary, reference};

/// Rows per task for rows `width` wide: about [`ELEMENTS_PER_TASK`] elements.
fn rows_per_task(width: usize) -> usize {
    (ELEMENTS_PER_TASK / width.max(1)).max(1)
}

multiversion! {
    /// One row's heads rotated: `out = x·cos + rotate_half(x)·sin`, or (`inverse`) the
    /// gradient through it, `g·cos + rotate_halfᵀ(g·sin)`; cos and sin are the row's position.
    fn rotate_row(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], inverse: bool) {
        let d = cos.len();
        let half = d / 2;
        let sign = if inverse { -1.0 } else { 1.0 };
        for (xh, oh) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let (x1, x2) = xh.split_at(half);
            let (o1, o2) = oh.split_at_mut(half);
            for k in 0..half {
                // Forward: o₁ = x₁c₁ − x₂s₁, o₂ = x₂c₂ + x₁s₂. Inverse: the transpose,
                // g₁c₁ + g₂s₂ and g₂c₂ − g₁s₁.
                let (s1, s2) = if inverse { (sin[half + k], sin[k]) } else { (sin[k], sin[half + k]) };
                o1[k] = x1[k] * cos[k] - sign * x2[k] * s1;
                o2[k] = x2[k] * cos[half + k] + sign * x1[k] * s2;
            }
        }
    }
}

/// Part `part` of x [b, l, parts·w] as [b, l, w], rotated where the options say.
pub fn packed_part(x: Ft, o: &PartOptions) -> Ft {
    if !is_f32(&[&x]) {
        return reference::packed_part::<Flex>(x, o);
    }
    let dims = x.shape().to_vec();
    let (l, full) = (dims[1], dims[2]);
    let w = full / o.parts;
    check_part(full, o);
    let x = contiguous(&x);
    let xv = values(&x);
    let per = rows_per_task(w);
    let out = par_filled(dims[0] * l * w, per * w, |task, chunk| {
        for (i, row) in chunk.chunks_exact_mut(w).enumerate() {
            let r = task * per + i;
            rotate_or_copy(&xv[r * full + o.part * w..][..w], row, r % l, o, false);
        }
    });
    tensor(out, &[dims[0], l, w])
}

/// dx [b, l, parts·w] from the part's gradient [b, l, w]: zero outside the part.
pub fn packed_part_backward(grad: Ft, o: &PartOptions) -> Ft {
    if !is_f32(&[&grad]) {
        return reference::packed_part_backward::<Flex>(grad, o);
    }
    let dims = grad.shape().to_vec();
    let (l, w) = (dims[1], dims[2]);
    let full = w * o.parts;
    check_part(full, o);
    let g = contiguous(&grad);
    let gv = values(&g);
    let per = rows_per_task(full);
    let dx = par_filled(dims[0] * l * full, per * full, |task, chunk| {
        for (i, row) in chunk.chunks_exact_mut(full).enumerate() {
            let r = task * per + i;
            let src = &gv[r * w..][..w];
            let (before, rest) = row.split_at_mut(o.part * w);
            let (part, after) = rest.split_at_mut(w);
            before.fill(0.0);
            after.fill(0.0);
            rotate_or_copy(src, part, r % l, o, true);
        }
    });
    tensor(dx, &[dims[0], l, full])
}

/// One row of a part at `position`: rotated (or, `inverse`, its gradient rotated back) where
/// the part has a rotary table, else copied.
fn rotate_or_copy(src: &[f32], out: &mut [f32], position: usize, o: &PartOptions, inverse: bool) {
    match &o.rotary {
        Some(t) => {
            let (cos, sin) = t.at(position);
            rotate_row(src, cos, sin, out, inverse);
        }
        None => out.copy_from_slice(src),
    }
}

/// The shapes the row loops rely on: whole parts, whole heads of even size, every position
/// in the table (otherwise rows would be left unwritten or read out of bounds).
fn check_part(full: usize, o: &PartOptions) {
    assert!(
        o.parts > 0 && o.part < o.parts && full.is_multiple_of(o.parts),
        "packed part {o:?} of width {full}"
    );
    if let Some(t) = &o.rotary {
        let w = full / o.parts;
        assert!(
            t.head_dim.is_multiple_of(2) && t.head_dim > 0 && w.is_multiple_of(t.head_dim),
            "rotary heads of {w}"
        );
        assert_eq!(t.cos.len(), t.sin.len(), "rotary table");
    }
}

impl Rotary {
    /// cos and sin of position `p`, each `head_dim` long.
    fn at(&self, p: usize) -> (&[f32], &[f32]) {
        let d = self.head_dim;
        // Slices are bounds-checked: a table shorter than the sequence panics here.
        (&self.cos[p * d..][..d], &self.sin[p * d..][..d])
    }
}

multiversion! {
    /// GeGLU of one row: y = gelu(input)·gate over x = input | gate.
    fn geglu_row(x: &[f32], y: &mut [f32]) {
        let (input, gate) = x.split_at(y.len());
        super::activation::gelu_slice(input, y);
        for (yi, &gi) in y.iter_mut().zip(gate) {
            *yi *= gi;
        }
    }
}

multiversion! {
    /// The gradient through one GeGLU row: d input = g·gate·gelu'(input), d gate = g·gelu(input).
    fn geglu_backward_row(x: &[f32], g: &[f32], dx: &mut [f32]) {
        let w = g.len();
        let (input, gate) = x.split_at(w);
        let (d_input, d_gate) = dx.split_at_mut(w);
        // g·gate through GELU's derivative, with d gate's room as the scratch for g·gate.
        for ((s, &gi), &ga) in d_gate.iter_mut().zip(g).zip(gate) {
            *s = gi * ga;
        }
        super::activation::gelu_backward_slice(input, d_gate, d_input);
        super::activation::gelu_slice(input, d_gate);
        for (dg, &gi) in d_gate.iter_mut().zip(g) {
            *dg *= gi;
        }
    }
}

/// GeGLU over the last dimension: x [..., 2w] → gelu(x[..., :w]) · x[..., w:].
pub fn geglu(x: Ft) -> Ft {
    if !is_f32(&[&x]) {
        return reference::geglu::<Flex>(x);
    }
    let mut dims = x.shape().to_vec();
    let full = *dims.last().expect("a last dimension");
    assert!(
        full.is_multiple_of(2),
        "GeGLU needs an even last dimension (input | gate), not {full}"
    );
    let w = full / 2;
    let x = contiguous(&x);
    let xv = values(&x);
    let per = rows_per_task(full);
    let y = par_filled(xv.len() / 2, per * w, |task, chunk| {
        for (i, row) in chunk.chunks_exact_mut(w).enumerate() {
            geglu_row(&xv[(task * per + i) * full..][..full], row);
        }
    });
    *dims.last_mut().expect("a last dimension") = w;
    tensor(y, &dims)
}

pub fn geglu_backward(x: Ft, grad: Ft) -> Ft {
    if !is_f32(&[&x, &grad]) {
        return reference::geglu_backward::<Flex>(x, grad);
    }
    let dims = x.shape().to_vec();
    let full = *dims.last().expect("a last dimension");
    assert!(
        full.is_multiple_of(2),
        "GeGLU needs an even last dimension (input | gate), not {full}"
    );
    let w = full / 2;
    let (x, g) = (contiguous(&x), contiguous(&grad));
    let (xv, gv) = (values(&x), values(&g));
    let per = rows_per_task(full);
    let dx = par_filled(xv.len(), per * full, |task, chunk| {
        for (i, row) in chunk.chunks_exact_mut(full).enumerate() {
            let r = task * per + i;
            geglu_backward_row(&xv[r * full..][..full], &gv[r * w..][..w], row);
        }
    });
    tensor(dx, &dims)
}
