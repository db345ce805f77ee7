"""Writes tests/fixtures/tiny_bert/vocab.txt: a 1,000-entry BERT WordPiece vocabulary (the
tiny_bert fixture's vocab_size) trained on the repo's AG News train rows with the `tokenizers`
trainer, so the BERT pipelines run end to end on tiny_bert in the tests.

    python scripts/make_tiny_vocab.py      # tokenizers 0.23.3 (../shared/peers' venv)

The trainer breaks ties between equally frequent merges in hash order, so a rerun may order
some tokens differently; the committed file is one such output, and the tests only need a
valid WordPiece vocabulary whose ids fit tiny_bert's embedding table.
"""
import csv
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

ROOT = Path(__file__).resolve().parent.parent
rows = csv.reader(open(ROOT / "data/ag_news/train.csv", newline="", encoding="utf-8"))
texts = [f"{title} {description}" for _, title, description in rows]
tokenizer = BertWordPieceTokenizer(lowercase=True)
tokenizer.train_from_iterator(
    texts,
    vocab_size=1000,
    min_frequency=2,
    limit_alphabet=200,
    special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
)
vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
assert [i for _, i in vocab] == list(range(len(vocab))) and len(vocab) <= 1000
out = ROOT / "tests/fixtures/tiny_bert/vocab.txt"
out.write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
print(f"{out}: {len(vocab)} tokens")
