//! Each fused operation against the decomposed reference on `Autodiff<Flex>`: outputs and
//! gradients agree to 1e-5 relative (max-norm: max|fused − reference| ≤ 1e-5 · max|reference|).

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::TensorData;

use super::*;

type Ad = Autodiff<Flex>;

/// Normal(0, 1) values from a local generator: burn's backend RNG is global, and tests run
/// in parallel threads.
fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<Ad, D> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    // Box–Muller
    let data: Vec<f32> = (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn values<const D: usize>(t: Tensor<Ad, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

#[track_caller]
fn assert_close(what: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-12);
    let worst = got
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "{what}: max difference {worst} against scale {scale}"
    );
    assert!(got.iter().all(|x| x.is_finite()), "{what}: not finite");
}

/// A key mask with the last `pad[i]` keys of row i padded.
fn key_mask(b: usize, lk: usize, pad: &[usize]) -> Tensor<Ad, 2> {
    let data: Vec<f32> = (0..b)
        .flat_map(|i| {
            (0..lk).map(move |j| {
                if j + pad[i % pad.len()] < lk {
                    1.0
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [b, lk]), &Default::default())
}

/// What a family adds to plain attention: a score bias (DeBERTa), a window (ModernBERT's
/// local layers), evenly attending padded queries (DeBERTa).
#[derive(Clone, Copy, Default)]
struct Extras {
    bias: bool,
    window: Option<usize>,
    even: bool,
}

fn check_attention(dims: [usize; 6], masked: bool, dropout: bool) {
    check_attention_with(dims, masked, dropout, Extras::default());
}

fn check_attention_with(dims: [usize; 6], masked: bool, dropout: bool, extras: Extras) {
    let [b, h, lq, lk, dk, dv] = dims;
    let options = AttentionOptions {
        window: extras.window,
        even_padded_queries: extras.even,
        ..AttentionOptions::new(h, 1.0 / (dk as f32).sqrt(), -1e9)
    };
    let inputs = || {
        (
            random([b, lq, h * dk], 1).require_grad(),
            random([b, lk, h * dk], 2).require_grad(),
            random([b, lk, h * dv], 3).require_grad(),
            random([b, h * lq, lk], 9)
                .reshape([b, h, lq, lk])
                .require_grad(),
        )
    };
    let mask = masked.then(|| key_mask(b, lk, &[0, lk / 2, lk - 1]));
    let drop =
        dropout.then(|| reference::dropout_mask::<Ad, 4>([b, h, lq, lk], 0.3, &Default::default()));
    let weights = random([b, lq, h * dv], 4);
    let masks = |bias: &Tensor<Ad, 4>| AttentionMasks {
        key_mask: mask.clone().map(unwrap),
        bias: extras.bias.then(|| unwrap(bias.clone())),
        dropout_mask: drop.clone().map(unwrap),
    };

    let (q, k, v, bias) = inputs();
    let fused: Tensor<Ad, 3> = wrap(<Ad as PipeOps>::fused_attention(
        unwrap(q.clone()),
        unwrap(k.clone()),
        unwrap(v.clone()),
        masks(&bias),
        options,
    ));
    let grads = (fused.clone() * weights.clone()).sum().backward();
    let fused_grads = [
        q.grad(&grads),
        k.grad(&grads),
        v.grad(&grads),
        bias.grad(&grads).map(|g| g.reshape([b, h * lq, lk])),
    ];

    let (q, k, v, bias) = inputs();
    let (reference, _) = reference::attention_forward::<Ad>(
        unwrap(q.clone()),
        unwrap(k.clone()),
        unwrap(v.clone()),
        masks(&bias),
        options,
    );
    let reference: Tensor<Ad, 3> = wrap(reference);
    let grads = (reference.clone() * weights).sum().backward();
    let reference_grads = [
        q.grad(&grads),
        k.grad(&grads),
        v.grad(&grads),
        bias.grad(&grads).map(|g| g.reshape([b, h * lq, lk])),
    ];

    let tag = format!(
        "attention {dims:?} masked={masked} dropout={dropout} bias={} window={:?} even={}",
        extras.bias, extras.window, extras.even
    );
    assert_close(&format!("{tag} output"), values(fused), values(reference));
    let names = ["dq", "dk", "dv", "dbias"];
    let wanted = if extras.bias { 4 } else { 3 };
    for (name, (f, r)) in names
        .iter()
        .zip(fused_grads.into_iter().zip(reference_grads))
        .take(wanted)
    {
        let (f, r) = (f.expect("fused grad"), r.expect("reference grad"));
        assert_close(
            &format!("{tag} {name}"),
            f.into_data().to_vec().unwrap(),
            r.into_data().to_vec().unwrap(),
        );
    }
}

#[test]
fn attention_matches_reference_unmasked() {
    check_attention([2, 2, 7, 7, 5, 5], false, false);
    check_attention([3, 1, 1, 9, 8, 3], false, false);
}

#[test]
fn attention_matches_reference_masked() {
    check_attention([3, 2, 11, 11, 4, 4], true, false);
    check_attention([2, 3, 5, 13, 7, 2], true, false);
}

#[test]
fn attention_matches_reference_with_dropout() {
    check_attention([2, 2, 6, 6, 4, 4], true, true);
}

/// DeBERTa's form: a tracked score bias and padded queries attending evenly, with dropout.
#[test]
fn attention_with_bias_and_even_padded_queries_matches_reference() {
    let deberta = Extras {
        bias: true,
        even: true,
        ..Extras::default()
    };
    check_attention_with([3, 2, 11, 11, 4, 4], true, false, deberta);
    check_attention_with([2, 2, 6, 6, 4, 4], true, true, deberta);
    let bias_only = Extras {
        bias: true,
        ..Extras::default()
    };
    check_attention_with([2, 3, 5, 13, 7, 2], false, false, bias_only);
}

/// ModernBERT's local layers: keys beyond the window penalised once, padded ones too.
#[test]
fn windowed_attention_matches_reference() {
    let local = |w| Extras {
        window: Some(w),
        ..Extras::default()
    };
    check_attention_with([3, 2, 11, 11, 4, 4], true, false, local(2));
    check_attention_with([2, 2, 9, 9, 4, 4], false, true, local(0));
    check_attention_with([2, 1, 7, 7, 3, 3], true, false, local(10));
}

/// The inference kernel (no autodiff: weights not kept, rows of P·V normalised instead of
/// the scores) against the reference, masked and unmasked, at odd shapes, and with each
/// family's extras.
#[test]
fn inference_attention_matches_reference() {
    let deberta = Extras {
        bias: true,
        even: true,
        window: None,
    };
    let local = Extras {
        window: Some(3),
        ..Extras::default()
    };
    for (dims, masked, extras) in [
        ([2, 2, 7, 9, 5, 3], false, Extras::default()),
        ([3, 2, 11, 11, 4, 4], true, Extras::default()),
        ([1, 3, 1, 13, 7, 2], true, Extras::default()),
        ([3, 2, 11, 11, 4, 4], true, deberta),
        ([3, 2, 11, 11, 4, 4], true, local),
    ] {
        let [b, h, lq, lk, dk, dv] = dims;
        let options = AttentionOptions {
            window: extras.window,
            even_padded_queries: extras.even,
            ..AttentionOptions::new(h, 1.0 / (dk as f32).sqrt(), -1e9)
        };
        let flex = |t: Tensor<Ad, 3>| t.inner();
        let (q, k, v) = (
            flex(random([b, lq, h * dk], 1)),
            flex(random([b, lk, h * dk], 2)),
            flex(random([b, lk, h * dv], 3)),
        );
        let bias = flex(random([b, h * lq, lk], 9)).reshape([b, h, lq, lk]);
        let masks = AttentionMasks {
            key_mask: masked.then(|| unwrap(key_mask(b, lk, &[0, lk / 2, lk - 1]).inner())),
            bias: extras.bias.then(|| unwrap(bias)),
            dropout_mask: None,
        };
        let fused: Tensor<Flex, 3> = wrap(<Flex as PipeOps>::fused_attention(
            unwrap(q.clone()),
            unwrap(k.clone()),
            unwrap(v.clone()),
            masks.clone(),
            options,
        ));
        let (reference, _) =
            reference::attention_forward::<Flex>(unwrap(q), unwrap(k), unwrap(v), masks, options);
        let reference: Tensor<Flex, 3> = wrap(reference);
        assert_close(
            &format!(
                "inference attention {dims:?} masked={masked} bias={}",
                extras.bias
            ),
            values_flex(fused),
            values_flex(reference),
        );
    }
}

/// The reference backward formula (the default for other backends) against autodiff's.
#[test]
fn reference_attention_backward_matches_autodiff() {
    let (b, h, l, d) = (2, 2, 5, 3);
    let options = AttentionOptions::new(h, 0.5, f32::MIN);
    let (q, k, v) = (
        random([b, l, h * d], 5).require_grad(),
        random([b, l, h * d], 6).require_grad(),
        random([b, l, h * d], 7).require_grad(),
    );
    let mask = key_mask(b, l, &[1, 2]);
    let g = random([b, l, h * d], 8);
    let (out, probs) = reference::attention_forward::<Ad>(
        unwrap(q.clone()),
        unwrap(k.clone()),
        unwrap(v.clone()),
        AttentionMasks {
            key_mask: Some(unwrap(mask)),
            bias: None,
            dropout_mask: None,
        },
        options,
    );
    let grads = (wrap::<Ad, 3>(out) * g.clone()).sum().backward();
    let inner = |t: Tensor<Ad, 3>| t.inner().into_primitive().tensor();
    let no_masks = AttentionMasks {
        key_mask: None,
        bias: None,
        dropout_mask: None,
    };
    let grads_got = reference::attention_backward::<Flex>(
        inner(q.clone()),
        inner(k.clone()),
        inner(v.clone()),
        wrap::<Ad, 4>(probs).inner().into_primitive().tensor(),
        no_masks,
        inner(g),
        options,
        false,
    );
    let (dq, dk, dv) = (grads_got.q, grads_got.k, grads_got.v);
    for (name, t, got) in [("dq", &q, dq), ("dk", &k, dk), ("dv", &v, dv)] {
        let want = t.grad(&grads).expect("grad").into_data().to_vec().unwrap();
        let got: Tensor<Flex, 3> = wrap(got);
        assert_close(name, got.into_data().to_vec().unwrap(), want);
    }
}

/// DeBERTa's relative scores, both kinds: the kernel and the reference's explicit backward
/// against burn-autodiff through the reference's gather, with rows no distance reads (their
/// gradient zero) at both ends of the table and clamped distances.
#[test]
fn relative_scores_match_reference_and_autodiff() {
    let (b, h, l, d, rows) = (2, 3, 7, 4, 20);
    let rows_by_distance: std::sync::Arc<[u32]> = (-(l as i64 - 1)..l as i64)
        .map(|dist| (dist + 10).clamp(5, 14) as u32)
        .collect();
    for transposed in [false, true] {
        let options = RelativeOptions {
            num_heads: h,
            scale: 0.3,
            rows_by_distance: rows_by_distance.clone(),
            transposed,
        };
        let inputs = || {
            (
                random([b, l, h * d], 31).require_grad(),
                random([rows, h * d], 32).require_grad(),
            )
        };
        let weights = random([b * h, l, l], 33).reshape([b, h, l, l]);
        let (x, table) = inputs();
        let fused = relative_scores(x.clone(), table.clone(), options.clone());
        let grads = (fused.clone() * weights.clone()).sum().backward();
        let fused_grads = [
            values(x.grad(&grads).map(Tensor::from_inner).unwrap()),
            values(table.grad(&grads).map(Tensor::from_inner).unwrap()),
        ];
        let (x, table) = inputs();
        let reference: Tensor<Ad, 4> = wrap(reference::relative_scores::<Ad>(
            unwrap(x.clone()),
            unwrap(table.clone()),
            &options,
        ));
        let grads = (reference.clone() * weights.clone()).sum().backward();
        let autodiff = [
            values(x.grad(&grads).map(Tensor::from_inner).unwrap()),
            values(table.grad(&grads).map(Tensor::from_inner).unwrap()),
        ];
        let tag = format!("relative scores transposed={transposed}");
        assert_close(&format!("{tag} output"), values(fused), values(reference));
        let (dx, dtable) = reference::relative_scores_backward::<Flex>(
            unwrap(x.inner()),
            unwrap(table.inner()),
            unwrap(weights.clone().inner()),
            &options,
        );
        let explicit = [
            values_flex(wrap::<Flex, 3>(dx)),
            values_flex(wrap::<Flex, 2>(dtable)),
        ];
        for (name, ((f, a), e)) in ["dx", "dtable"]
            .iter()
            .zip(fused_grads.into_iter().zip(autodiff).zip(explicit))
        {
            assert_close(&format!("{tag} {name} (kernel)"), f, a.clone());
            assert_close(&format!("{tag} {name} (reference backward)"), e, a);
        }
        // The table rows no distance reads get exactly zero.
        let (x, table) = inputs();
        let grads = (relative_scores(x, table.clone(), options.clone()) * weights)
            .sum()
            .backward();
        let dtable = values(table.grad(&grads).map(Tensor::from_inner).unwrap());
        assert!(
            dtable[..5 * h * d]
                .iter()
                .chain(&dtable[15 * h * d..])
                .all(|&g| g == 0.0)
        );
    }
}

/// Compares a fused operation on one input with the reference through burn-autodiff: the
/// output and the input's gradient under random output weights.
fn check_against_reference<const D: usize, const E: usize>(
    tag: &str,
    x: Tensor<Ad, D>,
    fused: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, E>,
    reference: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, E>,
) {
    let run = |f: &dyn Fn(Tensor<Ad, D>) -> Tensor<Ad, E>| {
        let x = x.clone().detach().require_grad();
        let y = f(x.clone());
        let n: usize = y.dims().iter().product();
        let weights = random([n], 77).reshape(y.dims());
        let grads = (y.clone() * weights).sum().backward();
        (
            values(y),
            values(x.grad(&grads).map(Tensor::from_inner).unwrap()),
        )
    };
    let (fy, fdx) = run(&fused);
    let (ry, rdx) = run(&reference);
    assert_close(&format!("{tag} output"), fy, ry);
    assert_close(&format!("{tag} dx"), fdx, rdx);
}

/// ModernBERT's query | key | value parts, rotated or not, and its GeGLU.
#[test]
fn packed_parts_and_geglu_match_reference() {
    let (b, l, heads, d) = (2, 5, 3, 4);
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..l * d)
        .map(|i| ((i as f32 * 0.37).cos(), (i as f32 * 0.37).sin()))
        .unzip();
    let rotary = Rotary {
        cos: cos.into(),
        sin: sin.into(),
        head_dim: d,
    };
    for (part, rotary) in [(0, Some(rotary.clone())), (1, Some(rotary)), (2, None)] {
        let options = PartOptions {
            part,
            parts: 3,
            rotary,
        };
        let tag = format!("packed part {part}");
        check_against_reference(
            &tag,
            random([b, l, 3 * heads * d], 61),
            |x| packed_part(x, options.clone()),
            |x| wrap(reference::packed_part::<Ad>(unwrap(x), &options)),
        );
    }
    check_against_reference("geglu", random([b, l, 2 * 7], 62), geglu, |x| {
        let [b, l, _] = x.dims();
        let input = x.clone().slice([0..b, 0..l, 0..7]);
        burn::tensor::activation::gelu(input) * x.slice([0..b, 0..l, 7..14])
    });
}

fn check_layer_norm(shape: [usize; 3], with_beta: bool) {
    let eps = 1e-6;
    let d = shape[2];
    let inputs = || {
        (
            random(shape, 11)
                .mul_scalar(3.0)
                .add_scalar(0.5)
                .require_grad(),
            random([d], 12).require_grad(),
            random([d], 13).require_grad(),
        )
    };
    let weights = random(shape, 14);
    let run = |fused: bool| {
        let (x, gamma, beta) = inputs();
        let beta_arg = with_beta.then(|| beta.clone());
        let y = if fused {
            layer_norm(x.clone(), gamma.clone(), beta_arg, eps)
        } else {
            wrap::<Ad, 3>(reference::layer_norm::<Ad>(
                unwrap(x.clone()),
                unwrap(gamma.clone()),
                beta_arg.map(unwrap),
                eps,
            ))
        };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let mut out = vec![
            values(y),
            values(x.grad(&grads).map(Tensor::from_inner).unwrap()),
        ];
        out.push(gamma.grad(&grads).unwrap().into_data().to_vec().unwrap());
        if with_beta {
            out.push(beta.grad(&grads).unwrap().into_data().to_vec().unwrap());
        }
        out
    };
    for (i, (f, r)) in run(true).into_iter().zip(run(false)).enumerate() {
        assert_close(&format!("layer_norm {shape:?} beta={with_beta} #{i}"), f, r);
    }
}

#[test]
fn layer_norm_matches_reference() {
    check_layer_norm([2, 3, 5], true);
    check_layer_norm([3, 7, 33], true);
    check_layer_norm([1, 4, 9], false);
}

#[test]
fn layer_norm_matches_burn_layer_norm() {
    let x = random([2, 3, 6], 21);
    let norm = burn::nn::LayerNormConfig::new(6)
        .with_epsilon(1e-5)
        .init::<Ad>(&Default::default());
    let want = values(norm.forward(x.clone()));
    assert_close("vs burn", values(layer_norm_module(&norm, x, 1e-5)), want);
}

#[test]
fn mean_pool_matches_burns_bit_for_bit() {
    let device = Default::default();
    // Row 2 is all padding: its count is clamped to 1.
    let mask_rows: Vec<f32> = (0..4 * 37)
        .map(|i| match i / 37 {
            2 => 0.0,
            r => f32::from(i % 37 < 37 - 9 * r),
        })
        .collect();
    let mask = Tensor::<Ad, 2>::from_data(TensorData::new(mask_rows, [4, 37]), &device);
    for masked in [false, true] {
        let run = |fused: bool| {
            let x = random([4, 37, 19], 61).mul_scalar(3.0).require_grad();
            let m = masked.then(|| mask.clone());
            let pooled = if fused {
                mean_pool(x.clone(), m)
            } else {
                wrap::<Ad, 2>(reference::mean_pool::<Ad>(unwrap(x.clone()), m.map(unwrap)))
            };
            let grads = (pooled.clone() * random([4, 19], 62)).sum().backward();
            let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
            (values(pooled), dx)
        };
        let (fused, fused_dx) = run(true);
        let (burns, burns_dx) = run(false);
        let first_difference = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .position(|(x, y)| x.to_bits() != y.to_bits())
        };
        assert_eq!(
            first_difference(&fused, &burns),
            None,
            "pooled, masked {masked}"
        );
        assert_eq!(
            first_difference(&fused_dx, &burns_dx),
            None,
            "dx, masked {masked}"
        );
    }
}

#[test]
fn relu_matches_reference() {
    // A transposed view too: the fused kernels take any layout.
    for transposed in [false, true] {
        let x = random([7, 5, 1001], 33).require_grad();
        let w = random([7, 5, 1001], 34);
        let input = |x: Tensor<Ad, 3>| if transposed { x.swap_dims(0, 2) } else { x };
        let weight = input(w.clone());
        let fused = relu(input(x.clone()));
        let g = (fused.clone() * weight.clone()).sum().backward();
        let fused_grad: Vec<f32> = x.grad(&g).unwrap().into_data().to_vec().unwrap();
        let x2 = random([7, 5, 1001], 33).require_grad();
        let reference = burn::tensor::activation::relu(input(x2.clone()));
        let g = (reference.clone() * weight).sum().backward();
        let reference_grad: Vec<f32> = x2.grad(&g).unwrap().into_data().to_vec().unwrap();
        assert_eq!(values(fused), values(reference), "relu");
        assert_eq!(fused_grad, reference_grad, "relu grad");
    }
}

#[test]
fn gelu_matches_reference() {
    let x = random([3, 5, 101], 31).mul_scalar(3.0).require_grad();
    let w = random([3, 5, 101], 32);
    let fused = gelu(x.clone());
    let g = (fused.clone() * w.clone()).sum().backward();
    let fused_grad = x.grad(&g).unwrap().into_data().to_vec().unwrap();
    let x2 = random([3, 5, 101], 31).mul_scalar(3.0).require_grad();
    let reference = burn::tensor::activation::gelu(x2.clone());
    let g = (reference.clone() * w).sum().backward();
    let reference_grad = x2.grad(&g).unwrap().into_data().to_vec().unwrap();
    assert_close("gelu", values(fused), values(reference));
    assert_close("gelu grad", fused_grad, reference_grad);
}

#[test]
fn cross_entropy_matches_reference() {
    let labels = Tensor::<Ad, 1, Int>::from_data([0, 3, 1, 1, 2], &Default::default());
    let run = |fused: bool| {
        let logits = random([5, 4], 41).mul_scalar(4.0).require_grad();
        let loss = if fused {
            cross_entropy(logits.clone(), labels.clone())
        } else {
            wrap::<Ad, 1>(reference::cross_entropy::<Ad>(
                unwrap(logits.clone()),
                labels.clone().into_primitive(),
            ))
        };
        let grads = loss.clone().mul_scalar(2.0).backward();
        (
            values(loss),
            logits.grad(&grads).unwrap().into_data().to_vec().unwrap(),
        )
    };
    let (fl, fg) = run(true);
    let (rl, rg) = run(false);
    assert_close("cross-entropy", fl, rl);
    assert_close("cross-entropy grad", fg, rg);
}

/// Same inputs, same bits: the kernels' sums run in a fixed order.
#[test]
fn fused_ops_are_deterministic() {
    let once = || {
        let q = random([4, 33, 64], 51).require_grad();
        let out = attention(
            q.clone(),
            q.clone(),
            q.clone(),
            Some(key_mask(4, 33, &[3, 0])),
            0.0,
            AttentionOptions::new(2, 0.2, -1e9),
        );
        let y = layer_norm(out, random([64], 52), Some(random([64], 53)), 1e-6);
        let grads = gelu(y).sum().backward();
        values(q.grad(&grads).map(Tensor::from_inner).unwrap())
    };
    assert_eq!(once(), once());
}

#[test]
fn dropout_mask_keeps_the_right_share_and_scales() {
    let m = flex::dropout_mask(&[1000, 100], 0.25, 7);
    let v: Vec<f32> = wrap::<Flex, 2>(m).into_data().to_vec().unwrap();
    let kept = v.iter().filter(|&&x| x != 0.0).count() as f64 / v.len() as f64;
    assert!((kept - 0.75).abs() < 0.005, "kept {kept}");
    assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.75).abs() < 1e-6));
    let again: Vec<f32> = wrap::<Flex, 2>(flex::dropout_mask(&[1000, 100], 0.25, 7))
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(v, again);
    let other: Vec<f32> = wrap::<Flex, 2>(flex::dropout_mask(&[1000, 100], 0.25, 8))
        .into_data()
        .to_vec()
        .unwrap();
    assert_ne!(v, other);
    // Neighbouring elements are not correlated.
    let pairs = v
        .windows(2)
        .filter(|w| (w[0] == 0.0) == (w[1] == 0.0))
        .count() as f64;
    let same = pairs / (v.len() - 1) as f64;
    assert!(
        (same - (0.75f64.powi(2) + 0.25f64.powi(2))).abs() < 0.01,
        "{same}"
    );
}

