"""Next-token distributions of causal LMs (kdlab.lm.explain): the numbers against a softmax computed here, the
labels of tokens, one line for each bad input, and the models of a stored LM run."""
import math

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.lm.explain import as_bars, compare_next_token, prompt_ids, token_labels
from kdlab.lm.models import copy_student, tiny_lm


@pytest.fixture(scope="module")
def lm():
    teacher, tok = tiny_lm(seed=4)
    return teacher, copy_student(teacher, [0, 3]).eval(), tok


def test_next_token_numbers_by_hand(lm):
    teacher, student, tok = lm
    ids = prompt_ids(tok, "to make soup you need", teacher)
    assert ids == tok("to make soup you need", add_special_tokens=False)["input_ids"]   # no bos for this tokenizer
    T = 2.5
    r = compare_next_token({"teacher": teacher, "student": student}, tok, "to make soup you need", temperature=T, k=4)
    with torch.no_grad():
        zt = teacher(torch.tensor([ids])).logits[0, -1].double()
        zs = student(torch.tensor([ids])).logits[0, -1].double()
    p, q = torch.softmax(zt / T, -1), torch.softmax(zs / T, -1)
    top = torch.argsort(-p)[:4].tolist()
    assert r["ids"] == top and r["k"] == 4 and r["prompt_tokens"] == ["to", "make", "soup", "you", "need"]
    assert np.allclose(r["probs"]["teacher"], p[top].numpy(), atol=1e-6)
    assert np.allclose(r["probs"]["student"], q[top].numpy(), atol=1e-6)   # the student on the teacher's tokens
    assert r["other"]["student"] == pytest.approx(1 - q[top].sum().item(), abs=1e-6)
    assert r["entropy"]["teacher"] == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)
    assert r["kl"]["student"] == pytest.approx((p * (p.log() - q.log())).sum().item(), abs=1e-5)
    assert r["kl"]["teacher"] == 0.0
    bars = as_bars(r)
    assert list(bars["teacher"])[-1] == "(all other tokens)" and math.isclose(sum(bars["teacher"].values()), 1.0)
    # one position inside a longer text: the same as the text cut there
    longer = ids + prompt_ids(tok, "salt and water")
    r2 = compare_next_token({"teacher": teacher}, tok, ids=longer, position=len(ids) - 1, temperature=T, k=4)
    assert r2["probs"]["teacher"] == pytest.approx(r["probs"]["teacher"])


def test_token_labels_are_distinct():
    class Tok:
        def decode(self, ids):
            return {1: "a", 2: "a", 3: " ", 4: "b"}[ids[0]]
    assert token_labels(Tok(), [1, 2, 3, 4, 4]) == ["a #1", "a #2", "' '", "b", "b"]


def test_bad_input_one_line(lm):
    teacher, student, tok = lm
    for kw, msg in ((dict(prompt=""), "type a prompt"), (dict(prompt="soup", temperature=0), "positive"),
                    (dict(prompt="soup", k=0), "at least 1"),
                    (dict(prompt=" ".join(["soup"] * 200)), "context is 128 positions"),
                    (dict(ids=[5, 6], position=4), "outside the 2 tokens")):
        with pytest.raises(KdlabError, match=msg) as e:
            compare_next_token({"teacher": teacher}, tok, **kw)
        assert "\n" not in str(e.value)
    from transformers import LlamaConfig, LlamaForCausalLM
    other = LlamaForCausalLM(LlamaConfig(**{**teacher.config.to_dict(), "vocab_size": 300}))
    with pytest.raises(KdlabError, match="one vocabulary"):
        compare_next_token({"teacher": teacher, "other": other}, tok, "soup")


def test_models_of_a_stored_lm_run(tmp_path):
    from kdlab.cli import main
    from kdlab.lm.explain import lm_runs, run_models
    from kdlab.runs.store import Store
    assert main(["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4",
                 "--max-steps", "1", "--method", "lm-fkl", "--runs", str(tmp_path), "--quiet"]) == 0
    store = Store(tmp_path)
    runs = lm_runs(store)
    if not any(r["kind"] == "teacher" for r in runs):   # the tiny teacher came from this session's teacher cache
        assert main(["teacher", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4",
                     "--runs", str(tmp_path), "--quiet"]) == 0
        runs = lm_runs(store)
    assert {r["kind"] for r in runs} == {"student", "teacher"}
    student_run = next(r for r in runs if r["kind"] == "student")
    m = run_models(store, student_run["id"])
    assert set(m) == {"teacher", "student"}
    assert m["student"][0].config.num_hidden_layers == 2 and m["teacher"][0].config.num_hidden_layers == 4
    t = run_models(store, next(r for r in runs if r["kind"] == "teacher")["id"])
    assert set(t) == {"teacher"}


def test_decoder_layer_cka_of_a_copied_student(lm):
    from kdlab.lm.data import Row
    from kdlab.lm.layers import layer_cka
    teacher, student, tok = lm   # the student is the teacher's layers 1 and 4, untrained
    rows = [Row("to make soup you need", " salt ."), Row("to make cake you need", " eggs and flour ."),
            Row("", "on monday it is sunny in oslo ."), Row("", "on friday it is rainy in lima ."),
            Row("to make pie you need", " butter , sugar and milk .")]
    C = layer_cka(teacher, student, tok, rows, 48, max_examples=5)
    assert C.shape == (4, 2)   # teacher rows, student columns
    assert C[0, 0] == pytest.approx(1.0, abs=1e-6)   # the same first layer on the same input
    assert C[3, 1] < 0.999 and np.all((C > -1e-9) & (C < 1 + 1e-9))   # layer 4 reads another input in the student
    with pytest.raises(KdlabError, match="at least 4 examples"):
        layer_cka(teacher, student, tok, rows[:3], 48)
