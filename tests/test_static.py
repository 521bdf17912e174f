"""The static-embedding student (kdlab.models.static): its token table against a hand-computed Model2Vec recipe on a tiny
teacher built in code (each token alone through the encoder, mean-pooled, PCA by numpy's SVD, log(1 + id)
weights), its masked mean, save/load, and the one-line refusals; one short end-to-end run through distill,
compress --onnx and eval --model."""
import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.models.core import load_saved, save_model, tiny_model
from kdlab.models.static import StaticForSequenceClassification, build_student, zipf_weights

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def teacher():
    model, tok = tiny_model()
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def student(teacher):
    return build_student(*teacher, 2, dim=8, **QUIET)


def _hand_table(model, tok, dim):
    vecs = []
    with torch.no_grad():
        for i in range(len(tok)):
            ids = torch.tensor([[tok.cls_token_id, i, tok.sep_token_id]])
            h = model.bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
            vecs.append(h.mean(0).numpy().astype(np.float64))
    x = np.stack(vecs)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:dim].T
    return proj * np.log(np.arange(1, len(tok) + 1))[:, None]


def test_table_is_the_teachers_token_embeddings_reduced_by_pca_and_zipf_weighted(teacher, student):
    model, tok = teacher
    want = _hand_table(model, tok, 8)
    got = student.embeddings.weight.detach().numpy().astype(np.float64)
    assert got.shape == (len(tok), 8)
    signs = np.sign((want * got).sum(0))   # a PCA component is defined up to its sign
    assert np.allclose(got, want * signs, atol=2e-4)
    assert np.allclose(zipf_weights(4), np.log([1, 2, 3, 4])) and not got[0].any()   # id 0 weighs log 1 = 0


def test_sentence_vector_is_the_mean_of_its_real_tokens_rows(teacher, student):
    _, tok = teacher
    student.eval()
    enc = tok(["a good film", "bad"], padding=True, return_tensors="pt")
    out = student(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    w = student.embeddings.weight
    ids = tok("bad")["input_ids"]
    by_hand = student.classifier(w[ids].mean(0))
    assert torch.allclose(out[1], by_hand, atol=1e-5)


def test_static_student_saves_in_safetensors_and_reloads(teacher, student, tmp_path):
    _, tok = teacher
    save_model(student, tok, tmp_path / "s")
    assert (tmp_path / "s" / "model.safetensors").exists()
    again, tok2 = load_saved(tmp_path / "s")
    assert isinstance(again, StaticForSequenceClassification)
    enc = tok(["a good film"], return_tensors="pt")
    student.eval()
    a = student(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    b = again(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.equal(a, b)


def test_refusals_are_one_line(tmp_path):
    from kdlab.config import build_config
    from kdlab.methods import get
    from kdlab.models.students import check_student_choice
    from kdlab.tasks import Task
    cfg = build_config(preset="tiny", method="kd", student="static")
    with pytest.raises(KdlabError, match="sentence pair"):
        check_student_choice(cfg, get("kd"), Task("rte", text_cols=("a", "b")))
    with pytest.raises(KdlabError, match="cannot train the static student"):
        check_student_choice(build_config(preset="tiny", method="pkd-skip", student="static"), get("pkd-skip"),
                             Task("x"))
    with pytest.raises(KdlabError, match="builds its own student"):
        check_student_choice(build_config(preset="tiny", method="bilstm", student="static"), get("bilstm"), Task("x"))
    check_student_choice(build_config(preset="tiny", method="ce", student="static"), get("ce"), Task("x"))
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    with pytest.raises(KdlabError, match="static student is a classifier"):
        distill_run(build_config(method="margin-mse", student="static"), Store(tmp_path / "runs"), **QUIET)


def test_distill_static_then_onnx_and_eval(tmp_path):
    from kdlab.config import build_config
    from kdlab.deploy.artifacts import compress_run
    from kdlab.deploy.report import eval_models
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    cfg = build_config(preset="tiny", method="kd", student="static", max_train=200, max_steps=20,
                       teacher_epochs=1, no_progress=True)
    rid = distill_run(cfg, store, **QUIET)
    info = compress_run(store, rid, onnx=True, **QUIET)
    assert info["steps"][-1]["max_abs_diff_vs_pytorch"] < 1e-4
    with pytest.raises(KdlabError, match="int8 quantizes linear layers"):
        compress_run(store, rid, quantize="int8", **QUIET)
    res = eval_models(store, rid, ["onnx"], rounds=1, **QUIET)
    rows = res["models"]
    assert rows["onnx"]["dev"] == rows["student"]["dev"] and rows["student"]["params"] < rows["teacher"]["params"]


def test_the_optimiser_gives_the_static_student_its_learning_rate_scale(teacher, student):
    from kdlab.engine.distill import make_optimizer, param_groups
    opt = make_optimizer(param_groups([student, teacher[0]], 0.01), 1e-4)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(student.embeddings.weight)] == pytest.approx(1e-4 * student.lr_scale) == pytest.approx(1e-2)
    assert lr_of[id(student.classifier.bias)] == pytest.approx(1e-2)
    assert lr_of[id(teacher[0].classifier.weight)] == pytest.approx(1e-4)
