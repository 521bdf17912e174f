"""An LM corpus: prompt/completion pairs or plain text, from a file or the embedded default.

* ``.jsonl``: one object per line, ``{"prompt": ..., "completion": ...}`` or ``{"text": ...}`` (a plain text is a
  completion with an empty prompt).
* ``.txt`` (any other suffix): one document per non-empty line, plain text.
* ``None``: the embedded default, made in code from templates (seeded): short recipe prompts with their
  completions (the in-domain corpus) and short weather reports (the other domain, for out-of-domain perplexity).

Only completion tokens are scored (the prompt is context); ``encode`` turns rows into token ids with that mask and
refuses a prompt that leaves no room for a completion in the context (``max_len``).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KdlabError

DISHES = ["soup", "bread", "salad", "pasta", "rice", "cake", "stew", "pie", "curry", "omelette"]
INGREDIENTS = ["flour", "water", "salt", "eggs", "butter", "sugar", "milk", "onions", "garlic", "tomatoes", "beans",
               "carrots", "cheese", "oil", "pepper", "lemon"]
STEPS = ["mix", "stir", "bake", "boil", "chop", "fry", "whisk", "simmer"]
CITIES = ["paris", "london", "tokyo", "cairo", "lima", "oslo", "delhi", "sydney"]
WEATHER = ["sunny", "cloudy", "rainy", "windy", "foggy", "snowy"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@dataclass
class Row:
    prompt: str
    completion: str


@dataclass
class LMCorpus:
    train: list
    dev: list
    ood: dict = field(default_factory=dict)   # domain name -> rows
    identity: str = "embedded"

    def eval_splits(self) -> dict:
        """{domain: rows}: the in-domain dev split first, then every other domain."""
        return {"in-domain": self.dev, **self.ood}


def recipe_rows(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        dish = rng.choice(DISHES)
        a, b, c = rng.sample(INGREDIENTS, 3)
        s1, s2 = rng.sample(STEPS, 2)
        out.append(Row(f"to make {dish} you need", f" {a} , {b} and {c} . {s1} them , then {s2} the {dish} ."))
    return out


def weather_rows(n: int, seed: int = 1) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        city, w, day = rng.choice(CITIES), rng.choice(WEATHER), rng.choice(DAYS)
        out.append(Row("", f"on {day} it is {w} in {city} , with {rng.randint(1, 30)} degrees and little wind ."))
    return out


def embedded_words() -> list[str]:
    """Every word of the embedded corpus (the tiny tokenizer's vocabulary)."""
    words = set(" , . and them then the to make you need on it is in with degrees little wind".split())
    for group in (DISHES, INGREDIENTS, STEPS, CITIES, WEATHER, DAYS):
        words.update(group)
    return sorted(words | {str(i) for i in range(1, 31)})


def embedded(n_train: int = 480, n_dev: int = 64, n_ood: int = 64, seed: int = 0) -> LMCorpus:
    rows = recipe_rows(n_train + n_dev, seed)
    return LMCorpus(rows[:n_train], rows[n_train:], {"weather": weather_rows(n_ood, seed + 1)}, "embedded")


def read_rows(path) -> list:
    """Rows of a .jsonl (prompt/completion or text) or plain-text file (one document per line)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise KdlabError(f"no corpus file '{path}': give a .txt file (one document per line) or a .jsonl file "
                         "({\"prompt\": ..., \"completion\": ...} or {\"text\": ...} per line)")
    rows = []
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if p.suffix.lower() != ".jsonl":
            rows.append(Row("", line.strip()))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise KdlabError(f"{p.name} line {i} is not JSON ({e.msg}): a .jsonl corpus has one object per "
                             "line") from None
        if not isinstance(obj, dict) or not ("text" in obj or "completion" in obj):
            raise KdlabError(f"{p.name} line {i} has neither 'completion' nor 'text': give {{\"prompt\": ..., "
                             "\"completion\": ...}} or {\"text\": ...} per line")
        comp = obj.get("completion", obj.get("text"))
        if not isinstance(comp, str) or not isinstance(obj.get("prompt", ""), str):
            raise KdlabError(f"{p.name} line {i}: 'prompt' and 'completion'/'text' must be strings")
        rows.append(Row(obj.get("prompt", "") or "", comp))
    rows = [r for r in rows if r.completion.strip()]
    if not rows:
        raise KdlabError(f"the corpus '{path}' is empty: it has no non-empty completion or text line")
    return rows


def load_corpus(data=None, *, ood=(), max_train=None, max_eval=None, seed: int = 0, dev_frac: float = 0.1) -> LMCorpus:
    """The run's corpus: ``data`` (a file; None = embedded) split into train/dev (seeded), ``ood`` files as other
    domains (by file stem; the embedded weather reports when none is given)."""
    if data is None:
        c = embedded(seed=seed)
    else:
        import hashlib
        rows = read_rows(data)
        rng = random.Random(seed)
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_dev = max(1, int(round(len(rows) * dev_frac))) if len(rows) > 1 else 0
        dev = [rows[i] for i in order[:n_dev]]
        train = [rows[i] for i in order[n_dev:]]
        digest = hashlib.sha256(Path(str(data)).expanduser().read_bytes()).hexdigest()[:12]
        c = LMCorpus(train, dev or train[:1], {}, f"{Path(str(data)).name}-{digest}")
    if ood:
        c.ood = {Path(str(f)).stem: read_rows(f) for f in ood}
    elif data is not None:
        c.ood = {"weather": weather_rows(64, seed + 1)}
    if seed:   # another seed, another sample and split (a cache key: the tiny teacher is trained per corpus)
        c.identity = f"{c.identity}-seed{seed}"
    if max_train:
        c.train = c.train[:max_train]
    if max_eval:
        c.dev = c.dev[:max_eval]
        c.ood = {k: v[:max_eval] for k, v in c.ood.items()}
    return c


@dataclass
class Encoded:
    ids: list        # token ids of prompt + completion (+ eos), at most max_len
    n_prompt: int    # the first n_prompt tokens are context, not scored


def text_ids(tok, text: str) -> list[int]:
    """Token ids of a prompt as the model reads it: the tokenizer's bos first when it adds one."""
    p = tok(text, add_special_tokens=False)["input_ids"] if text else []
    if tok.bos_token_id is not None and getattr(tok, "add_bos_token", False):
        p = [tok.bos_token_id, *p]
    return p


def encode(rows, tok, max_len: int, *, what: str = "the corpus") -> list:
    """Token ids with the prompt length; a completion is cut to fit ``max_len``. A prompt that leaves no room for
    one completion token in the context is refused in one line."""
    out = []
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    for i, r in enumerate(rows):
        p = text_ids(tok, r.prompt)
        c = tok(r.completion, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        if len(p) >= max_len:
            raise KdlabError(f"example {i + 1} of {what} has a prompt of {len(p)} tokens but the context is {max_len} "
                             f"tokens (--max-len): shorten the prompt or raise --max-len")
        ids = (p + c)[:max_len]
        if len(ids) - len(p) < (1 if p else 2):   # plain text: at least two tokens to predict one
            continue
        out.append(Encoded(ids, len(p)))
    if not out:
        raise KdlabError(f"{what} has no example with a token to predict: it is empty")
    return out
