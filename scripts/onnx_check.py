#!/usr/bin/env python3
"""Checks a `pipe export --format onnx` folder in onnxruntime against `pipe predict`.

    python scripts/onnx_check.py EXPORT_DIR RUN_DIR --data ROWS.csv [--pipe PATH] [--tolerance 1e-4]

Runs `pipe predict RUN_DIR --data ROWS --json` for pipe's probabilities and the texts it read,
tokenizes those texts with the exported tokenizer.json as pipe_onnx.json says (truncation to
max_length, padding to max_length or to each batch's longest row), runs model.onnx in
onnxruntime on CPU, and prints the largest absolute difference between the two sets of
probabilities. Exit status 1 when it is above the tolerance or a label differs, 2 on bad use.
Needs onnxruntime, tokenizers and numpy (`pip install onnxruntime tokenizers numpy`).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def pipe_predictions(pipe, run, data):
    out = subprocess.run(
        [pipe, "predict", str(run), "--data", str(data), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in rows if r["label"] is not None]


def onnx_probabilities(export, texts, batch_size):
    config = json.loads((export / "pipe_onnx.json").read_text())
    vec = config["vectorizer"]
    tokenizer = Tokenizer.from_file(str(export / vec["tokenizer"]))
    tokenizer.enable_truncation(vec["max_length"])
    if vec["padding"] == "max_length":
        tokenizer.enable_padding(pad_id=vec["pad_id"], length=vec["max_length"])
    else:
        tokenizer.enable_padding(pad_id=vec["pad_id"])
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    assert wanted == [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in wanted]
    probabilities = []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(texts[start : start + batch_size])
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (probs,) = session.run(["probabilities"], {k: feeds[k] for k in wanted})
        probabilities.append(probs)
    return config["labels"], np.concatenate(probabilities)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--pipe", default="pipe")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    rows = pipe_predictions(args.pipe, args.run, args.data)
    if not rows:
        print("error: pipe predicted no rows", file=sys.stderr)
        return 2
    labels, got = onnx_probabilities(args.export, [r["text"] for r in rows], args.batch_size)
    want = np.array([[r["probabilities"][label] for label in labels] for r in rows])
    diff = float(np.abs(got - want).max())
    label_mismatches = int((got.argmax(1) != want.argmax(1)).sum())
    print(
        f"rows {len(rows)}  max |onnxruntime - pipe predict| {diff:.3g}  "
        f"labels differing {label_mismatches}  (onnxruntime {ort.__version__})"
    )
    return 0 if diff <= args.tolerance and label_mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
