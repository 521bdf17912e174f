"""Head and FFN-neuron pruning (kdlab.deploy.prune) on tiny models built in code: what must not change the logits
(pruning nothing, a head or neuron whose output weights are zero), the saved folder reloading to the same logits,
the rounds, and the one-line refusals."""
import pytest
import torch

from kdlab.models import families
from kdlab.deploy import prune
from kdlab.errors import KdlabError
from kdlab.models.core import load_saved, save_model, tiny_model

TEXTS = ["a good film", "a bad movie it was", "fine fine fine", "terrible acting and a worse plot"] * 2
LABELS = [1, 0, 1, 0] * 2
DATA = {"texts": TEXTS, "labels": LABELS}
QUIET = dict(log=lambda *_: None)


def _logits(model, tok):
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    if not families.takes_token_types(model):
        enc.pop("token_type_ids", None)
    model.eval()
    with torch.no_grad():
        return model(**enc).logits


def _layer(model, i=0):
    return families.layers(model)[i]


def test_pruning_nothing_changes_no_logit():
    model, tok = tiny_model()
    before = _logits(model, tok)
    _, h, f = prune.sizes(model)
    n = len(families.layers(model))
    prune.apply(model, {i: list(range(h)) for i in range(n)}, {i: list(range(f)) for i in range(n)})
    assert torch.equal(_logits(model, tok), before)
    assert prune.sizes(model)[1:] == (h, f)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "deberta-v2", "modernbert"])
def test_a_head_whose_output_projection_is_zero_is_the_one_pruned_and_changes_no_logit(arch):
    model, tok = tiny_model(arch=arch)
    spec = prune.spec_of(model)
    d = prune.head_dim(model)
    dead = 2
    with torch.no_grad():
        for layer in families.layers(model):
            prune._get(layer, spec.out).weight[:, dead * d:(dead + 1) * d] = 0
    before = _logits(model, tok)
    step = prune.prune(model, tok, DATA, heads=1, **QUIET)
    after = _logits(model, tok)
    assert torch.allclose(after, before, atol=1e-5), float((after - before).abs().max())
    assert step["kept_heads"] == {str(i): [0, 1, 3] for i in range(len(families.layers(model)))}
    assert prune.sizes(model)[1] == 3


@pytest.mark.parametrize("arch", ["bert", "modernbert", "mpnet"])
def test_ffn_neurons_whose_output_weights_are_zero_are_pruned_and_change_no_logit(arch):
    model, tok = tiny_model(arch=arch)
    spec = prune.spec_of(model)
    dead = [5, 17, 40]
    with torch.no_grad():
        for layer in families.layers(model):
            prune._get(layer, spec.ffn_out).weight[:, dead] = 0
    before = _logits(model, tok)
    _, _, f = prune.sizes(model)
    prune.prune(model, tok, DATA, ffn=3, **QUIET)
    assert torch.allclose(_logits(model, tok), before, atol=1e-5)
    kept = prune.current(model)["ffn"]["0"]
    assert len(kept) == f - 3 and not set(dead) & set(kept)


def test_saved_pruned_model_reloads_with_the_same_logits(tmp_path):
    model, tok = tiny_model()
    prune.prune(model, tok, DATA, heads=2, ffn=30, **QUIET)
    before = _logits(model, tok)
    save_model(model, tok, tmp_path / "m")
    again, tok2 = load_saved(tmp_path / "m")
    assert prune.sizes(again)[1:] == (2, 128 - 30)
    assert torch.equal(_logits(again, tok2), before)


def test_rounds_take_at_most_a_third_and_recovery_runs():
    assert prune.plan_rounds(6, 12) == [4, 2]
    assert prune.plan_rounds(2, 4) == [1, 1]
    assert prune.plan_rounds(0, 4) == []
    model, tok = tiny_model()
    teacher, _ = tiny_model()
    step = prune.prune(model, tok, DATA, heads=2, ffn=10, recover_steps=4, teacher=teacher, **QUIET)
    assert step["rounds"] == [{"heads": 1, "ffn": 10}, {"heads": 1, "ffn": 0}]
    assert step["recover_steps"] == 4 and step["recover_final_kl"] >= 0
    assert prune.sizes(model)[1:] == (2, 118)


def test_refusals_are_one_line():
    model, tok = tiny_model()
    with pytest.raises(KdlabError, match="each layer has 4 attention heads, so at most 3"):
        prune.check(model, 4, 0)
    with pytest.raises(KdlabError, match="at most 127"):
        prune.check(model, 0, 128)
    with pytest.raises(KdlabError, match="nothing to prune"):
        prune.check(model, 0, 0)
    mp, _ = tiny_model(arch="mpnet")
    with pytest.raises(KdlabError, match="cannot be pruned .*MPNet"):
        prune.check(mp, 1, 0)
    from kdlab.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
    with pytest.raises(KdlabError, match="family kdlab knows"):
        prune.check(BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=50, num_labels=2)), 1, 0)


