"""The ``cka`` mapping strategy: its choice on a constructed CKA matrix, every layer method that takes a mapping
builds it, and a tiny run computes the scores before training (checked against linear CKA computed here)."""
import math

import numpy as np
import pytest
import torch

from kdlab.kd import mapping as mp
from kdlab.errors import KdlabError
from kdlab.methods import get, names
from kdlab.methods.base import Context
from kdlab.records import ModelInfo

NAN = math.nan
SCORES = [[0.1, 0.9, 0.3, 0.2],     # student layer 1: teacher layer 2
          [0.5, 0.5, 0.2, NAN],     # student layer 2: a tie goes to the lower layer (1); NaN never wins
          [NAN, NAN, 0.1, 0.7]]     # student layer 3: teacher layer 4


def test_cka_strategy_choice():
    W = mp.build("cka", 3, 4, matrix=SCORES)
    assert mp.one_hot_layers(W) == [2, 1, 4]
    assert W.sum().item() == 3 and W.dtype == torch.float32
    assert mp.one_hot_layers(mp.from_cka([[0.8, 0.9], [0.1, 0.95]], 2, 2)) == [2, 2]   # a teacher layer twice
    with pytest.raises(KdlabError, match="shape"):
        mp.from_cka(SCORES, 2, 4)
    with pytest.raises(KdlabError, match="CKA scores"):
        mp.build("cka", 3, 4)


def test_every_mapping_method_takes_cka():
    ctx = Context(teacher=ModelInfo(4, 8, 2, 10), student=ModelInfo(3, 8, 2, 10), num_labels=2, total_steps=10)
    takes = [n for n in names() if "mapping" in get(n).option_names()]
    assert {"hidden", "pkd-skip", "pkd-last", "tinybert", "distilbert", "mobilebert"} <= set(takes)
    for n in takes:
        m = get(n)(ctx, mapping="cka", mapping_cka=SCORES)
        assert mp.one_hot_layers(m.build_mapping()) == [2, 1, 4], n
        W = getattr(m, "full", None) if n.startswith("internal") else m.W
        rows = [2, 1] if n.startswith("pkd") else [2, 1, 4]   # PKD leaves the last student layer to the KD term
        assert [int(r.argmax()) + 1 for r in W[: len(rows)]] == rows, n


def test_cka_run_computes_scores_before_training(tmp_path):
    from kdlab.analysis.cka import linear_cka
    from kdlab.config import RunConfig, TrainConfig
    from kdlab.data.loaders import load_data
    from kdlab.models.core import build_student, load_saved
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    from kdlab.tools.cka_run import layer_features
    store = Store(tmp_path / "runs")
    cfg = RunConfig(teacher="tiny", max_train=96, max_eval=48, student_layers=2, method="pkd-skip",
                    method_args={"mapping": "cka"},
                    train=TrainConfig(max_steps=2, epochs=1, batch_size=16, max_len=32, progress=False),
                    teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False))
    logs = []
    rid = distill_run(cfg, store, log=logs.append)
    run = store.run(rid)
    scores = run["config"]["method_args"]["mapping_cka"]
    assert np.asarray(scores).shape == (2, 4)
    assert any("mapping=cka: student layer <- teacher layer" in line for line in logs)
    # by hand: the teacher and the student as built before training (skip init from the teacher), pooled per layer
    teacher, tok = load_saved(store.artifact(run["config"]["teacher_run"], "model_dir"))
    student = build_student(teacher, layers=2, init="skip", seed=0)
    train = load_data(None, max_train=96, max_eval=48, seed=0).train
    t = layer_features(teacher, tok, train, max_examples=256, max_len=32)
    s = layer_features(student, tok, train, max_examples=256, max_len=32)
    hand = [[round(linear_cka(s[i], t[j]), 4) for j in range(1, 5)] for i in range(1, 3)]
    np.testing.assert_allclose(scores, hand, atol=2e-4)
    W = np.asarray(store.mappings(rid)[0]["matrix"])
    assert int(W[0].argmax()) + 1 == int(np.argmax(hand[0])) + 1 and W[1].sum() == 0   # PKD: the last row is KD's
