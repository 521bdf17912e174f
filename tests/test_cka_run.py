"""CKA over a teacher/student pair: the API, its sanity (copied layers ~1), and the `cka` command."""
import dataclasses

import numpy as np
import pytest

from kdlab.tools.cka_run import cka_between, layer_features
from kdlab.data.loaders import Split, load_data
from kdlab.errors import KdlabError
from kdlab.models.core import build_student, tiny_model


@pytest.fixture(scope="module")
def pair():
    teacher, tok = tiny_model(2, seed=0)
    student = build_student(teacher, layers=2, init="first")  # copies teacher layers 1 and 2
    bundle = load_data(None, max_train=16, max_eval=64, seed=0)
    return teacher, student, tok, bundle


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_cka_between_shape_range_and_copied_layers(pair, pool):
    teacher, student, tok, bundle = pair
    res = cka_between(teacher, student, tok, bundle.dev, pool=pool, max_examples=48, max_len=32)
    N, M = teacher.config.num_hidden_layers, student.config.num_hidden_layers
    assert res["linear"].shape == (N + 1, M + 1) and res["debiased"].shape == (N + 1, M + 1)
    assert res["pool"] == pool and res["n"] == 48
    lin = res["linear"]
    first = 0
    if pool == "cls":  # the [CLS] embedding output is the same vector for every example: CKA undefined (NaN)
        assert np.isnan(lin[0]).all() and np.isnan(lin[:, 0]).all()
        first = 1
    assert np.isfinite(lin[first:, first:]).all()
    assert np.all(lin[first:, first:] >= -1e-9) and np.all(lin[first:, first:] <= 1 + 1e-9)
    assert np.all(res["debiased"][first:, first:] <= 1 + 1e-9)
    # embeddings and layers 1..2 are copied (eval mode: the same computation on the same inputs) -> CKA 1 with
    # the layer each was copied from, and that layer is the best match of its column
    for j in range(first, M + 1):
        assert lin[j, j] == pytest.approx(1.0, abs=1e-9)
        assert res["debiased"][j, j] == pytest.approx(1.0, abs=1e-9)
        assert int(np.nanargmax(lin[:, j])) == j
    assert lin[N, 1] < 1 - 1e-6  # other pairs are not identical
    assert res["teacher_self"].shape == (N + 1, N + 1)
    assert np.allclose(np.diag(res["teacher_self"])[first:], 1.0)


def test_mean_pool_ignores_padding(pair):
    teacher, _, tok, _ = pair
    texts = ["good movie", "a truly great and wonderful film with a nice plot"]
    split = Split("x", texts, [1, 1], "in-domain")
    batched = layer_features(teacher, tok, split, pool="mean", batch_size=2)
    single = layer_features(teacher, tok, Split("x", texts[:1], [1], "in-domain"), pool="mean", batch_size=1)
    assert np.allclose(batched[3][0], single[3][0], atol=1e-5)  # the padded row pools only its real tokens


def test_cka_bad_input(pair):
    teacher, student, tok, bundle = pair
    with pytest.raises(KdlabError, match="pooling"):
        cka_between(teacher, student, tok, bundle.dev, pool="max", max_examples=8)
    with pytest.raises(KdlabError, match="at least 4"):
        cka_between(teacher, student, tok, bundle.dev, max_examples=2)


def test_cli_cka_stores_artifacts(tmp_path, capsys):
    from kdlab.cli import main
    from kdlab.config import RunConfig, apply_preset
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    cfg = apply_preset(RunConfig(preset="tiny", max_train=32, max_eval=24, method="kd"))
    cfg.train = dataclasses.replace(cfg.train, max_steps=1, progress=False, checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, epochs=1, progress=False)
    rid = distill_run(cfg, store, log=lambda *a: None)
    rc = main(["cka", "--run", rid, "--runs", str(store.root), "--max-examples", "20", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "linear CKA" in out and "debiased CKA" in out
    art = store.artifact(rid, "cka:dev:mean")
    assert art is not None and store.artifact(rid, "cka") == art
    lin = np.array(art["linear"])
    assert lin.shape == (5, 3) and art["n"] == 20 and art["pool"] == "mean"
    assert art["teacher_run"] == store.run(rid)["config"]["teacher_run"]
    assert 0 <= lin.min() and lin.max() <= 1 + 1e-9
    rc = main(["cka", "--run", rid, "--runs", str(store.root), "--pool", "cls", "--max-examples", "20", "--quiet"])
    assert rc == 0 and store.artifact(rid, "cka:dev:cls")["pool"] == "cls"
    # mistakes: one line, exit code 2
    assert main(["cka", "--run", rid, "--runs", str(store.root), "--split", "nope", "--quiet"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
    assert main(["cka", "--run", "no-such-run", "--runs", str(store.root)]) == 2
    teacher_run = store.run(rid)["config"]["teacher_run"]
    assert main(["cka", "--run", teacher_run, "--runs", str(store.root)]) == 2  # a teacher has no teacher run


def test_cli_cka_without_run(capsys):
    from kdlab.cli import main
    rc = main(["cka", "--preset", "tiny", "--student-layers", "2", "--student-init", "first", "--max-examples", "16",
               "--json"])
    assert rc == 0
    import json
    res = json.loads(capsys.readouterr().out)
    lin = np.array(res["linear"])
    assert lin.shape == (5, 3)
    assert np.allclose(np.diag(lin), 1.0, atol=1e-9) and res["pool"] == "mean" and res["n"] == 16
