"""Tests for the data layer: synthetic corpus, loaders, batching."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.data import synth
from kdlab.data.batching import collate, encode_split, make_loader
from kdlab.data.loaders import EMBEDDED_DIR, DataBundle, Split, load_data
from kdlab.errors import KdlabError

REPO = Path(__file__).resolve().parents[1]


def _shared_data():
    env = os.environ.get("KDLAB_SHARED_DATA")
    for c in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if (c / "sst2" / "train.tsv").is_file():
            return c
    return None


@pytest.fixture(scope="module")
def corpus():
    return synth.generate()


def _tok(s):
    return re.findall(r"[a-z\-]+", s.lower())


# ---------------------------------------------------------------- generator

def test_generator_deterministic(corpus):
    assert synth.generate() == corpus
    assert synth.generate(seed=14) != corpus
    assert set(corpus) == {"train", "dev", "ood_restaurant", "ood_electronics"}


def test_committed_files_match_generator(tmp_path):
    synth.write(tmp_path)
    for name in ("train", "dev", "ood_restaurant", "ood_electronics"):
        committed = EMBEDDED_DIR / f"{name}.tsv"
        assert committed.is_file(), f"missing {committed}; run python -m kdlab.data.synth data/embedded"
        assert committed.read_bytes() == (tmp_path / f"{name}.tsv").read_bytes(), name


def test_sizes_balance_and_format(corpus):
    sizes = {k: len(v) for k, v in corpus.items()}
    assert sizes == {"train": 2400, "dev": 600, "ood_restaurant": 600, "ood_electronics": 600}
    texts = set()
    for rows in corpus.values():
        pos = sum(y for _, y in rows) / len(rows)
        assert 0.45 <= pos <= 0.55
        for t, y in rows:
            assert y in (0, 1) and "\t" not in t and "\n" not in t and t.strip() == t
            texts.add(t)
            assert 1 <= t.count(".") + t.count("!") <= 6
    assert len(texts) == sum(sizes.values())  # no duplicates anywhere


def test_label_noise_rate():
    for split, rows in synth.generate_records().items():
        rate = sum(r.noisy for r in rows) / len(rows)
        assert 0.02 <= rate <= 0.04, split
        for r in rows:
            assert (r.label != r.clean_label) == r.noisy
            assert (r.score > 0) == (r.clean_label == 1)


def test_phenomena_present(corpus):
    train = [t.lower() for t, _ in corpus["train"]]
    frac = lambda f: sum(map(f, train)) / len(train)
    assert frac(lambda t: " but " in t or "although" in t or "however" in t) > 0.15
    assert frac(lambda t: re.search(r"\b(not|never|hardly)\b", t) is not None) > 0.1
    assert frac(lambda t: re.search(r"\b(very|really|absolutely)\b", t) is not None) > 0.1
    assert frac(lambda t: re.search(r"\b(slightly|somewhat|a bit)\b", t) is not None) > 0.05
    lengths = {t.count(".") for t in train}
    assert {1, 2, 3, 4} <= lengths


def test_ood_vocabulary_differs(corpus):
    vocab = {k: {w for t, _ in v for w in _tok(t)} for k, v in corpus.items()}
    generic = {w for w, _ in synth.GENERIC_POS + synth.GENERIC_NEG}
    movie = vocab["train"] - generic
    for ood in ("ood_restaurant", "ood_electronics"):
        other = vocab[ood] - generic
        jac = len(movie & other) / len(movie | other)
        assert jac < 0.35, (ood, jac)
    # dev shares the in-domain vocabulary
    assert len(vocab["dev"] - vocab["train"]) <= 5
    # generic sentiment words appear in every domain
    for v in vocab.values():
        assert {"good", "terrible"} <= v


def _bow(rows, vocab):
    X = np.zeros((len(rows), len(vocab)))
    for i, (t, _) in enumerate(rows):
        for w in _tok(t):
            j = vocab.get(w)
            if j is not None:
                X[i, j] = 1.0
    return X, np.array([y for _, y in rows], dtype=float)


def test_bag_of_words_learnable_not_trivial(corpus):
    vocab = {w: i for i, w in enumerate(sorted({w for t, _ in corpus["train"] for w in _tok(t)}))}
    X, y = _bow(corpus["train"], vocab)
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(1500):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        g = p - y
        w -= 0.5 * (X.T @ g / len(y) + 1e-3 * w)
        b -= 0.5 * g.mean()
    Xd, yd = _bow(corpus["dev"], vocab)
    acc = ((Xd @ w + b > 0) == yd).mean()
    assert 0.70 < acc < 0.99, acc


# ---------------------------------------------------------------- loaders

def _write(path: Path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_default():
    b = load_data()
    assert isinstance(b, DataBundle)
    assert (len(b.train), len(b.dev)) == (2400, 600)
    assert set(b.ood) == {"ood_restaurant", "ood_electronics"}
    assert b.label_names == ["negative", "positive"] and b.num_labels() == 2
    assert list(b.eval_splits()) == ["dev", "ood_restaurant", "ood_electronics"]
    assert b.train.domain == "in-domain" and b.ood["ood_restaurant"].domain == "ood_restaurant"
    assert (b.train.texts[0], b.train.labels[0]) == synth.generate()["train"][0]
    assert load_data("embedded").identity == b.identity
    small = load_data(max_train=100, max_eval=50, seed=1)
    assert len(small.train) == 100 and all(len(s) == 50 for s in small.eval_splits().values())
    assert small.identity != b.identity
    assert load_data(max_train=100, max_eval=50, seed=1).identity == small.identity
    assert load_data(max_train=100, seed=2).train.texts != small.train.texts
    assert load_data(ood=[]).ood == {}


def test_embedded_fallback_generates(monkeypatch, tmp_path):
    import kdlab.data.loaders as L
    monkeypatch.setattr(L, "EMBEDDED_DIR", tmp_path / "nothing")
    b = L.load_data()
    assert b.identity == load_data().identity


def test_tsv_leading_quote_not_merged(tmp_path):
    p = _write(tmp_path / "q.tsv", 'sentence\tlabel\n"quoted start and no end\t1\nplain row\t0\n'
                                   'has "inner" quotes\t1\n"fully quoted"\t0\n')
    b = load_data(p, dev_fraction=0.25)
    texts = b.train.texts + b.dev.texts
    assert len(texts) == 4
    assert '"quoted start and no end' in texts and '"fully quoted"' in texts


def test_single_file_dev_carving_is_deterministic(tmp_path):
    rows = "".join(f"text number {i}\t{i % 2}\n" for i in range(50))
    p = _write(tmp_path / "mydata.tsv", "sentence\tlabel\n" + rows)
    a, b = load_data(p, dev_fraction=0.2, seed=3), load_data(p, dev_fraction=0.2, seed=3)
    assert (len(a.train), len(a.dev)) == (40, 10) and a.dev.texts == b.dev.texts
    assert set(a.train.texts).isdisjoint(a.dev.texts)
    assert load_data(p, dev_fraction=0.2, seed=4).dev.texts != a.dev.texts
    assert a.name == "mydata"


def test_csv_and_jsonl(tmp_path):
    c = _write(tmp_path / "d.csv", 'text,y\n"hello, world",pos\n"say ""hi""",neg\nplain,pos\nx,neg\n')
    b = load_data(c, text_col="text", label_col="y", dev_fraction=0.25)
    assert b.label_names == ["neg", "pos"]
    all_rows = dict(zip(b.train.texts + b.dev.texts, b.train.labels + b.dev.labels))
    assert all_rows == {"hello, world": 1, 'say "hi"': 0, "plain": 1, "x": 0}
    j = _write(tmp_path / "d.jsonl", '{"sentence": "a b", "label": 1}\n\n{"sentence": "c", "label": 0}\n'
                                     '{"sentence": "d", "label": "1"}\n{"sentence": "e", "label": 0}\n')
    b = load_data(j, dev_fraction=0.25)
    assert sorted(b.train.texts + b.dev.texts) == ["a b", "c", "d", "e"]
    assert b.label_names == ["negative", "positive"]


