"""Writes tests/fixtures/families/<family>/: a tiny random transformers checkpoint per encoder family,
its tokenizer (trained here on data/ag_news/train.csv) and reference outputs (expected.json).

    /work/venv/bin/python scripts/make_family_fixtures.py          # CPU, ~1 min, offline

Families: bert, distilbert, roberta, xlm_roberta, electra, deberta_v2 (DeBERTa-v3 style), modernbert
(mean pooling) and modernbert_cls (same weights, CLS pooling). See tests/fixtures/families/README.md.

Deterministic: a rerun gives byte-identical files. The `tokenizers` trainers are not deterministic
(hash-map order), so WordPiece is trained as a plain BPE over a remapped alphabet (see `wordpiece`)
and the Unigram pieces are kept but re-scored from integer counts (one hard-EM step, see `unigram`).
"""
import copy
import csv
import json
import math
import os
from collections import Counter
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/families"
LABELS = ["World", "Sports", "Business", "Sci/Tech"]  # AG News class index 1..4 -> label 0..3
MAX_LEN = 24
TARGET_LENGTHS = (14, 6)  # real lengths wanted for rows 1 and 2 (row 0 is truncated to MAX_LEN)
INIT = ("built under torch.manual_seed(0), then every parameter re-drawn from torch.randn with "
        "torch.Generator().manual_seed(seed) in named_parameters() order, by owning module type: "
        "nn.LayerNorm weight = 1+0.1r, every bias (LayerNorm biases included) = 0.1r, nn.Embedding "
        "weight = 0.5r, nn.Linear weight = 0.2r")

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def read_texts(name):
    rows = csv.reader(open(ROOT / "data/ag_news" / name, newline="", encoding="utf-8"))
    return [(int(c), f"{t} {d}") for c, t, d in rows]


TRAIN = [t for _, t in read_texts("train.csv")]
TEST = read_texts("test.csv")

# ---------------------------------------------------------------- tokenizers


PUA = 0xF0000  # continuation characters are trained as private-use characters, see wordpiece()


def wordpiece():
    """BERT uncased WordPiece, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.

    tokenizers' WordPieceTrainer gives the '##x' symbols ids in hash-map order, and those ids break
    ties between equally frequent merges, so its vocabulary changes from run to run. Instead, the
    same BPE training runs with every non-initial character c of a word written as chr(PUA + ord(c)):
    the alphabet is then sorted by code point and ties are broken by (deterministic) ids. Pieces
    are mapped back afterwards ('x' + PUA chars -> word-initial piece, all PUA -> '##' piece)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = []
    for text in TRAIN:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            assert all(ord(c) < 0x10000 for c in w), w
            words.append(w[0] + "".join(chr(PUA + ord(c)) for c in w[1:]))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bpe.train_from_iterator([" ".join(words[i:i + 1000]) for i in range(0, len(words), 1000)],
                            trainers.BpeTrainer(vocab_size=500, min_frequency=2, special_tokens=specials,
                                                show_progress=False))
    unpua = lambda t: "".join(chr(ord(c) - PUA) if ord(c) >= PUA else c for c in t)
    ordered = [t for t, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])]
    vocab = {}
    for t in ordered:
        piece = t if t in specials else ("##" + unpua(t) if ord(t[0]) >= PUA else unpua(t))
        assert t in specials or all(ord(c) >= PUA for c in t[1:]), t
        vocab.setdefault(piece, len(vocab))
    assert len(vocab) == len(ordered)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(specials)
    return tok, dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                     mask_token="[MASK]")


def byte_level_bpe(specials_first, vocab_size):
    trained = tokenizers.ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    trained.train_from_iterator(TRAIN, vocab_size=vocab_size, min_frequency=2, special_tokens=specials_first,
                                 show_progress=False)
    tok = trained._tokenizer
    tok.decoder = decoders.ByteLevel()
    return tok


def roberta_bpe():
    """RoBERTa: byte-level BPE, <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4, RobertaProcessing."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = byte_level_bpe(specials, 500)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
                     cls_token="<s>", pad_token="<pad>", mask_token="<mask>")


