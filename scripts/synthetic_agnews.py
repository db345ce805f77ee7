#!/usr/bin/env python3
"""Writes a synthetic AG News train set of N rows from the repo's 9,999 rows, for benchmarks
of data at scale (nothing is downloaded).

Row i is row i mod 9,999 of data/ag_news/train.csv (its class kept) with one word of its
description swapped for a word drawn from the whole set, so repeated rows differ and the
vocabulary looks like a real corpus's. The output is AG News' own headerless CSV
(class_index,title,description, every field quoted); a name ending in .gz is gzip-compressed.
The same N and --seed give the same file.

    python3 scripts/synthetic_agnews.py 120000 /tmp/agnews-120k.csv
    python3 scripts/synthetic_agnews.py 3600000 /tmp/agnews-3.6m.csv --seed 7
"""

import argparse
import csv
import gzip
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int, help="rows to write")
    parser.add_argument("out", type=Path, help="the CSV to write (.gz: gzip-compressed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--source", type=Path, default=ROOT / "data/ag_news/train.csv", help="rows to start from"
    )
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("rows must be at least 1")
    with open(args.source, newline="", encoding="utf-8") as f:
        source = [row for row in csv.reader(f) if len(row) == 3]
    words = [w for _, _, description in source for w in description.split()]
    rng = random.Random(args.seed)
    opener = gzip.open if args.out.suffix == ".gz" else open
    with opener(args.out, "wt", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for i in range(args.rows):
            label, title, description = source[i % len(source)]
            if i >= len(source):
                tokens = description.split()
                if tokens:
                    tokens[rng.randrange(len(tokens))] = rng.choice(words)
                description = " ".join(tokens)
            writer.writerow((label, title, description))
    print(f"wrote {args.rows} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
