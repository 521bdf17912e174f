"""Write an unlabeled transfer set for `--transfer`: a seeded sample of N texts of a TSV's first column.

    python scripts/transfer_sample.py ../shared/data/sst2/train.tsv 3000 transfer.txt [--min-words 4] [--seed 1]

Used by the "few labels + transfer set" study in docs/RESULTS.md (the labels are dropped: one text per line).
"""
import argparse
import random

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("tsv")
p.add_argument("n", type=int)
p.add_argument("out")
p.add_argument("--min-words", type=int, default=4)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
with open(a.tsv, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]   # quoting off: a plain tab split, header dropped
random.Random(a.seed).shuffle(rows)
texts = [r[0] for r in rows if len(r[0].split()) >= a.min_words][:a.n]
with open(a.out, "w", encoding="utf-8") as f:
    f.write("\n".join(texts) + "\n")
print(f"{len(texts)} texts -> {a.out}")
