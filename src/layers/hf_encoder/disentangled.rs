//! DeBERTa's disentangled self-attention: the content scores Q·Kᵀ plus content-to-position
//! (Q against the projected relative-position embeddings) and position-to-content (K against
//! them) scores, each indexed by the bucketed distance between query and key; scaled by
//! sqrt(head size × (1 + the number of position terms)). Padded queries and keys have their
//! scores replaced by the lowest f32, as transformers does, so a padded query attends evenly.

use burn::nn::Linear;
use burn::prelude::*;

use crate::fused::{self, AttentionOptions, RelativeOptions};
use crate::pretrained::RelativeAttention;

/// The bucket of the distance `d` = query − key: itself up to half the buckets, then
/// logarithmic up to `max_position` (transformers' `make_log_bucket_position`, in f32 as there).
pub fn relative_bucket(d: i64, r: &RelativeAttention) -> i64 {
    let Some((buckets, max_position)) = r.log_buckets else {
        return d;
    };
    let mid = (buckets / 2) as i64;
    let abs = if d < mid && d > -mid {
        mid - 1
    } else {
        d.abs()
    };
    if abs <= mid {
        return d;
    }
    let ratio = (abs as f32 / mid as f32).ln();
    let range = ((max_position as f64 - 1.0) / mid as f64) as f32;
    let log_pos = (ratio / range.ln() * (mid - 1) as f32).ceil() as i64 + mid;
    log_pos * d.signum()
}

/// The row of the relative embeddings for each distance query − key from −(len − 1) to
/// len − 1 (entry `d + len − 1`): clamp(bucket(d) + span, 0, 2·span − 1).
pub fn relative_rows_by_distance(len: usize, r: &RelativeAttention) -> Vec<i64> {
    let span = r.span as i64;
    let len = len as i64;
    (-(len - 1)..len)
        .map(|d| (relative_bucket(d, r) + span).clamp(0, 2 * span - 1))
        .collect()
}

/// One layer's projections: the content ones, and the position ones where the keys are not
/// shared (`share_att_key` false).
pub struct Projections<'a, B: Backend> {
    pub query: &'a Linear<B>,
    pub key: &'a Linear<B>,
    pub value: &'a Linear<B>,
    pub pos_query: Option<&'a Linear<B>>,
    pub pos_key: Option<&'a Linear<B>>,
}

/// One layer's content projections and its position terms.
struct Terms<B: Backend> {
    /// [batch, length, heads·d] each.
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    /// (c2p + p2c) · scale: [batch, heads, length, length]; `None` without position terms.
    position_bias: Option<Tensor<B, 4>>,
    /// 1 / √(d × (1 + the number of position terms)).
    scale: f32,
}

/// The content projections and the position terms, as transformers computes them.
///
/// # Shapes
/// - x: [batch, length, hidden]; rel: [2·span, hidden] (normalised where the config says)
fn terms<B: Backend>(
    x: Tensor<B, 3>,
    rel: Tensor<B, 2>,
    p: &Projections<B>,
    num_heads: usize,
    r: &RelativeAttention,
) -> Terms<B> {
    let [_, l, h] = x.dims();
    let d = h / num_heads;
    let q = fused::linear_seq(p.query, x.clone());
    let k = fused::linear_seq(p.key, x.clone());
    let v = fused::linear_seq(p.value, x);
    let factor = 1 + usize::from(r.c2p) + usize::from(r.p2c);
    let scale = 1.0 / ((d * factor) as f32).sqrt();
    let rows = rel.dims()[0];
    let rel = rel.reshape([1, rows, h]);
    let rows_by_distance: std::sync::Arc<[u32]> = relative_rows_by_distance(l, r)
        .into_iter()
        .map(|row| row as u32)
        .collect();
    // Positions projected like the content (the same weights when keys are shared).
    let positions =
        |projection: &Linear<B>| fused::linear_seq(projection, rel.clone()).reshape([rows, h]);
    let options = |transposed| RelativeOptions {
        num_heads,
        scale,
        rows_by_distance: rows_by_distance.clone(),
        transposed,
    };
    let mut terms: Vec<Tensor<B, 4>> = Vec::new();
    if r.c2p {
        let pos_key = positions(p.pos_key.unwrap_or(p.key));
        terms.push(fused::relative_scores(q.clone(), pos_key, options(false)));
    }
    if r.p2c {
        // p2c[i, j] = K_j · Pq[row(i − j)].
        let pos_query = positions(p.pos_query.unwrap_or(p.query));
        terms.push(fused::relative_scores(k.clone(), pos_query, options(true)));
    }
    Terms {
        q,
        k,
        v,
        position_bias: terms.into_iter().reduce(|a, b| a + b),
        scale,
    }
}