def modernbert_bpe():
    """ModernBERT: byte-level BPE whose specials [UNK] [CLS] [SEP] [PAD] [MASK] come AFTER the BPE
    vocabulary (as in answerdotai/ModernBERT-base, where [PAD] = 50283), TemplateProcessing."""
    tok = byte_level_bpe([], 495)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok.add_special_tokens(specials)
    ids = {s: tok.token_to_id(s) for s in specials}
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return tok, dict(unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                     mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")


def unigram(specials, unk, extra_special, normalizer, single, pair, template_tokens):
    """SentencePiece-style Unigram with a Metaspace pre-tokenizer.

    The UnigramTrainer's piece set is stable but its scores jitter by ~1e-4 between runs (hash-order
    float sums), so the pieces are re-scored deterministically: the corpus is segmented (Viterbi)
    with the trained model, and each piece gets log(count / total) (count 0 -> log(0.5 / total)).
    Pieces are then ordered by (score desc, piece); the specials keep ids 0..3 with score 0.0."""
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.train_from_iterator(TRAIN, trainers.UnigramTrainer(vocab_size=499, special_tokens=specials,
                                                           unk_token=unk, max_piece_length=16,
                                                           show_progress=False))
    pieces = [p for p, _ in json.loads(tok.to_str())["model"]["vocab"] if p not in specials]
    counts = Counter(t for enc in tok.encode_batch(TRAIN, add_special_tokens=False) for t in enc.tokens)
    total = sum(counts[p] for p in pieces)
    scored = sorted(((p, math.log(counts[p] / total) if counts[p] else math.log(0.5 / total)) for p in pieces),
                    key=lambda ps: (-ps[1], ps[0]))
    vocab = [(s, 0.0) for s in specials] + scored
    out = Tokenizer(models.Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False))
    out.normalizer = normalizer
    out.pre_tokenizer = pre
    out.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    out.add_special_tokens(specials + [extra_special])
    out.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(s, out.token_to_id(s)) for s in template_tokens])
    return out


def xlmr_unigram():
    """XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last; normalizer Replace(' {2,}', ' ') (the real
    one also has a Precompiled NFKC charsmap first, omitted: identity on this ASCII data)."""
    tok = unigram(["<s>", "<pad>", "</s>", "<unk>"], "<unk>", "<mask>",
                  normalizers.Sequence([normalizers.Replace(Regex(" {2,}"), " ")]),
                  "<s>:0 $A:0 </s>:0", "<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0", ["<s>", "</s>"])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
                     cls_token="<s>", pad_token="<pad>", mask_token="<mask>")


def deberta_unigram():
    """DeBERTa-v3: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, [MASK] last; normalizer Strip + Replace(' {2,}', ' ')
    (DebertaV2Converter's, less the Precompiled charsmap)."""
    tok = unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]", "[MASK]",
                  normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]),
                  "[CLS]:0 $A:0 [SEP]:0", "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", ["[CLS]", "[SEP]"])
    return tok, dict(bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]",
                     cls_token="[CLS]", pad_token="[PAD]", mask_token="[MASK]")


# ---------------------------------------------------------------- families