def test_glue_folder_and_train_file_with_sibling_dev(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    _write(d / "train.tsv", "sentence\tlabel\na\t0\nb\t1\nc\t0\n")
    _write(d / "dev.tsv", "sentence\tlabel\nd\t1\ne\t0\n")
    _write(d / "extra.tsv", "sentence\tlabel\nz\t1\n")
    o = _write(tmp_path / "other.jsonl", '{"sentence": "o1", "label": 1}\n')
    b = load_data(d, ood=[o])
    assert b.train.texts == ["a", "b", "c"] and b.dev.texts == ["d", "e"]
    assert list(b.ood) == ["other"] and b.ood["other"].labels == [1]
    assert b.name == "task"
    assert load_data(d / "train.tsv").dev.texts == ["d", "e"]
    assert load_data(str(d)).identity == load_data(d).identity


@pytest.mark.parametrize("case, words", [
    ("missing", ["not found"]),
    ("missing_folder", ["not found"]),
    ("binary", ["cannot read", "binary"]),
    ("wrong_column", ["column", "'sentence'", "['text', 'label']", "--text-col"]),
    ("empty", ["no data rows"]),
    ("header_only", ["no data rows"]),
    ("missing_text", ["row 2", "text"]),
    ("missing_label", ["row 1", "label"]),
    ("single_class", ["only one label class"]),
    ("bad_eval_label", ["dev.tsv", "row 2", "'7'", "{0, 1}"]),
    ("bad_ood_label", ["bad_ood.tsv", "row 1", "'2'", "{0, 1}"]),
    ("non_contiguous", ["contiguous", "0..1"]),
])
def test_loader_errors(tmp_path, case, words):
    good = "sentence\tlabel\na\t0\nb\t1\nc\t0\n"
    ood = None
    if case == "missing":
        spec = tmp_path / "nope.tsv"
    elif case == "missing_folder":
        spec = str(tmp_path / "no" / "such" / "folder")
    elif case == "binary":
        spec = tmp_path / "bin.tsv"
        spec.write_bytes(bytes(range(256)) * 4)
    elif case == "wrong_column":
        spec = _write(tmp_path / "w.tsv", "text\tlabel\na\t0\nb\t1\n")
    elif case == "empty":
        spec = _write(tmp_path / "e.tsv", "")
    elif case == "header_only":
        spec = _write(tmp_path / "h.tsv", "sentence\tlabel\n")
    elif case == "missing_text":
        spec = _write(tmp_path / "m.tsv", "sentence\tlabel\na\t0\n\t1\n")
    elif case == "missing_label":
        spec = _write(tmp_path / "m.tsv", "sentence\tlabel\nonly text\n")
    elif case == "single_class":
        spec = _write(tmp_path / "s.tsv", "sentence\tlabel\na\t1\nb\t1\nc\t1\n")
    elif case == "bad_eval_label":
        spec = tmp_path / "f"
        spec.mkdir()
        _write(spec / "train.tsv", good)
        _write(spec / "dev.tsv", "sentence\tlabel\nx\t1\ny\t7\n")
    elif case == "bad_ood_label":
        spec = tmp_path / "f"
        spec.mkdir()
        _write(spec / "train.tsv", good)
        _write(spec / "dev.tsv", good)
        ood = [_write(tmp_path / "bad_ood.tsv", "sentence\tlabel\nx\t2\n")]
    elif case == "non_contiguous":
        spec = _write(tmp_path / "n.tsv", "sentence\tlabel\na\t1\nb\t2\nc\t1\n")
    with pytest.raises(KdlabError) as ei:
        load_data(spec, ood=ood)
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_unreadable_permission(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root can read anything")
    p = _write(tmp_path / "locked.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    p.chmod(0)
    try:
        with pytest.raises(KdlabError, match="permission"):
            load_data(p)
    finally:
        p.chmod(0o644)


def test_hub_offline_message(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def boom(*a, **k):
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(KdlabError) as ei:
        load_data("glue/sst2")
    msg = str(ei.value)
    assert "could not be fetched from the hub" in msg and "offline" in msg
    assert "local file or folder" in msg and "glue/sst2" in msg


def test_hub_success_path(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    dd = DatasetDict({
        "train": Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]}, features=feats),
        "validation": Dataset.from_dict({"text": ["d"], "label": [1]}, features=feats),
    })
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or dd)
    b = load_data("somename")
    assert calls == [("somename",)]
    assert b.train.texts == ["a", "b", "c"] and b.dev.labels == [1]
    assert b.label_names == ["neg", "pos"] and b.name == "somename"


def test_shared_real_data():
    root = _shared_data()
    if root is None:
        pytest.skip("shared data folder not present (set KDLAB_SHARED_DATA)")
    b = load_data(root / "sst2", ood=[root / "ood" / "imdb.tsv", root / "ood" / "yelp.tsv"])
    assert (len(b.train), len(b.dev)) == (67349, 872)
    assert {k: len(v) for k, v in b.ood.items()} == {"imdb": 2000, "yelp": 2000}
    assert b.label_names == ["negative", "positive"]
    quoted = [t for t in b.ood["imdb"].texts if t.startswith('"')]
    assert len(quoted) == 46


# ---------------------------------------------------------------- batching

@pytest.fixture()
def tokenizer(tmp_path):
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "plot", "was", "good", "bad",
             "not", "very", "but", "acting", "great", "."]
    vf = tmp_path / "vocab.txt"
    vf.write_text("\n".join(words) + "\n", encoding="utf-8")
    # transformers 5 takes the vocab file as `vocab=` (and silently ignores `vocab_file=`);
    # 4.x takes `vocab_file=`
    tok = BertTokenizerFast(vocab=str(vf), do_lower_case=True)
    if tok.vocab_size != len(words):
        tok = BertTokenizerFast(vocab_file=str(vf), do_lower_case=True)
    assert tok.vocab_size == len(words)
    return tok


