"""Checks predictions made elsewhere (e.g. by `pipe`) against transformers on the same export.

    HF_HUB_OFFLINE=1 /work/venv/bin/python scripts/hf_roundtrip.py \
        --export DIR --predictions preds.json --texts texts.txt [--atol 1e-4] [--max-length N]

DIR is a transformers folder (config.json, model.safetensors, tokenizer files); it is loaded with
AutoTokenizer + AutoModelForSequenceClassification, offline, in float32 eval mode on CPU. texts.txt
holds one text per line. preds.json holds one entry per text, either a list or {"predictions": [...]};
each entry is a probability list (in label-id order), {"probabilities": [...]}, or a {label: prob}
dict (labels as in config.json's id2label), also under "probabilities". Softmax probabilities are
compared within --atol (absolute); prints the max diff and argmax agreement, exits 0 (pass) or 1.
Texts are tokenized in batches of 32 with padding="longest" and truncation at --max-length
(default: the tokenizer's model_max_length, capped at 512).
"""
import argparse
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def as_probs(entry, label2id):
    if isinstance(entry, dict) and "probabilities" in entry:
        entry = entry["probabilities"]
    if isinstance(entry, dict):
        out = [None] * len(label2id)
        for label, p in entry.items():
            out[label2id[label] if label in label2id else int(label)] = float(p)
        if None in out:
            raise ValueError(f"labels missing in {entry}; expected {sorted(label2id)}")
        return out
    return [float(p) for p in entry]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=None)
    a = ap.parse_args()

    texts = open(a.texts, encoding="utf-8").read().splitlines()
    preds = json.load(open(a.predictions, encoding="utf-8"))
    if isinstance(preds, dict):
        preds = preds["predictions"]
    if len(preds) != len(texts):
        sys.exit(f"FAIL: {len(preds)} predictions for {len(texts)} texts")

    tok = AutoTokenizer.from_pretrained(a.export)
    model = AutoModelForSequenceClassification.from_pretrained(a.export, dtype=torch.float32).eval()
    label2id = {str(l): int(i) for l, i in model.config.label2id.items()}
    max_len = a.max_length or min(tok.model_max_length, 512)

    ref = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i:i + 32], padding="longest", truncation=True, max_length=max_len, return_tensors="pt")
            ref += torch.softmax(model(**enc).logits.float(), -1).tolist()

    max_diff, agree = 0.0, 0
    for k, (r, p) in enumerate(zip(ref, preds)):
        p = as_probs(p, label2id)
        if len(p) != len(r):
            sys.exit(f"FAIL: text {k}: {len(p)} probabilities, model has {len(r)} labels")
        max_diff = max(max_diff, max(abs(x - y) for x, y in zip(r, p)))
        agree += r.index(max(r)) == p.index(max(p))
    ok = max_diff <= a.atol
    print(f"{'PASS' if ok else 'FAIL'}: {len(texts)} texts, max |prob diff| = {max_diff:.3g} "
          f"(atol {a.atol:g}), argmax agreement {agree}/{len(texts)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
