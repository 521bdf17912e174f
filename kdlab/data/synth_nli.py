"""The embedded NLI corpus: SYNTHETIC sentence-pair teaching data, made by kdlab (``--data embedded-nli``).

MNLI-shaped in domain (columns ``sentence1``, ``sentence2``, ``gold_label``; 3 classes entailment / neutral /
contradiction) about everyday scenes: "two children are playing a guitar in the park". SciTail-shaped out of
domain (``premise``, ``hypothesis``, ``label``; 2 classes entails / neutral) about science facts, scored through
the MNLI task's built-in mapping (entailment -> entails, neutral and contradiction -> neutral).

How a pair gets its label (in domain): the hypothesis is built from the premise's scene.
- entailment: a generalisation of it (a hypernym of the subject, of the activity or of the place), or the scene
  with the place left out;
- contradiction: an incompatible activity or place, or "nobody is ...";
- neutral: the scene (or part of it) plus a purpose or a detail the premise does not give.
Out of domain: a fact "X <process> Y in Z" with a hypothesis that restates part of it (entails) or adds a claim
it does not make (neutral). 3 % of every split has its label replaced by another class (``NOISE_RATE``).

Deterministic (one ``random.Random(seed)``): ``python -m kdlab.data.synth_nli data/embedded-nli`` rewrites the
committed files byte for byte.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

NOISE_RATE = 0.03
SIZES = {"train": 2400, "dev": 600, "ood_science": 600}
LABELS = ("entailment", "neutral", "contradiction")

# subject -> its hypernym
SUBJECTS = [("a man", "a person"), ("a woman", "a person"), ("an old man", "a man"), ("a young woman", "a woman"),
            ("a boy", "a child"), ("a girl", "a child"), ("two children", "some kids"), ("a group of friends",
            "some people"), ("a dog", "an animal"), ("a black dog", "a dog"), ("a cat", "an animal"),
            ("a tall teacher", "a person"), ("a little girl", "a child"), ("three students", "some people")]
# activity -> (its generalisation, activities it excludes)
ACTIVITIES = {
    "is playing a guitar": ("is making music", "sleeping"),
    "is playing the piano": ("is making music", "sleeping"),
    "is reading a book": ("is reading", "running"),
    "is riding a bike": ("is riding something", "sitting"),
    "is eating a sandwich": ("is eating", "sleeping"),
    "is drinking coffee": ("is drinking something", "swimming"),
    "is painting a picture": ("is making art", "sleeping"),
    "is kicking a ball": ("is playing with a ball", "sitting"),
    "is cooking dinner": ("is preparing food", "swimming"),
    "is running": ("is moving", "sitting"),
    "is swimming": ("is in the water", "sitting"),
    "is sleeping": ("is resting", "running"),
    "is sitting on a bench": ("is sitting", "running"),
    "is climbing a tree": ("is climbing", "sleeping"),
}
EXCLUDED = {"sleeping": "is sleeping", "running": "is running", "sitting": "is sitting down",
            "swimming": "is swimming"}
# place -> (its generalisation, an incompatible place)
PLACES = {"in the park": ("outside", "in a kitchen"), "at the beach": ("outdoors", "in an office"),
          "in a kitchen": ("inside a house", "on a mountain"), "in the garden": ("outside", "in a library"),
          "on a busy street": ("in a city", "in a quiet forest"), "in a library": ("inside", "at the beach"),
          "in the living room": ("at home", "in the ocean"), "near a river": ("outdoors", "in a classroom"),
          "on a mountain": ("outdoors", "in a kitchen"), "in a classroom": ("at school", "on a boat")}
PURPOSES = ["for a competition", "to impress a friend", "because it is a holiday", "for the first time",
            "with a big smile", "while it is raining", "before going to work", "with a friend", "for money",
            "after a long day"]

# out of domain: science facts (subject, process, product, where) and unrelated claims
FACTS = [("plants", "use sunlight to make", "food", "in their leaves"),
         ("the heart", "pumps", "blood", "through the body"),
         ("volcanoes", "release", "lava and gas", "during an eruption"),
         ("bees", "carry", "pollen", "between flowers"),
         ("the moon", "causes", "tides", "in the oceans"),
         ("glaciers", "carve", "valleys", "over thousands of years"),
         ("cells", "divide to produce", "new cells", "during growth"),
         ("the lungs", "take in", "oxygen", "when we breathe"),
         ("bacteria", "break down", "dead matter", "in the soil"),
         ("wind", "moves", "sand", "across deserts"),
         ("the sun", "heats", "the surface of the earth", "during the day"),
         ("rivers", "deposit", "sediment", "at their mouths"),
         ("magnets", "attract", "iron", "at a distance"),
         ("roots", "absorb", "water", "from the ground"),
         ("earthquakes", "shake", "the ground", "along faults"),
         ("the kidneys", "filter", "the blood", "all day")]
CLAIMS = ["can only do this at night", "can work without any energy", "can be found only in cold places",
          "can stop completely in winter", "can be seen from space", "can change colour in the dark",
          "can do this only once a year", "can be made of pure metal"]


def _pair(rng: random.Random, label: str) -> tuple[str, str]:
    subj, subj_up = rng.choice(SUBJECTS)
    act = rng.choice(list(ACTIVITIES))
    place = rng.choice(list(PLACES))
    premise = f"{subj} {act} {place}."
    if label == "entailment":
        how = rng.choice(("subject", "activity", "place", "drop"))
        if how == "subject":
            hyp = f"{subj_up} {act} {place}."
        elif how == "activity":
            hyp = f"{subj} {ACTIVITIES[act][0]}."
        elif how == "place":
            hyp = f"{subj} is {PLACES[place][0]}."
        else:
            hyp = f"{subj} {act}."
    elif label == "contradiction":
        how = rng.choice(("activity", "place", "nobody"))
        if how == "activity":
            hyp = f"{subj} {EXCLUDED[ACTIVITIES[act][1]]} {place}."
        elif how == "place":
            hyp = f"{subj} {act} {PLACES[place][1]}."
        else:
            hyp = f"nobody {act}."
    else:
        how = rng.choice(("purpose", "subject"))
        hyp = f"{subj if how == 'purpose' else subj_up} {act} {rng.choice(PURPOSES)}."
    return premise[0].upper() + premise[1:], hyp[0].upper() + hyp[1:]


def _fact(rng: random.Random, label: str) -> tuple[str, str]:
    subj, proc, prod, where = rng.choice(FACTS)
    premise = f"{subj} {proc} {prod} {where}."
    if label == "entails":
        hyp = rng.choice((f"{subj} {proc} {prod}.", f"something {proc} {prod} {where}."))
    else:
        other = rng.choice([f for f in FACTS if f[0] != subj])
        hyp = rng.choice((f"{subj} {rng.choice(CLAIMS)}.", f"{subj} and {other[0]} depend on each other."))
    return premise[0].upper() + premise[1:], hyp[0].upper() + hyp[1:]


def generate(seed: int = 13) -> dict[str, list[tuple[str, str, str]]]:
    """{split: [(text a, text b, label)]} with balanced labels, then NOISE_RATE of each split relabelled."""
    rng = random.Random(seed)
    out = {}
    for split, n in SIZES.items():
        labels = ("entails", "neutral") if split.startswith("ood") else LABELS
        make = _fact if split.startswith("ood") else _pair
        rows = []
        for i in range(n):
            y = labels[i % len(labels)]
            rows.append((*make(rng, y), y))
        rng.shuffle(rows)
        for i in rng.sample(range(n), round(NOISE_RATE * n)):
            a, b, y = rows[i]
            rows[i] = (a, b, rng.choice([x for x in labels if x != y]))
        out[split] = rows
    return out


HEADERS = {"train": ("sentence1", "sentence2", "gold_label"), "dev": ("sentence1", "sentence2", "gold_label"),
           "ood_science": ("premise", "hypothesis", "label")}


def write(folder, seed: int = 13) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in generate(seed).items():
        p = folder / f"{split}.tsv"
        p.write_text("\t".join(HEADERS[split]) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
        paths[split] = p
    return paths


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for split, p in write(argv[0] if argv else "data/embedded-nli").items():
        print(f"{split}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
