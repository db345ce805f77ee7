#!/usr/bin/env python3
"""Writes tests/fixtures/columnar/: the first 300 rows of data/examples/sports_train.csv as a
Parquet file written by pyarrow (Snappy, pyarrow's default) and as a folder written by Hugging
Face `datasets`' save_to_disk, the two columnar formats pipe reads. Needs pyarrow and datasets:

    /path/to/venv/bin/python scripts/make_columnar_fixtures.py
"""

import csv
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/columnar"


def main() -> None:
    with open(ROOT / "data/examples/sports_train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:300]
    table = pa.table({"text": [r["text"] for r in rows], "topic": [r["topic"] for r in rows]})
    OUT.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, OUT / "sports_train.parquet")
    # As the hub stores a classification set: the label a ClassLabel (int64 class indices).
    names = ["other", "sports"]
    features = datasets.Features(
        {"text": datasets.Value("string"), "topic": datasets.ClassLabel(names=names)}
    )
    dataset = datasets.Dataset.from_dict(
        {"text": [r["text"] for r in rows], "topic": [names.index(r["topic"]) for r in rows]},
        features=features,
    )
    dataset.save_to_disk(str(OUT / "sports_train_saved"))


if __name__ == "__main__":
    main()