COMMON = dict(num_labels=4, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

FAMILIES = {
    "bert": dict(seed=1, tok="wordpiece", cls="BertForSequenceClassification", config=lambda ids: transformers.BertConfig(
        vocab_size=ids["size"], max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
        pad_token_id=ids["pad"], **BERT_LIKE, **COMMON)),
    "distilbert": dict(seed=2, tok="wordpiece", cls="DistilBertForSequenceClassification", config=lambda ids: transformers.DistilBertConfig(
        vocab_size=ids["size"], max_position_embeddings=64, sinusoidal_pos_embds=False, n_layers=2, n_heads=4,
        dim=32, hidden_dim=64, dropout=0.0, attention_dropout=0.0, activation="gelu", qa_dropout=0.0,
        seq_classif_dropout=0.0, pad_token_id=ids["pad"], **COMMON)),
    "roberta": dict(seed=3, tok="roberta", cls="RobertaForSequenceClassification", config=lambda ids: transformers.RobertaConfig(
        vocab_size=ids["size"], max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"], **BERT_LIKE, **COMMON)),
    "xlm_roberta": dict(seed=4, tok="xlmr", cls="XLMRobertaForSequenceClassification", config=lambda ids: transformers.XLMRobertaConfig(
        vocab_size=ids["size"], max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"], **BERT_LIKE, **COMMON)),
    "electra": dict(seed=5, tok="wordpiece", cls="ElectraForSequenceClassification", config=lambda ids: transformers.ElectraConfig(
        vocab_size=ids["size"], embedding_size=16, max_position_embeddings=64, type_vocab_size=2,
        layer_norm_eps=1e-12, pad_token_id=ids["pad"], **BERT_LIKE, **COMMON)),
    "deberta_v2": dict(seed=6, tok="deberta", cls="DebertaV2ForSequenceClassification", config=lambda ids: transformers.DebertaV2Config(
        vocab_size=ids["size"], max_position_embeddings=64, type_vocab_size=0, layer_norm_eps=1e-7,
        relative_attention=True, max_relative_positions=-1, position_buckets=8, pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, pooler_hidden_size=32,
        pooler_dropout=0.0, pooler_hidden_act="gelu", pad_token_id=ids["pad"], **BERT_LIKE, **COMMON)),
}
for _name, _pool in (("modernbert", "mean"), ("modernbert_cls", "cls")):
    FAMILIES[_name] = dict(seed=7, tok="modernbert", cls="ModernBertForSequenceClassification",
                           config=lambda ids, pool=_pool: transformers.ModernBertConfig(
        vocab_size=ids["size"], hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        hidden_activation="gelu", max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=8,
        norm_eps=1e-5, norm_bias=False, attention_bias=False, mlp_bias=False, classifier_bias=False,
        classifier_activation="gelu", classifier_pooling=pool, attention_dropout=0.0, embedding_dropout=0.0,
        mlp_dropout=0.0, classifier_dropout=0.0, pad_token_id=ids["pad"], bos_token_id=ids["cls"],
        eos_token_id=ids["sep"], cls_token_id=ids["cls"], sep_token_id=ids["sep"], **COMMON))

TOKENIZERS = {"wordpiece": wordpiece, "roberta": roberta_bpe, "modernbert": modernbert_bpe,
              "xlmr": xlmr_unigram, "deberta": deberta_unigram}
INPUT_NAMES = {"bert": ["input_ids", "token_type_ids", "attention_mask"],
               "electra": ["input_ids", "token_type_ids", "attention_mask"]}
HIDDEN_NOTE = {
    "default": "output_hidden_states=True, [num_layers+1, B, L, H]: embedding output, then each layer's output",
    "modernbert": "output_hidden_states=True, [4, B, L, H]: embedding output (tok_embeddings + norm), layer 0 "
                  "and layer 1 outputs, then the LAST entry is final_norm(layer 2 output) = last_hidden_state",
    "electra": "output_hidden_states=True, [3, B, L, H]: embedding output AFTER embeddings_project (H=32), "
               "then each layer's output",
    "deberta_v2": "output_hidden_states=True, [3, B, L, H]: embedding output (LayerNorm(word emb) * mask, padded "
                  "rows zero), then each layer's output",
}
LAST_LINEAR = {"roberta": "classifier.out_proj", "xlm_roberta": "classifier.out_proj",
               "electra": "classifier.out_proj"}

# ---------------------------------------------------------------- helpers


def f32(x):
    """Nested lists; each float the shortest decimal that round-trips its float32 value."""
    a = np.asarray(x.detach().cpu().numpy() if torch.is_tensor(x) else x)
    if a.dtype.kind in "iub":
        return a.tolist()
    a = a.astype(np.float32)
    flat = [float(np.format_float_positional(v, unique=True)) for v in a.ravel()]
    return np.array(flat, dtype=object).reshape(a.shape).tolist() if a.ndim else flat[0]


def reinit(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            owner, leaf = model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]
            r = torch.randn(p.shape, generator=g)
            if isinstance(owner, nn.LayerNorm) and leaf == "weight":
                p.copy_(1 + 0.1 * r)
            elif leaf == "bias":
                p.copy_(0.1 * r)
            elif isinstance(owner, nn.Embedding):
                p.copy_(0.5 * r)
            elif isinstance(owner, nn.Linear):
                p.copy_(0.2 * r)
            else:
                raise TypeError(f"{name}: unexpected owner {type(owner).__name__}")


def save_tokenizer(tok, specials, folder, input_names):
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, padding_side="right",
                                   truncation_side="right", model_input_names=input_names, **specials)
    fast.save_pretrained(folder)


def choose_texts(loaded):
    """Rows 1 and 2 are cut to the longest word prefix whose real length is <= 14 / <= 6 tokens
    under every family's tokenizer, so the same 3 texts serve all families."""
    texts = [TEST[0][1]]
    for row, target in zip((1, 2), TARGET_LENGTHS):
        words = TEST[row][1].split(" ")
        k = max(k for k in range(1, len(words) + 1)
                if all(len(t(" ".join(words[:k]))["input_ids"]) <= target for t in loaded.values()))
        texts.append(" ".join(words[:k]))
    return texts


def deberta_relative_positions(L, bucket, max_pos):
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position
    x = torch.zeros(1, L, 1)
    return build_relative_position(x, x, bucket_size=bucket, max_position=max_pos)[0]


# ---------------------------------------------------------------- main


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    built = {}
    for kind, fn in TOKENIZERS.items():
        built[kind] = fn()

    folders = {}
    for name, fam in FAMILIES.items():
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            f.unlink()
        tok, specials = built[fam["tok"]]
        save_tokenizer(tok, specials, folder, INPUT_NAMES.get(name, ["input_ids", "attention_mask"]))
        folders[name] = folder
    loaded = {n: AutoTokenizer.from_pretrained(f) for n, f in folders.items()}
    texts = choose_texts(loaded)
    labels = torch.tensor([0, 3, 1])

    summary = {}
    for name, fam in FAMILIES.items():
        folder, tk = folders[name], loaded[name]
        ids = dict(size=len(tk), pad=tk.pad_token_id, bos=tk.bos_token_id, eos=tk.eos_token_id,
                   cls=tk.cls_token_id, sep=tk.sep_token_id)
        config = fam["config"](ids)
        cls = getattr(transformers, fam["cls"])
        torch.manual_seed(0)
        model = cls._from_config(config, attn_implementation="eager")
        reinit(model, fam["seed"])
        model.eval()
        model.save_pretrained(folder)
        os.chmod(folder / "model.safetensors", 0o644)

        enc = tk(texts, padding="longest", truncation=True, max_length=MAX_LEN, return_tensors="pt")
        assert sorted(enc.keys()) == sorted(tk.model_input_names), (name, enc.keys())
        base = model.base_model
        last_linear = LAST_LINEAR.get(name, "classifier")
        captured = {}
        h1 = model.get_submodule(last_linear).register_forward_hook(
            lambda m, i, o: captured.__setitem__("classifier_input", i[0].detach().clone()))
        h2 = base.register_forward_hook(
            lambda m, i, o: captured.__setitem__("last_hidden_state", o[0].detach().clone()))
        with torch.no_grad():
            out = model(**enc, labels=labels, output_hidden_states=True)
        h1.remove(), h2.remove()
        assert torch.equal(model.get_submodule(last_linear)(captured["classifier_input"]), out.logits)
        loss = nn.functional.cross_entropy(out.logits, labels)
        assert torch.allclose(loss, out.loss)

        trained = copy.deepcopy(model)
        trained.train()
        opt = torch.optim.SGD(trained.parameters(), lr=0.1)
        opt.zero_grad()
        nn.functional.cross_entropy(trained(**enc).logits, labels).backward()
        opt.step()
        trained.eval()
        with torch.no_grad():
            loss_after = nn.functional.cross_entropy(trained(**enc).logits, labels)

        with safetensors.safe_open(folder / "model.safetensors", "pt") as st:
            shapes = {k: list(st.get_slice(k).get_shape()) for k in sorted(st.keys())}
            dtypes = {k: st.get_slice(k).get_dtype() for k in sorted(st.keys())}
        # untruncated, unpadded ids of the first 8 test rows (full text), for an exact tokenizer check
        check_texts = [t for _, t in TEST[:8]]
        exp = {
            "family": name,
            "model_class": fam["cls"],
            "meta": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
                     "numpy": np.__version__, "dtype": "float32", "attn_implementation": "eager",
                     "seed": fam["seed"], "init": INIT, "device": "cpu, torch.set_num_threads(1)"},
            "config": json.loads((folder / "config.json").read_text()),
            "texts": texts,
            "tokenizer_call": f"tokenizer(texts, padding='longest', truncation=True, max_length={MAX_LEN}, "
                              "return_tensors='pt')",
            **{k: f32(v) for k, v in enc.items()},
            "real_lengths": enc["attention_mask"].sum(1).tolist(),
            "untruncated_lengths": [len(tk(t)["input_ids"]) for t in texts],
            "tokens": [tk.convert_ids_to_tokens(r) for r in enc["input_ids"].tolist()],
            "labels": labels.tolist(),
            "last_hidden_state": f32(captured["last_hidden_state"]),
            "hidden_states": f32(torch.stack(out.hidden_states)),
            "hidden_states_note": HIDDEN_NOTE.get(name, HIDDEN_NOTE["default"]),
            "last_linear": last_linear,
            "classifier_input": f32(captured["classifier_input"]),
            "logits": f32(out.logits),
            "loss": f32(loss),
            "loss_after_sgd_step": f32(loss_after),
            "sgd_note": "fresh copy, train mode (dropout 0), SGD lr 0.1 over all parameters, one step, "
                        "loss recomputed in eval mode",
            "num_parameters": model.num_parameters(),
            "num_parameters_base": base.num_parameters(),
            "tensor_names": list(shapes),
            "tensor_shapes": shapes,
            "tensor_dtypes": sorted(set(dtypes.values())),
            "tokenizer_check": {"texts": check_texts, "input_ids": [tk(t)["input_ids"] for t in check_texts],
                                "note": "full test rows 0..7, add_special_tokens=True, no truncation/padding"},
        }
        if name == "modernbert_cls":  # same weights and inputs as modernbert: identical hidden states
            del exp["hidden_states"]
            exp["hidden_states_note"] = "omitted: identical to ../modernbert/expected.json (same weights)"
        if name == "deberta_v2":
            L = enc["input_ids"].shape[1]
            exp["relative_positions"] = f32(deberta_relative_positions(L, 8, 64))
            exp["relative_positions_note"] = (
                f"build_relative_position for L={L}, position_buckets 8, max_position 64: bucketed q-k; "
                "c2p gathers at clamp(r+8,0,15), p2c at clamp(-r+8,0,15)")
        if name.startswith("modernbert"):
            exp["layer_types"] = config.layer_types
            exp["sliding_window_note"] = (
                f"sliding layers attend to keys with |q-k| <= local_attention//2 = {config.local_attention // 2}")
        (folder / "expected.json").write_text(json.dumps(exp, separators=(",", ":")) + "\n")
        summary[name] = dict(real_lengths=exp["real_lengths"], logits=exp["logits"][0], loss=exp["loss"],
                             loss_after=exp["loss_after_sgd_step"], params=exp["num_parameters"],
                             vocab=ids["size"], pad=ids["pad"])
        print(name, summary[name])


if __name__ == "__main__":
    main()
