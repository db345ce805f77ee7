"""Independent NumPy float64 forward of every tests/fixtures/families/<family>/ checkpoint, written
from the architecture descriptions (not by calling transformers): reads only config.json,
model.safetensors and the ids/masks in expected.json, and prints the max |diff| against the
recorded last_hidden_state, classifier_input and logits. A plain reference for a Rust port.

    /work/venv/bin/python scripts/check_family_fixtures.py      # needs numpy + safetensors only
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

DIR = Path(__file__).resolve().parent.parent / "tests/fixtures/families"
NEG = float(np.finfo(np.float32).min)  # transformers' additive mask value
_erf = np.vectorize(math.erf)


def gelu(x):  # exact (erf) GELU, transformers' "gelu"
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def ln(x, w, b, eps):  # biased variance
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w
    return y + b if b is not None else y


def lin(x, W, b=None):  # PyTorch layout: W [out, in]
    y = x @ W.T
    return y + b if b is not None else y


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def heads(x, nh):  # [B,L,H] -> [B,nh,L,d], heads = contiguous slices
    B, L, H = x.shape
    return x.reshape(B, L, nh, H // nh).transpose(0, 2, 1, 3)


def merge(x):
    B, nh, L, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, nh * d)


def bert_encoder(h, mask, W, p, cfg):
    """Post-LN BERT layers (BERT, RoBERTa, XLM-R, ELECTRA); mask is additive over keys."""
    nh, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    add = np.where(mask[:, None, None, :] > 0, 0.0, NEG)
    for i in range(cfg["num_hidden_layers"]):
        q = f"{p}.encoder.layer.{i}."
        Q, K, V = (heads(lin(h, W[q + f"attention.self.{n}.weight"], W[q + f"attention.self.{n}.bias"]), nh)
                   for n in ("query", "key", "value"))
        a = softmax(Q @ K.transpose(0, 1, 3, 2) / math.sqrt(Q.shape[-1]) + add) @ V
        h = ln(lin(merge(a), W[q + "attention.output.dense.weight"], W[q + "attention.output.dense.bias"]) + h,
               W[q + "attention.output.LayerNorm.weight"], W[q + "attention.output.LayerNorm.bias"], eps)
        f = gelu(lin(h, W[q + "intermediate.dense.weight"], W[q + "intermediate.dense.bias"]))
        h = ln(lin(f, W[q + "output.dense.weight"], W[q + "output.dense.bias"]) + h,
               W[q + "output.LayerNorm.weight"], W[q + "output.LayerNorm.bias"], eps)
    return h


def bert_embed(ids, tt, pos, W, p, eps):
    e = W[f"{p}.embeddings.word_embeddings.weight"][ids] + W[f"{p}.embeddings.position_embeddings.weight"][pos]
    e = e + W[f"{p}.embeddings.token_type_embeddings.weight"][tt]
    return ln(e, W[f"{p}.embeddings.LayerNorm.weight"], W[f"{p}.embeddings.LayerNorm.bias"], eps)


def bert(W, cfg, ids, mask, tt):
    L = ids.shape[1]
    h = bert_encoder(bert_embed(ids, tt, np.arange(L)[None], W, "bert", cfg["layer_norm_eps"]), mask, W, "bert", cfg)
    pooled = np.tanh(lin(h[:, 0], W["bert.pooler.dense.weight"], W["bert.pooler.dense.bias"]))
    return h, pooled, lin(pooled, W["classifier.weight"], W["classifier.bias"])


def roberta(W, cfg, ids, mask, tt, p="roberta"):
    pad = cfg["pad_token_id"]
    nz = (ids != pad).astype(np.int64)
    pos = np.cumsum(nz, 1) * nz + pad  # positions start at pad+1; padding gets position pad
    h = bert_encoder(bert_embed(ids, np.zeros_like(ids), pos, W, p, cfg["layer_norm_eps"]), mask, W, p, cfg)
    x = np.tanh(lin(h[:, 0], W["classifier.dense.weight"], W["classifier.dense.bias"]))
    return h, x, lin(x, W["classifier.out_proj.weight"], W["classifier.out_proj.bias"])


def electra(W, cfg, ids, mask, tt):
    L = ids.shape[1]
    e = bert_embed(ids, tt, np.arange(L)[None], W, "electra", cfg["layer_norm_eps"])  # LayerNorm in E=16
    e = lin(e, W["electra.embeddings_project.weight"], W["electra.embeddings_project.bias"])  # 16 -> 32
    h = bert_encoder(e, mask, W, "electra", cfg)
    x = gelu(lin(h[:, 0], W["classifier.dense.weight"], W["classifier.dense.bias"]))
    return h, x, lin(x, W["classifier.out_proj.weight"], W["classifier.out_proj.bias"])


def distilbert(W, cfg, ids, mask, tt):
    p, nh, eps = "distilbert", cfg["n_heads"], 1e-12  # eps hard-coded in DistilBERT
    L = ids.shape[1]
    h = W[f"{p}.embeddings.word_embeddings.weight"][ids] + W[f"{p}.embeddings.position_embeddings.weight"][np.arange(L)][None]
    h = ln(h, W[f"{p}.embeddings.LayerNorm.weight"], W[f"{p}.embeddings.LayerNorm.bias"], eps)
    add = np.where(mask[:, None, None, :] > 0, 0.0, NEG)
    for i in range(cfg["n_layers"]):
        q = f"{p}.transformer.layer.{i}."
        Q, K, V = (heads(lin(h, W[q + f"attention.{n}.weight"], W[q + f"attention.{n}.bias"]), nh)
                   for n in ("q_lin", "k_lin", "v_lin"))
        a = softmax(Q @ K.transpose(0, 1, 3, 2) / math.sqrt(Q.shape[-1]) + add) @ V
        h = ln(lin(merge(a), W[q + "attention.out_lin.weight"], W[q + "attention.out_lin.bias"]) + h,
               W[q + "sa_layer_norm.weight"], W[q + "sa_layer_norm.bias"], eps)
        f = lin(gelu(lin(h, W[q + "ffn.lin1.weight"], W[q + "ffn.lin1.bias"])), W[q + "ffn.lin2.weight"], W[q + "ffn.lin2.bias"])
        h = ln(f + h, W[q + "output_layer_norm.weight"], W[q + "output_layer_norm.bias"], eps)
    x = np.maximum(lin(h[:, 0], W["pre_classifier.weight"], W["pre_classifier.bias"]), 0.0)
    return h, x, lin(x, W["classifier.weight"], W["classifier.bias"])


def log_bucket(rel, buckets, max_pos):
    """DeBERTa-v2 make_log_bucket_position (float64 here; transformers computes it in float32)."""
    mid = buckets // 2
    sign = np.sign(rel)
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float64)
    log_pos = np.ceil(np.log(abs_pos / mid) / np.log((max_pos - 1) / mid) * (mid - 1)) + mid
    return np.where(abs_pos <= mid, rel, log_pos * sign).astype(np.int64)


def deberta_v2(W, cfg, ids, mask, tt):
    p, nh, eps = "deberta", cfg["num_attention_heads"], cfg["layer_norm_eps"]
    L = ids.shape[1]
    span = cfg["position_buckets"]  # att_span; rel_embeddings has 2*span rows
    max_pos = cfg["max_relative_positions"] if cfg["max_relative_positions"] > 0 else cfg["max_position_embeddings"]
    rel = log_bucket(np.arange(L)[:, None] - np.arange(L)[None, :], span, max_pos)  # r[i,j] = bucket(i-j)
    h = ln(W[f"{p}.embeddings.word_embeddings.weight"][ids], W[f"{p}.embeddings.LayerNorm.weight"],
           W[f"{p}.embeddings.LayerNorm.bias"], eps) * mask[..., None]  # no position/type embeddings; times mask
    R = ln(W[f"{p}.encoder.rel_embeddings.weight"], W[f"{p}.encoder.LayerNorm.weight"], W[f"{p}.encoder.LayerNorm.bias"], eps)
    allowed = (mask[:, None, :, None] * mask[:, None, None, :]) > 0  # query AND key valid
    c2p_idx = np.clip(rel + span, 0, 2 * span - 1)  # [i,j]
    p2c_idx = np.clip(-rel.T + span, 0, 2 * span - 1)  # [i,j] = clamp(-r[j,i] + span)
    for i in range(cfg["num_hidden_layers"]):
        q = f"{p}.encoder.layer.{i}.attention.self."
        proj = lambda x, n: heads(lin(x, W[q + f"{n}.weight"], W[q + f"{n}.bias"]), nh)
        Q, K, V = proj(h, "query_proj"), proj(h, "key_proj"), proj(h, "value_proj")
        Pq, Pk = proj(R[None], "query_proj")[0], proj(R[None], "key_proj")[0]  # share_att_key: same projections
        scale = math.sqrt(Q.shape[-1] * 3)  # 1 + c2p + p2c
        c2p = np.take_along_axis(Q @ Pk.transpose(0, 2, 1)[None], np.broadcast_to(c2p_idx, Q.shape[:2] + (L, L)), -1)
        kp = K @ Pq.transpose(0, 2, 1)[None]  # [B,nh,j,r]
        p2c = np.take_along_axis(kp, np.broadcast_to(p2c_idx.T, Q.shape[:2] + (L, L)), -1).transpose(0, 1, 3, 2)
        s = (Q @ K.transpose(0, 1, 3, 2) + c2p + p2c) / scale
        s = np.where(allowed, s, NEG)  # replaced, not added: fully-masked (padded) query rows become uniform
        a = softmax(s) @ V
        o = f"{p}.encoder.layer.{i}."
        h = ln(lin(merge(a), W[o + "attention.output.dense.weight"], W[o + "attention.output.dense.bias"]) + h,
               W[o + "attention.output.LayerNorm.weight"], W[o + "attention.output.LayerNorm.bias"], eps)
        f = gelu(lin(h, W[o + "intermediate.dense.weight"], W[o + "intermediate.dense.bias"]))
        h = ln(lin(f, W[o + "output.dense.weight"], W[o + "output.dense.bias"]) + h,
               W[o + "output.LayerNorm.weight"], W[o + "output.LayerNorm.bias"], eps)
    x = gelu(lin(h[:, 0], W["pooler.dense.weight"], W["pooler.dense.bias"]))
    return h, x, lin(x, W["classifier.weight"], W["classifier.bias"])


def rope(x, theta):  # x [B,nh,L,d]; rotate_half on halves (not interleaved), positions 0..L-1
    d, L = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    f = np.arange(L)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([f, f], -1)), np.sin(np.concatenate([f, f], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def modernbert(W, cfg, ids, mask, tt):
    nh, eps, H = cfg["num_attention_heads"], cfg["norm_eps"], cfg["hidden_size"]
    L = ids.shape[1]
    h = ln(W["model.embeddings.tok_embeddings.weight"][ids], W["model.embeddings.norm.weight"], None, eps)
    dist = np.abs(np.arange(L)[:, None] - np.arange(L)[None, :])
    for i, kind in enumerate(cfg["layer_types"]):
        q = f"model.layers.{i}."
        x = h if i == 0 else ln(h, W[q + "attn_norm.weight"], None, eps)  # layer 0: no attn_norm
        qkv = lin(x, W[q + "attn.Wqkv.weight"])  # [B,L,3H] = q | k | v
        Q, K, V = (heads(qkv[..., j * H:(j + 1) * H], nh) for j in range(3))
        theta = cfg["rope_parameters"][kind]["rope_theta"]
        Q, K = rope(Q, theta), rope(K, theta)
        ok = mask[:, None, None, :] > 0
        if kind == "sliding_attention":
            ok = ok & (dist <= cfg["local_attention"] // 2)[None, None]
        a = softmax(Q @ K.transpose(0, 1, 3, 2) / math.sqrt(H // nh) + np.where(ok, 0.0, NEG)) @ V
        h = h + lin(merge(a), W[q + "attn.Wo.weight"])
        u = lin(ln(h, W[q + "mlp_norm.weight"], None, eps), W[q + "mlp.Wi.weight"])
        inp, gate = np.split(u, 2, -1)  # first half -> activation, second half -> gate
        h = h + lin(gelu(inp) * gate, W[q + "mlp.Wo.weight"])
    h = ln(h, W["model.final_norm.weight"], None, eps)
    if cfg["classifier_pooling"] == "mean":
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    else:
        pooled = h[:, 0]
    x = ln(gelu(lin(pooled, W["head.dense.weight"])), W["head.norm.weight"], None, eps)
    return h, x, lin(x, W["classifier.weight"], W["classifier.bias"])


FORWARD = {"bert": bert, "distilbert": distilbert, "roberta": roberta,
           "xlm_roberta": lambda *a: roberta(*a, p="roberta"), "electra": electra,
           "deberta_v2": deberta_v2, "modernbert": modernbert, "modernbert_cls": modernbert}


def main():
    worst = 0.0
    for name, fwd in FORWARD.items():
        d = json.loads((DIR / name / "expected.json").read_text())
        cfg = json.loads((DIR / name / "config.json").read_text())
        W = {k: v.astype(np.float64) for k, v in load_file(DIR / name / "model.safetensors").items()}
        ids, mask = np.array(d["input_ids"]), np.array(d["attention_mask"])
        tt = np.array(d.get("token_type_ids", np.zeros_like(ids)))
        h, x, logits = fwd(W, cfg, ids, mask, tt)
        valid = mask.astype(bool)
        ref_h = np.array(d["last_hidden_state"])
        diffs = {"last_hidden_state(valid)": np.abs(h - ref_h)[valid].max(),
                 "last_hidden_state(all)": np.abs(h - ref_h).max(),
                 "classifier_input": np.abs(x - np.array(d["classifier_input"])).max(),
                 "logits": np.abs(logits - np.array(d["logits"])).max()}
        if name == "deberta_v2":
            L = ids.shape[1]
            rel = log_bucket(np.arange(L)[:, None] - np.arange(L)[None, :], 8, 64)
            diffs["relative_positions"] = np.abs(rel - np.array(d["relative_positions"])).max()
        worst = max(worst, *diffs.values())
        print(f"{name:15s} " + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    print(f"worst {worst:.2e}")
    sys.exit(0 if worst < 1e-5 else 1)


if __name__ == "__main__":
    main()