# ------------------------------------------------------------------------------ through `kdlab compress` / eval
def _teacher_run(store):
    """A finished teacher run on the embedded data whose model is a tiny BERT saved in code (no training)."""
    rid = store.create_run("teacher", "ce", {"data": "embedded", "train": {"max_len": 32, "seed": 0}}, name="t")
    model, tok = tiny_model()
    save_model(model, tok, store.folder(rid) / "teacher")
    store.set_artifact(rid, "model_dir", str(store.folder(rid) / "teacher"))
    store.finish(rid, "finished")
    return rid


def test_compress_prunes_records_the_kept_heads_and_eval_scores_it(tmp_path, capsys):
    from kdlab.cli import main
    from kdlab.deploy.artifacts import compress_run, load_artifact
    from kdlab.deploy.report import eval_models
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    rid = _teacher_run(store)
    info = compress_run(store, rid, prune_heads=1, prune_ffn=32, prune_sample=32, **QUIET)
    assert info["name"] == "h1-f32" and info["steps"][0]["step"] == "prune-structure"
    model, tok, _ = load_artifact(info["folder"])
    assert prune.sizes(model)[1:] == (3, 96)
    assert all(len(v) == 3 for v in prune.current(model)["heads"].values())
    res = eval_models(store, rid, ["h1-f32"], rounds=1, **QUIET)
    row = res["models"]["h1-f32"]
    assert row["params"] < res["models"]["teacher"]["params"] and 0 <= row["dev"] <= 1
    q = compress_run(store, rid, prune_heads=1, quantize="int8", prune_sample=16, **QUIET)   # int8 reloads too
    qmodel, qtok, _ = load_artifact(q["folder"])
    assert prune.sizes(qmodel)[1] == 3 and _logits(qmodel, qtok).shape == (len(TEXTS), 2)
    assert main(["compress", "--run", rid, "--prune-heads", "9", "--runs", str(tmp_path / "runs")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kdlab: error: --prune-heads 9: each layer has 4 attention heads, so at most 3 can be removed"]


def test_compare_models_is_the_paired_bootstrap_over_examples():
    """`eval --compare A:B`: hand-made logits, labels known: A right on all 40, B right on 30 -> delta +0.25."""
    import numpy as np
    from types import SimpleNamespace
    from kdlab.deploy.report import compare_models
    labels = np.array([0, 1] * 20)
    right = np.eye(2)[labels] * 3.0
    wrong = right.copy()
    wrong[:10] = right[:10][:, ::-1]          # B gets the first 10 wrong
    split = SimpleNamespace(labels=list(labels), label_map=None)
    res = compare_models({("a", "dev"): right, ("b", "dev"): wrong}, {"dev": split}, "a", "b", "accuracy",
                         n_boot=500)["dev"]
    assert res["delta"] == pytest.approx(0.25)
    assert 0 < res["ci_low"] <= 0.25 <= res["ci_high"] and res["verdict"] == "better"
    same = compare_models({("a", "dev"): right, ("b", "dev"): right}, {"dev": split}, "a", "b", "accuracy",
                          n_boot=200)["dev"]
    assert same["delta"] == 0 and same["verdict"] == "inconclusive"
    back = compare_models({("a", "dev"): right, ("b", "dev"): wrong}, {"dev": split}, "b", "a", "accuracy",
                          n_boot=200)["dev"]
    assert back["delta"] == pytest.approx(-0.25) and back["verdict"] == "worse"


def test_eval_compare_on_a_stored_run(tmp_path):
    from kdlab.deploy.artifacts import compress_run
    from kdlab.deploy.report import eval_models, format_table
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    rid = _teacher_run(store)
    compress_run(store, rid, prune_heads=1, prune_ffn=32, prune_sample=32, **QUIET)
    res = eval_models(store, rid, ["h1-f32"], rounds=1, compare=[("h1-f32", "teacher")], n_boot=200, **QUIET)
    per = res["compare"]["h1-f32 vs teacher"]
    for split, r in per.items():   # the observed delta is the difference of the two rows' accuracies
        assert r["delta"] == pytest.approx(res["models"]["h1-f32"][split] - res["models"]["teacher"][split])
    assert "h1-f32 vs teacher: dev" in format_table(res)
    with pytest.raises(KdlabError, match="not among the evaluated models"):
        eval_models(store, rid, ["h1-f32"], rounds=1, compare=[("h1-f32", "nope")], **QUIET)


def test_eval_compare_flag(tmp_path, capsys):
    from kdlab.cli import main
    from kdlab.deploy.artifacts import compress_run
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    rid = _teacher_run(store)
    compress_run(store, rid, prune_heads=1, prune_ffn=32, prune_sample=32, **QUIET)
    runs = ["--runs", str(tmp_path / "runs"), "--quiet"]
    assert main(["eval", "--run", rid, "--model", "all", "--compare", "h1-f32:teacher", *runs]) == 0
    assert "h1-f32 vs teacher: dev" in capsys.readouterr().out
    assert main(["eval", "--run", rid, "--model", "all", "--compare", "h1-f32", *runs]) == 2
    assert "A:B" in capsys.readouterr().err
    assert main(["eval", "--run", rid, "--data", "x.tsv", "--compare", "a:b", *runs]) == 2
    assert capsys.readouterr().err.strip().endswith("drop --compare")
