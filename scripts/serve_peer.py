"""The peer of `pipe serve` in scripts/serve-bench.sh: FastAPI + uvicorn running transformers'
text-classification pipeline on a `pipe export --format hf` folder (the same weights), with
pipe's request shape, so that one client drives both.

    python scripts/serve_peer.py HF_DIR PORT
"""

import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

hf_dir, port = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(2)
classify = pipeline("text-classification", model=hf_dir, tokenizer=hf_dir, device="cpu", top_k=None)
app = FastAPI()


class Texts(BaseModel):
    texts: list[str]


@app.post("/v1/predict")
def predict(body: Texts):
    # A sync endpoint: FastAPI runs it on its thread pool, as a plain deployment would.
    scores = classify(body.texts, truncation=True, max_length=128)
    return {"predictions": [{s["label"]: s["score"] for s in row} for row in scores]}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