def test_collate_padding_and_mask(tokenizer):
    split = Split("t", ["the plot was good", "bad", "the acting was not very great but ."],
                  [1, 0, 1], "in-domain")
    ds = encode_split(split, tokenizer, max_len=64)
    assert ds[1] == {"input_ids": [2, 9, 3], "label": 0, "idx": 1}
    batch = collate([ds[0], ds[1], ds[2]], pad_id=tokenizer.pad_token_id)
    L = len(ds[2]["input_ids"])
    assert batch["input_ids"].shape == (3, L) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1] + [0] * (L - 3)
    assert batch["input_ids"][1, 3:].eq(tokenizer.pad_token_id).all()
    assert batch["attention_mask"].sum(1).tolist() == [len(ds[i]["input_ids"]) for i in range(3)]
    assert batch["labels"].tolist() == [1, 0, 1] and batch["idx"].tolist() == [0, 1, 2]
    assert "token_type_ids" not in batch
    # truncation
    short = encode_split(split, tokenizer, max_len=4)
    assert max(len(short[i]["input_ids"]) for i in range(3)) == 4
    assert short[2]["input_ids"][-1] == tokenizer.sep_token_id


def test_loader_shuffle_deterministic(tokenizer):
    split = Split("t", [("the plot was good " * (i % 5 + 1)).strip() for i in range(40)],
                  [i % 2 for i in range(40)], "in-domain")
    order = lambda seed: [i for b in make_loader(split, tokenizer, batch_size=8, shuffle=True,
                                                  seed=seed) for i in b["idx"].tolist()]
    a = order(0)
    assert a == order(0) and sorted(a) == list(range(40)) and a != list(range(40))
    assert order(1) != a
    plain = [i for b in make_loader(split, tokenizer, batch_size=8) for i in b["idx"].tolist()]
    assert plain == list(range(40))
    # re-iterating the same loader gives a new (but reproducible) epoch order
    loader = make_loader(split, tokenizer, batch_size=8, shuffle=True, seed=5)
    e1 = [i for b in loader for i in b["idx"].tolist()]
    e2 = [i for b in loader for i in b["idx"].tolist()]
    loader2 = make_loader(split, tokenizer, batch_size=8, shuffle=True, seed=5)
    assert [i for b in loader2 for i in b["idx"].tolist()] == e1 and e1 != e2
    dl = make_loader(split, tokenizer, batch_size=16, drop_last=True)
    assert len(dl) == 2
    b = next(iter(dl))
    assert b["input_ids"].shape[1] == max(len(x) for x in encode_split(split, tokenizer).input_ids[:16])


