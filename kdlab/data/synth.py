"""The embedded corpus: SYNTHETIC multi-domain sentiment teaching data, made by kdlab.

Everything here is deterministic: one ``random.Random(seed)`` drives all choices, so
``generate(13)`` always returns the same corpus and ``write(folder)`` the same bytes.

In-domain: movie reviews (``train``, ``dev``). Out-of-domain: restaurant reviews
(``ood_restaurant``) and electronics product reviews (``ood_electronics``), which use their own
aspect words, domain adjectives and sentence shapes but share the generic sentiment words.

How a review gets its label: every clause has a score = polarity x strength, where strength comes
from the adjective (strong / normal / weak), intensifiers ("very", "really", "absolutely" x1.5)
and downtoners ("slightly", "somewhat", "a bit" x0.5). Negation ("not", "never") flips the
polarity and damps the strength (x0.7). In "A but B" the first clause counts 0.3 and the second
1.0, so the label follows the clause after "but". The review score is the sum over its sentences;
the clean label is 1 (positive) when the score is > 0. Reviews whose score is too close to zero
(|score| < MIN_MARGIN = 0.3) are rejected and drawn again, so the clean labels are well defined, yet mixed
reviews (sentences of both polarities) are common. Finally exactly ``NOISE_RATE`` (3 %) of every
split has its label flipped; ``generate_records`` reports which rows (``noisy=True``).

Run ``python -m kdlab.data.synth data/embedded`` to (re)write the committed files.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

NOISE_RATE = 0.03
NEGATION_RATE = 0.15   # share of adjectives that are negated
MIN_MARGIN = 0.3       # reviews with |score| below this are redrawn (clean labels stay well defined)
AGAINST_RATE = 0.15    # share of sentences that go against the review label (mixed reviews)
SIZES = {"train": 2400, "dev": 600, "ood_restaurant": 600, "ood_electronics": 600}
SPLIT_DOMAIN = {
    "train": "movies",
    "dev": "movies",
    "ood_restaurant": "restaurants",
    "ood_electronics": "electronics",
}
FILES = {name: f"{name}.tsv" for name in SIZES}

# ---------------------------------------------------------------------------------------------
# vocabulary: (word, strength); strength 1.4 = strong, 1.0 = normal, 0.35 = weak
GENERIC_POS = [("good", 1.0), ("great", 1.2), ("excellent", 1.4), ("wonderful", 1.4),
               ("enjoyable", 1.0), ("solid", 0.8), ("pleasant", 0.8), ("impressive", 1.2),
               ("fantastic", 1.4), ("nice", 0.7), ("decent", 0.35), ("fine", 0.35),
               ("okay", 0.25)]
GENERIC_NEG = [("bad", 1.0), ("poor", 1.0), ("terrible", 1.4), ("awful", 1.4),
               ("disappointing", 1.2), ("weak", 0.8), ("mediocre", 0.6), ("dreadful", 1.4),
               ("annoying", 0.9), ("underwhelming", 0.7), ("average", 0.3), ("so-so", 0.3)]

DOMAINS = {
    "movies": {
        "aspects": ["plot", "acting", "script", "soundtrack", "cinematography", "pacing",
                    "dialogue", "ending", "cast", "direction", "story", "performances",
                    "special effects", "screenplay", "lead actor", "villain"],
        "pos": [("gripping", 1.2), ("moving", 1.0), ("hilarious", 1.2), ("captivating", 1.3),
                ("riveting", 1.3), ("heartfelt", 1.0), ("stunning", 1.3), ("witty", 1.0),
                ("superb", 1.4), ("touching", 1.0), ("memorable", 1.0), ("charming", 0.9)],
        "neg": [("boring", 1.1), ("dull", 1.0), ("predictable", 0.8), ("cliched", 0.8),
                ("slow", 0.7), ("forgettable", 0.9), ("tedious", 1.1), ("pointless", 1.2),
                ("wooden", 1.0), ("incoherent", 1.2), ("overlong", 0.7), ("lifeless", 1.1)],
        "things": ["film", "movie", "picture", "sequel", "thriller", "comedy", "drama"],
        "clause": [
            "the {a} was {x}", "the {a} is {x}", "i found the {a} {x}", "the {a} felt {x}",
            "honestly the {a} was {x}", "the {a} turned out {x}",
        ],
        "whole": ["this {t} is {x}", "what a {x} {t}", "overall a {x} {t}", "it is a {x} {t}",
                  "the whole {t} was {x}"],
        "pos_phrases": [("i would watch it again", 1.0), ("a must see", 1.3),
                        ("i was on the edge of my seat", 1.1), ("worth the ticket", 1.0),
                        ("it stayed with me for days", 1.0)],
        "neg_phrases": [("i walked out halfway", 1.3), ("a waste of two hours", 1.3),
                        ("i nearly fell asleep", 1.1), ("skip this one", 1.0),
                        ("i checked my watch constantly", 1.0)],
        "filler": ["i saw it last weekend", "we watched it at home on a rainy evening",
                   "it runs for about two hours", "the trailer had caught my eye",
                   "it is based on a novel", "my friend recommended it to me",
                   "the theater was half empty", "it opened last month"],
    },
    "restaurants": {
        "aspects": ["food", "service", "waiter", "pasta", "dessert", "ambiance", "portions",
                    "menu", "pizza", "staff", "steak", "soup", "coffee", "wine list",
                    "bread", "sushi"],
        "pos": [("delicious", 1.3), ("tasty", 1.1), ("fresh", 1.0), ("flavorful", 1.1),
                ("friendly", 1.0), ("cozy", 0.9), ("attentive", 1.0), ("generous", 0.9),
                ("mouthwatering", 1.3), ("perfectly cooked", 1.2), ("welcoming", 0.9),
                ("reasonably priced", 0.8)],
        "neg": [("bland", 1.0), ("stale", 1.1), ("greasy", 0.9), ("rude", 1.2),
                ("overpriced", 0.9), ("cold", 0.8), ("soggy", 1.0), ("salty", 0.7),
                ("undercooked", 1.1), ("burnt", 1.1), ("slow", 0.7), ("dirty", 1.2)],
        "things": ["place", "restaurant", "bistro", "diner", "spot"],
        "clause": [
            "the {a} was {x}", "our {a} was {x}", "the {a} here is {x}", "the {a} tasted {x}",
            "we thought the {a} was {x}", "every time the {a} is {x}",
        ],
        "whole": ["this {t} is {x}", "a {x} little {t}", "overall a {x} {t}",
                  "we had a {x} dinner here"],
        "pos_phrases": [("we will definitely come back", 1.2), ("highly recommend it", 1.3),
                        ("we left full and happy", 1.1), ("best meal in town", 1.3),
                        ("worth every penny", 1.1)],
        "neg_phrases": [("we will never come back", 1.3), ("we waited an hour for a table", 1.0),
                        ("i got sick afterwards", 1.4), ("we sent the plates back", 1.1),
                        ("not worth the money", 1.1)],
        "filler": ["we went there for a birthday dinner", "we booked a table for four",
                   "it is next to the train station", "i ordered the special of the day",
                   "parking was easy to find", "we came on a friday night",
                   "they opened last spring", "my wife had the salad"],
    },
    "electronics": {
        "aspects": ["battery", "screen", "charger", "keyboard", "speakers", "camera",
                    "build quality", "software", "setup", "touchpad", "fan", "display",
                    "bluetooth connection", "microphone", "remote", "case"],
        "pos": [("fast", 1.0), ("sturdy", 1.0), ("responsive", 1.1), ("reliable", 1.1),
                ("crisp", 1.0), ("durable", 1.0), ("intuitive", 1.0), ("bright", 0.8),
                ("long lasting", 1.1), ("snappy", 1.0), ("quiet", 0.7), ("seamless", 1.1)],
        "neg": [("laggy", 1.1), ("flimsy", 1.1), ("buggy", 1.1), ("glitchy", 1.0),
                ("unreliable", 1.2), ("overheating", 1.1), ("defective", 1.4), ("noisy", 0.8),
                ("dim", 0.7), ("sluggish", 1.0), ("clunky", 0.8), ("fragile", 0.9)],
        "things": ["device", "laptop", "gadget", "product", "unit", "phone"],
        "clause": [
            "the {a} is {x}", "the {a} feels {x}", "after two weeks the {a} is still {x}",
            "out of the box the {a} was {x}", "i find the {a} {x}", "the {a} seems {x}",
        ],
        "whole": ["this {t} is {x}", "a {x} {t} for the price", "overall a {x} {t}",
                  "the {t} itself is {x}"],
        "pos_phrases": [("works exactly as advertised", 1.2), ("five stars from me", 1.3),
                        ("i would buy it again", 1.2), ("great value for money", 1.2),
                        ("it just works", 1.0)],
        "neg_phrases": [("it stopped working after a week", 1.4), ("i returned it", 1.2),
                        ("customer support never replied", 1.1), ("save your money", 1.3),
                        ("it died within a month", 1.4)],
        "filler": ["i bought it last month", "it arrived two days after ordering",
                   "i use it mostly for work", "the box included a cable and a manual",
                   "i upgraded from an older model", "it comes in black and silver",
                   "i have had it for three weeks", "my son uses it for school"],
    },
}

INTENSIFIERS = ["very", "really", "absolutely", "incredibly", "extremely", "truly"]
DOWNTONERS = ["slightly", "somewhat", "a bit", "a little", "mildly", "fairly"]
CONNECT = ["", "also ", "and ", "plus ", "on top of that ", "to be fair "]


_A_AN = re.compile(r"\b([Aa]) ([aeiou])")


@dataclass
class Record:
    text: str
    label: int        # the label that is written (after noise)
    clean_label: int  # the label the scoring rule gives
    noisy: bool       # True when ``label`` was flipped
    score: float      # the review score (sign = clean label)
    domain: str


class _Gen:
    def __init__(self, rng: random.Random, domain: str):
        self.rng = rng
        self.domain = domain
        self.d = DOMAINS[domain]

    def adjective(self, pol: int):
        """A (word, strength) pair: generic or domain-specific, positive (pol=1) or negative."""
        r = self.rng
        generic = GENERIC_POS if pol > 0 else GENERIC_NEG
        specific = self.d["pos"] if pol > 0 else self.d["neg"]
        return r.choice(generic) if r.random() < 0.45 else r.choice(specific)

    def modified(self, pol: int):
        """Adjective with optional intensifier / downtoner / negation. Returns (phrase, score)."""
        r = self.rng
        negate = r.random() < NEGATION_RATE
        # with negation the adjective has the opposite surface polarity: "not good" is negative
        word, strength = self.adjective(-pol if negate else pol)
        u = r.random()
        if negate:
            # "not very good" is mildly negative; "never boring" is positive
            neg = r.choice(["not", "not", "never", "hardly", "not at all", "not very"])
            if neg == "not very":
                word, strength = f"not very {word}", strength * 0.5
            else:
                word, strength = f"{neg} {word}", strength * 0.7
        elif u < 0.22 and " " not in word:
            word, strength = f"{r.choice(INTENSIFIERS)} {word}", strength * 1.5
        elif u < 0.40 and " " not in word:
            word, strength = f"{r.choice(DOWNTONERS)} {word}", strength * 0.5
        return word, pol * strength

    def clause(self, pol: int):
        r = self.rng
        phrase, score = self.modified(pol)
        if r.random() < 0.75:
            tmpl = r.choice(self.d["clause"])
            text = tmpl.format(a=r.choice(self.d["aspects"]), x=phrase)
        else:
            tmpl = r.choice(self.d["whole"])
            if "not" in phrase.split() or "never" in phrase.split() or "hardly" in phrase.split():
                # "what a not good film" is not English: use a plain copula shape instead
                tmpl = "this {t} is {x}"
            text = tmpl.format(t=r.choice(self.d["things"]), x=phrase)
        return text, score

    def sentence(self, pol: int, first: bool = False):
        """One sentence whose score has sign ``pol`` (except contrast clauses, scored below)."""
        r = self.rng
        u = r.random()
        if u < 0.25:
            # contrast: "A but B"; label follows B
            a, sa = self.clause(-pol)
            b, sb = self.clause(pol)
            conj = r.choice(["but", "but", "but", "although", "however"])
            if conj == "although":
                # "although A, B" -> still B decides
                return f"although {a}, {b}", 0.3 * sa + sb
            if conj == "however":
                return f"{a}. however, {b}", 0.3 * sa + sb
            return f"{a} but {b}", 0.3 * sa + sb
        if u < 0.37:
            phrase, s = r.choice(self.d["pos_phrases"] if pol > 0 else self.d["neg_phrases"])
            return phrase, pol * s
        if u < 0.47:
            a, sa = self.clause(pol)
            b, sb = self.clause(pol)
            return f"{a} and {b}", sa + sb
        text, s = self.clause(pol)
        return ("" if first else r.choice(CONNECT)) + text, s

    def review(self, target: int):
        r = self.rng
        pol_target = 1 if target == 1 else -1
        while True:
            n = r.choice([1, 1, 2, 2, 2, 3, 3, 4])
            parts, score = [], 0.0
            has_filler = False
            for _ in range(n):
                if not has_filler and n > 1 and r.random() < 0.2:
                    parts.append(r.choice(self.d["filler"]))
                    has_filler = True
                    continue
                # mixed reviews: a sentence may go against the review's overall direction
                pol = pol_target if r.random() >= AGAINST_RATE else -pol_target
                text, s = self.sentence(pol, first=not parts)
                parts.append(text)
                score += s
            if not parts or (has_filler and len(parts) == 1):
                continue
            if abs(score) < MIN_MARGIN or (score > 0) != (target == 1):
                continue
            sents = [p[0].upper() + p[1:] for p in parts]
            text = " ".join(s + ("." if not s.endswith(".") else "") for s in sents)
            text = text.replace(". however,", ". However,")
            text = _A_AN.sub(r"\1n \2", text)
            return text, score


def generate_records(seed: int = 13) -> dict[str, list[Record]]:
    """The corpus with per-row metadata (clean label, noise flag, score)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[Record]] = {}
    for split, n in SIZES.items():
        domain = SPLIT_DOMAIN[split]
        gen = _Gen(rng, domain)
        targets = [i % 2 for i in range(n)]
        rng.shuffle(targets)
        rows: list[Record] = []
        for t in targets:
            while True:
                text, score = gen.review(t)
                if text not in seen:
                    seen.add(text)
                    break
            rows.append(Record(text, t, t, False, round(score, 4), domain))
        for i in sorted(rng.sample(range(n), round(n * NOISE_RATE))):
            rows[i].label = 1 - rows[i].label
            rows[i].noisy = True
        out[split] = rows
    return out


def generate(seed: int = 13) -> dict[str, list[tuple[str, int]]]:
    """``{"train", "dev", "ood_restaurant", "ood_electronics"} -> [(text, label), ...]``."""
    return {k: [(r.text, r.label) for r in v] for k, v in generate_records(seed).items()}


def to_tsv(rows: list[tuple[str, int]]) -> str:
    lines = ["sentence\tlabel"]
    for text, label in rows:
        assert "\t" not in text and "\n" not in text and "\r" not in text
        lines.append(f"{text}\t{label}")
    return "\n".join(lines) + "\n"


def write(folder, seed: int = 13) -> dict[str, Path]:
    """Write the four splits as ``<split>.tsv`` (header ``sentence<TAB>label``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in generate(seed).items():
        p = folder / FILES[split]
        with open(p, "w", encoding="utf-8", newline="\n") as f:
            f.write(to_tsv(rows))
        paths[split] = p
    return paths


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else "data/embedded"
    for split, p in write(folder).items():
        print(f"{split}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
