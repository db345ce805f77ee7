#!/usr/bin/env python3
"""PyTorch + transformers beside `pipe bench --checkpoint DIR`: one fine-tuning step and one
inference batch of DIR's `AutoModelForSequenceClassification` (4 labels, a new head), at the
shapes of ../shared/peers/torch_model_b.py: batch 32, length 128, AdamW lr 3e-5, weight decay
0.01. Inputs are synthetic token ids below the checkpoint's vocabulary, an attention mask of
ones. Prints the same JSON lines as the peers' scripts (model "B"), so `pipe bench` pairs them.

Run by `pipe bench --model bert --checkpoint DIR --peers-python PY`; by hand:
    python scripts/torch_family_bench.py --checkpoint DIR --peers-dir ../shared/peers
"""

import argparse
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a folder with config.json and model.safetensors")
    p.add_argument("--peers-dir", default="../shared/peers", help="where the peers' common.py is")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--phases", default="train,infer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast", default="", choices=["", "bf16"])
    return p.parse_args()


def main():
    args = parse_args()
    sys.path.insert(0, os.path.abspath(args.peers_dir))
    import common  # the peers' JSON lines and timing summary

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint, num_labels=4).to(args.device)
    cfg = model.config
    total = sum(p.numel() for p in model.parameters())
    attn = getattr(cfg, "_attn_implementation", None)
    common.log(f"torch {torch.__version__}, transformers {transformers.__version__}: "
               f"{cfg.model_type}, params {total:,}, attn {attn}")
    dev_type = "cuda" if args.device.startswith("cuda") else "cpu"
    extra = {"autocast": args.autocast or "none", "data": "synthetic", "seq_len": args.seq, "params": total,
             "attn": attn, "model_type": cfg.model_type, "transformers_version": transformers.__version__,
             "device": args.device, "intra_op": torch.get_num_threads(),
             "inter_op": torch.get_num_interop_threads()}
    n = args.warmup + args.steps
    g = torch.Generator().manual_seed(args.seed)
    # Token-type inputs only where the family has them (DistilBERT, ModernBERT have none).
    types = getattr(cfg, "type_vocab_size", 0) or 0

    def batch_inputs():
        ids = torch.randint(5, cfg.vocab_size, (args.batch, args.seq), generator=g)
        x = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if types > 0 and cfg.model_type not in ("distilbert", "modernbert"):
            x["token_type_ids"] = torch.zeros_like(ids)
        return {k: v.to(args.device) for k, v in x.items()}

    def autocast():
        return torch.autocast(device_type=dev_type, dtype=torch.bfloat16, enabled=bool(args.autocast))

    phases = args.phases.split(",")
    if "train" in phases:
        data = [batch_inputs() for _ in range(n)]
        labels = [torch.randint(0, 4, (args.batch,), generator=g).to(args.device) for _ in range(n)]
        opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
        model.train()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            with autocast():
                out = model(**data[i], labels=labels[i])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            out.loss.item()
            times.append(time.perf_counter() - t0)
        rec = common.base_record("pytorch", torch.__version__, "B", "train", "default",
                                 {"batch": args.batch, **extra})
        rec.update(common.summarize(times, args.batch, args.warmup))
        common.emit(rec)
    if "infer" in phases:
        data = [batch_inputs() for _ in range(n)]
        model.eval()
        times = []
        with torch.inference_mode():
            for i in range(n):
                t0 = time.perf_counter()
                with autocast():
                    logits = model(**data[i]).logits
                torch.softmax(logits.float(), dim=-1).cpu().numpy()
                times.append(time.perf_counter() - t0)
        rec = common.base_record("pytorch", torch.__version__, "B", "infer", "default",
                                 {"batch": args.batch, **extra})
        rec.update(common.summarize(times, args.batch, args.warmup))
        common.emit(rec)


if __name__ == "__main__":
    main()
