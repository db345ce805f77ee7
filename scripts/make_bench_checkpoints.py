#!/usr/bin/env python3
"""Random checkpoints of each transformer family in all-MiniLM-L6-v2's shape (hidden 384,
6 layers, 12 heads, feed-forward 1536, vocabulary 30522), for `pipe bench --checkpoint DIR`
beside PyTorch on the same weights. Step times do not depend on the weights' values.

Each folder gets config.json + model.safetensors (transformers' `save_pretrained`) and the
tokenizer files of --tokenizer (a WordPiece of 30522 ids, MiniLM's by default): every family
then reads the same rows as the same ids, so the families differ in their layers alone.

    python scripts/make_bench_checkpoints.py OUT_DIR [--tokenizer ../shared/models/all-MiniLM-L6-v2]
writes OUT_DIR/{bert,distilbert,roberta,electra,deberta_v2,modernbert}.
"""

import argparse
import os
import shutil

SHAPE = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
             vocab_size=30522, max_position_embeddings=512)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def configs():
    import transformers as t

    ids = dict(pad_token_id=0)
    return {
        "bert": t.BertConfig(**SHAPE),
        "distilbert": t.DistilBertConfig(dim=384, n_layers=6, n_heads=12, hidden_dim=1536, vocab_size=30522,
                                         max_position_embeddings=512),
        # RoBERTa's positions start after the padding index: two more rows.
        "roberta": t.RobertaConfig(**{**SHAPE, "max_position_embeddings": 514}, pad_token_id=1),
        "electra": t.ElectraConfig(**SHAPE, embedding_size=128),
        "deberta_v2": t.DebertaV2Config(**SHAPE, type_vocab_size=0, relative_attention=True, position_buckets=256,
                                        max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                                        norm_rel_ebd="layer_norm", share_att_key=True,
                                        position_biased_input=False, **ids),
        "modernbert": t.ModernBertConfig(**SHAPE, global_attn_every_n_layers=3, local_attention=128,
                                         cls_token_id=101, sep_token_id=102, bos_token_id=101,
                                         eos_token_id=102, **ids),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--tokenizer", default="../shared/models/all-MiniLM-L6-v2")
    p.add_argument("--families", default=None, help="comma-separated subset (default: all)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    wanted = args.families.split(",") if args.families else None
    for name, cfg in configs().items():
        if wanted and name not in wanted:
            continue
        torch.manual_seed(0)
        model = AutoModel.from_config(cfg)
        folder = os.path.join(args.out, name)
        model.save_pretrained(folder)
        for f in TOKENIZER_FILES:
            src = os.path.join(args.tokenizer, f)
            if os.path.exists(src):
                shutil.copy(src, folder)
        print(f"{folder}: {cfg.model_type}, {model.num_parameters():,} parameters")


if __name__ == "__main__":
    main()