def test_hub_pair_datasets_read_both_texts(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rte = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                    "label": ClassLabel(names=["entailment", "not_entailment"]), "idx": Value("int32")})
    dd = DatasetDict({
        "train": Dataset.from_dict({"sentence1": ["a cat sat", "it rains", "dogs bark"], "sentence2":
                                    ["a cat", "it is dry", "a dog is loud"], "label": [0, 1, 0], "idx": [0, 1, 2]},
                                   features=rte),
        "validation": Dataset.from_dict({"sentence1": ["x y"], "sentence2": ["y"], "label": [1], "idx": [0]},
                                        features=rte)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    b = load_data("glue/rte")   # the hub's GLUE RTE: its task by name, its pair by the task's columns
    assert b.task.name == "rte" and b.task.pair
    assert b.train.texts_b == ["a cat", "it is dry", "a dog is loud"] and b.dev.texts_b == ["y"]
    assert b.label_names == ["entailment", "not_entailment"] and b.train.labels == [0, 1, 0]

    mnli = Features({"premise": Value("string"), "hypothesis": Value("string"),
                     "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    rows = {"premise": ["p1", "p2", "p3"], "hypothesis": ["h1", "h2", "h3"], "label": [0, 1, 2]}
    dd2 = DatasetDict({"train": Dataset.from_dict(rows, features=mnli),
                       "validation_matched": Dataset.from_dict(rows, features=mnli)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd2)
    b = load_data("glue/mnli")   # premise/hypothesis and label stand for sentence1/2 and gold_label
    assert b.task.name == "mnli" and b.dev.texts_b == ["h1", "h2", "h3"] and b.dev.labels == [0, 1, 2]
    odd = DatasetDict({"train": Dataset.from_dict({"q": ["a"], "d": ["b"], "label": [0]})})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: odd)
    with pytest.raises(KdlabError, match="--text-col a,b"):
        load_data("glue/qqp")