#[test]
fn dropout_is_the_identity_without_autodiff() {
    let x = Tensor::<Flex, 2>::ones([4, 5], &Default::default());
    let y = dropout(x.clone(), 0.5);
    assert_eq!(values_flex(y), values_flex(x));
}

fn values_flex<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

#[test]
fn linear_matches_reference() {
    // Row-split and whole-product (a weight of 65,536 or more) paths, with and without a bias.
    let shapes = [(5, 3, 4), (4100, 33, 7), (70, 256, 300)];
    for ((n, d_in, d_out), with_bias) in shapes.into_iter().flat_map(|s| [(s, true), (s, false)]) {
        let run = |fused: bool| {
            let layer = burn::nn::Linear::<Ad> {
                weight: burn::module::Param::from_tensor(random([d_in, d_out], 61)),
                bias: with_bias.then(|| burn::module::Param::from_tensor(random([d_out], 62))),
            };
            let x = random([n, d_in], 63).require_grad();
            let y = if fused {
                linear(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let grads = (y.clone() * random([n, d_out], 64)).sum().backward();
            let w = layer.weight.val();
            let mut all = vec![
                values(y),
                values(Tensor::from_inner(x.grad(&grads).unwrap())),
                values(Tensor::from_inner(w.grad(&grads).unwrap())),
            ];
            if let Some(b) = &layer.bias {
                all.push(values(Tensor::from_inner(b.val().grad(&grads).unwrap())));
            }
            all
        };
        let (fused, burns) = (run(true), run(false));
        assert_eq!(fused.len(), burns.len());
        for (i, (f, r)) in fused.into_iter().zip(burns).enumerate() {
            assert_close(
                &format!("linear {n}x{d_in}x{d_out} bias={with_bias} #{i}"),
                f,
                r,
            );
        }
    }
}

/// x + dropout(z) against x + z ⊙ mask by burn's ops: output and both gradients.
#[test]
fn residual_matches_reference() {
    for (shape, with_mask) in [([3, 5, 7], false), ([2, 9, 4], true), ([1, 1, 33], true)] {
        let mask =
            with_mask.then(|| reference::dropout_mask::<Ad, 3>(shape, 0.4, &Default::default()));
        let inputs = || {
            (
                random(shape, 7).require_grad(),
                random(shape, 8).require_grad(),
            )
        };
        let weights = random(shape, 9);

        let (x, z) = inputs();
        let fused: Tensor<Ad, 3> = wrap(<Ad as PipeOps>::fused_residual(
            unwrap(x.clone()),
            unwrap(z.clone()),
            mask.clone().map(unwrap),
        ));
        let grads = (fused.clone() * weights.clone()).sum().backward();
        let fused_grads = [x.grad(&grads).unwrap(), z.grad(&grads).unwrap()];

        let (x, z) = inputs();
        let reference = match mask {
            Some(m) => x.clone() + z.clone() * m,
            None => x.clone() + z.clone(),
        };
        let grads = (reference.clone() * weights).sum().backward();
        let reference_grads = [x.grad(&grads).unwrap(), z.grad(&grads).unwrap()];

        let tag = format!("residual {shape:?} mask={with_mask}");
        assert_close(&format!("{tag} output"), values(fused), values(reference));
        for (name, (f, r)) in ["dx", "dz"]
            .iter()
            .zip(fused_grads.into_iter().zip(reference_grads))
        {
            assert_close(
                &format!("{tag} {name}"),
                f.into_data().to_vec().unwrap(),
                r.into_data().to_vec().unwrap(),
            );
        }
    }
}