impl<B: Backend> Terms<B> {
    /// The attention kernel's options: this scale, the lowest f32 for padded keys, padded
    /// queries attending evenly.
    fn options(&self, num_heads: usize) -> AttentionOptions {
        AttentionOptions {
            even_padded_queries: true,
            ..AttentionOptions::new(num_heads, self.scale, f32::MIN)
        }
    }
}

/// The layer's attended values, heads joined: the fused attention kernel with the position
/// terms as its score bias, padded queries attending evenly.
///
/// # Shapes
/// - x: [batch, length, hidden]; rel: [2·span, hidden]; mask: [batch, length]
/// - output: [batch, length, hidden]
pub fn context<B: Backend>(
    x: Tensor<B, 3>,
    rel: Tensor<B, 2>,
    mask: &Tensor<B, 2>,
    p: &Projections<B>,
    num_heads: usize,
    r: &RelativeAttention,
    dropout: f64,
) -> Tensor<B, 3> {
    let t = terms(x, rel, p, num_heads, r);
    let options = t.options(num_heads);
    let mask = Some(mask.clone());
    fused::attention_with_bias(t.q, t.k, t.v, mask, t.position_bias, dropout, options)
}

/// The layer's attention weights (for `pipe attention`), as [`context`] weighs the values:
/// padded keys get none, padded queries attend evenly (transformers' masked_fill).
///
/// # Shapes
/// - as [`context`]; output: [batch, heads, length, length]
pub fn weights<B: Backend>(
    x: Tensor<B, 3>,
    rel: Tensor<B, 2>,
    mask: &Tensor<B, 2>,
    p: &Projections<B>,
    num_heads: usize,
    r: &RelativeAttention,
) -> Tensor<B, 4> {
    let t = terms(x, rel, p, num_heads, r);
    let options = t.options(num_heads);
    fused::reference::attention_probs(t.q, t.k, Some(mask.clone()), t.position_bias, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(buckets: usize, max_position: usize) -> RelativeAttention {
        RelativeAttention {
            span: buckets,
            log_buckets: Some((buckets, max_position)),
            c2p: true,
            p2c: true,
            share_att_key: true,
            norm_rel_embeddings: true,
        }
    }

    #[test]
    fn buckets_are_the_distance_near_and_logarithmic_far() {
        // transformers' table for 8 buckets over 64 positions (tests/fixtures/families/
        // deberta_v2: |d| 5..10 → ±5, 11..23 → ±6).
        let r = v3(8, 64);
        let got: Vec<i64> = (-12..=12).map(|d| relative_bucket(d, &r)).collect();
        let want = [
            -6, -6, -5, -5, -5, -5, -5, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 6, 6,
        ];
        assert_eq!(got, want);
        // DeBERTa-v3-base's 256 buckets over 512 positions: linear up to 128.
        let base = v3(256, 512);
        assert_eq!(relative_bucket(128, &base), 128);
        assert_eq!(relative_bucket(-500, &base), -relative_bucket(500, &base));
        assert!(relative_bucket(511, &base) <= 255);
        let plain = RelativeAttention {
            log_buckets: None,
            ..base
        };
        assert_eq!(relative_bucket(-300, &plain), -300);
    }
}
