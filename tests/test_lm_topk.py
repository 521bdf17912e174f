"""The top-k teacher file: round trip against the teacher, the two dense rebuilds by hand, and a run from it."""
import math

import pytest
import torch

from kdlab.cli import main
from kdlab.errors import KdlabError
from kdlab.lm.data import Encoded
from kdlab.lm.models import tiny_lm
from kdlab.lm.topk import TopKTeacher, dense_logprobs, load_topk, write_topk
from kdlab.runs.store import Store


def test_dense_rebuild_by_hand():
    ids = torch.tensor([[2, 0]])
    lp = torch.log(torch.tensor([[0.5, 0.3]]))
    u = dense_logprobs(ids, lp, 5, "uniform").exp()[0].tolist()
    assert u == pytest.approx([0.3, 0.2 / 3, 0.5, 0.2 / 3, 0.2 / 3])   # the tail 0.2 spread over 3 tokens
    r = dense_logprobs(ids, lp, 5, "renorm").exp()[0].tolist()
    assert r == pytest.approx([0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0, 0.0])
    with pytest.raises(KdlabError, match="topk_tail"):
        dense_logprobs(ids, lp, 5, "spread")


def test_file_round_trips_the_teachers_top_k(tmp_path):
    teacher, tok = tiny_lm(seed=2)
    ex = [Encoded([2, 10, 11, 12, 3], 2), Encoded([2, 20, 21], 0)]
    info = write_topk(teacher, ex, 4, tmp_path / "t.safetensors", pad_id=0, key="k1")
    assert info["tokens"] == 3 + 2 and info["k"] == 4 and info["dense_bytes_per_token"] == 4 * len(tok)
    assert info["bytes_per_token"] < info["dense_bytes_per_token"]
    t = load_topk(tmp_path / "t.safetensors")
    with torch.no_grad():
        full = torch.log_softmax(teacher(torch.tensor([[2, 10, 11, 12, 3]])).logits[0, :-1], -1)
    top = full[1:4].topk(4, -1)   # example 0 scores its completion: positions 1-3 predict tokens 11, 12, 3
    assert torch.equal(t["ids"][:3].long(), top.indices) and torch.allclose(t["logprobs"][:3], top.values)
    assert t["offsets"].tolist() == [0, 3, 5]
    # the batch layout: rows of the examples in batch order, zero off the mask
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])   # batch row 0 = example 1, row 1 = example 0
    got = TopKTeacher(tmp_path / "t.safetensors", "renorm", "k1").batch_logprobs(torch.tensor([1, 0]), mask)
    assert got.shape == (2, 3, len(tok)) and (got[0, 2] == 0).all()
    assert math.isclose(got[1, 0].exp().sum().item(), 1.0, rel_tol=1e-5)
    assert torch.equal(got[1, 0].topk(4).indices, top.indices[0])   # example 0's first row
    with pytest.raises(KdlabError, match="do not match"):
        TopKTeacher(tmp_path / "t.safetensors", "renorm", "k1").batch_logprobs(torch.tensor([1]), mask[:1, :1])
    with pytest.raises(KdlabError, match="other data"):
        TopKTeacher(tmp_path / "t.safetensors", "renorm", "k2")


def test_a_run_from_the_top_k_file(tmp_path, capsys):
    base = ["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "8", "--max-steps",
            "2", "--quiet", "--runs", str(tmp_path)]
    assert main([*base, "--method", "lm-fkl", "--set", "topk=8"]) == 0
    store = Store(tmp_path)
    run = store.runs(kind="student")[0]
    info = store.artifact(run["id"], "topk")
    assert run["status"] == "finished" and info["k"] == 8 and info["bytes_per_token"] < info["dense_bytes_per_token"]
    assert 0 < info["topk_mass"] <= 1
    assert main([*base, "--method", "lm-jsd", "--set", "topk=8", "--set", "topk_tail=renorm"]) == 0
    capsys.readouterr()
    assert main([*base, "--method", "lm-rkl", "--set", "topk=8", "--set", "topk_tail=renorm"]) == 2
    assert "topk_tail=uniform" in capsys.readouterr().err
    assert main([*base, "--method", "gkd", "--set", "topk=8"]) == 2
