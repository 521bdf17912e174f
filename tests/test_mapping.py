"""kdlab.kd.mapping: exact layers, RAIL draws, grouped weights, error messages."""

import math

import numpy as np
import pytest
import torch

from kdlab.kd import mapping as mp
from kdlab.errors import KdlabError


def teacher_cols(W):
    """1-based teacher layer per student row (0 = unmapped) for one-hot rows."""
    out = []
    for row in W:
        nz = torch.nonzero(row).flatten().tolist()
        assert len(nz) <= 1
        out.append(nz[0] + 1 if nz else 0)
    return out


@pytest.mark.parametrize("fn", [mp.uniform, mp.first_k, mp.last_k, mp.grouped])
def test_shapes_dtype(fn):
    W = fn(4, 12)
    assert W.shape == (4, 12) and W.dtype == torch.float32


def test_uniform_exact_layers():
    assert teacher_cols(mp.uniform(3, 6)) == [2, 4, 6]
    assert teacher_cols(mp.uniform(6, 12)) == [2, 4, 6, 8, 10, 12]
    assert teacher_cols(mp.uniform(4, 12)) == [3, 6, 9, 12]
    assert teacher_cols(mp.uniform(6, 6)) == [1, 2, 3, 4, 5, 6]
    assert teacher_cols(mp.uniform(4, 6)) == [2, 3, 5, 6]  # 1.5, 3, 4.5, 6 rounded half up
    assert teacher_cols(mp.build("skip", 6, 12)) == [2, 4, 6, 8, 10, 12]


def test_first_last_explicit():
    assert teacher_cols(mp.first_k(3, 12)) == [1, 2, 3]
    assert teacher_cols(mp.last_k(3, 12)) == [10, 11, 12]
    assert teacher_cols(mp.explicit([1, 3, 5, 8, 10, 12], 12)) == [1, 3, 5, 8, 10, 12]
    assert teacher_cols(mp.build("explicit", 6, 12, layers=[1, 3, 5, 8, 10, 12])) == [1, 3, 5, 8, 10, 12]
    assert teacher_cols(mp.explicit([2, 2], 4, allow_duplicates=True)) == [2, 2]


def test_student_init_layers():
    assert mp.teacher_layers_for_student_init("skip", 6, 12) == [1, 3, 5, 7, 9, 11]
    assert mp.teacher_layers_for_student_init("uniform", 3, 6) == [1, 3, 5]
    assert mp.teacher_layers_for_student_init("first", 3, 12) == [0, 1, 2]
    assert mp.teacher_layers_for_student_init("last", 3, 12) == [9, 10, 11]
    assert mp.teacher_layers_for_student_init("explicit", 6, 12, layers=[0, 2, 4, 7, 9, 11]) == [0, 2, 4, 7, 9, 11]
    with pytest.raises(KdlabError, match="0..11"):
        mp.teacher_layers_for_student_init("explicit", 6, 12, layers=[0, 2, 4, 7, 9, 12])
    with pytest.raises(KdlabError, match="unknown"):
        mp.teacher_layers_for_student_init("rail", 6, 12)


def test_rail_sorted_distinct_reproducible():
    draws = {}
    for epoch in range(8):
        W = mp.rail_random(6, 12, seed=3, epoch=epoch)
        assert W.shape == (6, 12)
        cols = teacher_cols(W)
        assert cols[-1] == 0 and W[-1].sum() == 0  # last student row covered by logits
        chosen = cols[:-1]
        assert chosen == sorted(chosen) and len(set(chosen)) == 5
        assert all(1 <= j <= 11 for j in chosen)  # last teacher layer excluded
        assert torch.equal(W, mp.rail_random(6, 12, seed=3, epoch=epoch))
        assert torch.equal(W, mp.build("rail", 6, 12, seed=3, epoch=epoch))
        draws[epoch] = tuple(chosen)
    assert len(set(draws.values())) > 1  # epochs differ
    assert teacher_cols(mp.rail_random(6, 12, seed=4, epoch=0)) != teacher_cols(mp.rail_random(6, 12, seed=3, epoch=0)) \
        or teacher_cols(mp.rail_random(6, 12, seed=5, epoch=0)) != teacher_cols(mp.rail_random(6, 12, seed=3, epoch=0))


def test_rail_uniform_coverage_and_options():
    counts = np.zeros(12)
    for epoch in range(400):
        for j in teacher_cols(mp.rail_random(3, 12, seed=0, epoch=epoch)):
            if j:
                counts[j - 1] += 1
    assert counts[11] == 0
    # each of the 11 layers drawn with prob 2/11 per epoch -> ~72.7 times
    assert counts[:11].min() > 40 and counts[:11].max() < 110
    W = mp.rail_random(3, 4, seed=0, epoch=0, k=3, exclude_last=False)
    assert teacher_cols(W) == sorted(teacher_cols(W)) and W.sum() == 3
    with pytest.raises(KdlabError, match="k=4"):
        mp.rail_random(4, 4, k=4)  # only 3 layers below the top


def test_grouped_contiguous_rows_sum_to_one():
    W = mp.grouped(6, 12)
    for i in range(6):
        assert torch.nonzero(W[i]).flatten().tolist() == [2 * i, 2 * i + 1]
        assert torch.allclose(W[i, 2 * i : 2 * i + 2], torch.tensor([0.5, 0.5]))
    for M, N in [(3, 7), (4, 6), (5, 12), (1, 6), (6, 6)]:
        W = mp.grouped(M, N)
        assert torch.allclose(W.sum(1), torch.ones(M))
        # each teacher layer in exactly one group, groups contiguous and in order
        owner = [int(torch.nonzero(W[:, j]).flatten()[0]) for j in range(N)]
        assert all((W[:, j] > 0).sum() == 1 for j in range(N))
        assert owner == sorted(owner) and set(owner) == set(range(M))
        sizes = [int((W[i] > 0).sum()) for i in range(M)]
        assert max(sizes) - min(sizes) <= 1
    assert torch.equal(mp.build("ckd", 3, 7), mp.grouped(3, 7))


def test_from_matrix_and_pairs():
    W = mp.from_matrix([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], 2, 3)
    assert W.dtype == torch.float32
    assert mp.pairs(W) == [(1, 2, 1.0), (2, 1, 0.5), (2, 3, 0.5)]
    assert mp.pairs(mp.uniform(3, 6)) == [(1, 2, 1.0), (2, 4, 1.0), (3, 6, 1.0)]
    assert torch.equal(mp.build("matrix", 2, 3, matrix=np.array([[0, 1, 0], [0.5, 0, 0.5]])), W)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: mp.uniform(7, 6), ["cannot have more layers", "M=7", "N=6", "at most 6"]),
        (lambda: mp.build("first", 13, 12), ["more layers"]),
        (lambda: mp.explicit([1, 2, 3], 12, 6), ["3 entries", "6 layers"]),
        (lambda: mp.explicit([1, 2, 13], 12), ["13", "out of range", "1..12"]),
        (lambda: mp.explicit([0, 2], 12), ["0", "1..12"]),
        (lambda: mp.explicit([2, 2, 4], 12), ["duplicate", "2"]),
        (lambda: mp.explicit([1.5, 2], 12), ["not an integer"]),
        (lambda: mp.build("explicit", 2, 12), ["needs"]),
        (lambda: mp.from_matrix([[1.0, -0.5]], 1, 2), ["negative"]),
        (lambda: mp.from_matrix([[1.0, float("nan")]], 1, 2), ["non-finite"]),
        (lambda: mp.from_matrix([[1.0, float("inf")]], 1, 2), ["non-finite"]),
        (lambda: mp.from_matrix([[1.0, 0.0]], 2, 2), ["shape", "[2, 2]"]),
        (lambda: mp.build("matrix", 2, 2), ["matrix"]),
        (lambda: mp.build("zigzag", 2, 4), ["unknown", "zigzag", "uniform"]),
        (lambda: mp.uniform(0, 4), ["at least 1"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(KdlabError) as ei:
        call()
    msg = str(ei.value)
    for w in words:
        assert w in msg, (w, msg)


def test_alp_weights_are_the_batch_mean_attention_over_teacher_cls():
    g = torch.Generator().manual_seed(0)
    th = [torch.randn(5, 7, 8, generator=g) for _ in range(5)]  # embeddings + 4 teacher layers
    sh = [torch.randn(5, 7, 8, generator=g) for _ in range(3)]  # embeddings + 2 student layers
    W = mp.alp_weights(sh, th)
    assert W.shape == (2, 4) and W.dtype == torch.float32
    assert torch.allclose(W.sum(1), torch.ones(2), atol=1e-6) and (W > 0).all()
    # row 2 by hand: softmax_j <s_b, t_bj> per example, then the mean over the batch
    eps = torch.stack([(sh[2][:, 0] * th[j][:, 0]).sum(-1) for j in range(1, 5)], dim=1)
    assert torch.allclose(W[1], torch.softmax(eps, dim=1).mean(0), atol=1e-6)
    with pytest.raises(KdlabError, match="project the student"):
        mp.alp_weights([torch.randn(5, 7, 4) for _ in range(3)], th)


def test_round_half_up_and_one_hot_layers():
    assert [mp.round_half_up(x) for x in (0.5, 1.5, 2.5, 2.49)] == [1, 2, 3, 2]
    assert mp.one_hot_layers(mp.uniform(3, 6)) == [2, 4, 6]
    assert mp.one_hot_layers(mp.explicit([1, 5], 6)) == [1, 5]
    assert mp.one_hot_layers(np.array([[0, 0.5, 0], [1, 0, 0]])) == [2, 1]   # one pair per row, any weight
    assert mp.one_hot_layers(mp.grouped(2, 4)) is None                      # two pairs in a row
    assert mp.one_hot_layers(mp.rail_random(3, 6)) is None                  # an empty row


def test_parse_layers():
    assert mp.parse_layers("2, 4,6") == [2, 4, 6] and mp.parse_layers("3,") == [3] and mp.parse_layers("") == []
    with pytest.raises(KdlabError, match=r"'2,x' is not a comma-separated list of layer numbers, e.g. 1,3"):
        mp.parse_layers("2,x", example="1,3")


def test_edit_sets_adds_and_validates():
    W = mp.uniform(2, 4)                                     # S1 <- T2, S2 <- T4
    E = mp.edit(W, [("add", 2, 3, 0.5)])
    assert E.tolist() == [[0, 1, 0, 0], [0, 0, 0.5, 1]] and W.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]  # a copy
    assert mp.edit(W, [("add", 2, 3, 0.5), ("row", 1, 1, 2.0)]).tolist() == [[2, 0, 0, 0], [0, 0, 0.5, 1]]
    assert mp.edit(np.asarray(W), [("add", 3, 1, 1.0), ("row", 1, 9, 1.0)]).tolist() == W.tolist()  # outside: skipped
    assert mp.edit(W, []).dtype == torch.float32
    with pytest.raises(KdlabError, match="negative"):
        mp.edit(W, [("add", 1, 1, -1.0)])
    with pytest.raises(KdlabError, match="unknown mapping edit 'swap'"):
        mp.edit(W, [("swap", 1, 1, 1.0)])


def test_method_flags():
    assert mp.method_flags(mp.uniform(3, 6)) == "--set mapping=explicit --set mapping_layers=2,4,6"
    assert mp.method_flags(mp.grouped(2, 4)) == \
        "--method hidden --set mapping=matrix --set mapping_matrix=[[0.5,0.5,0.0,0.0],[0.0,0.0,0.5,0.5]]"
    # one pair per row but a weight other than 1: the whole matrix, so the weight is kept
    assert mp.method_flags(np.array([[0.0, 0.1], [1.0, 0.0]])) == \
        "--method hidden --set mapping=matrix --set mapping_matrix=[[0.0,0.1],[1.0,0.0]]"


def test_alp_weights_of_two_models_is_alp_weights_of_their_features():
    from kdlab.data.batching import make_loader
    from kdlab.data.loaders import load_data
    from kdlab.models.features import Need, features
    from kdlab.models.core import build_student, tiny_model
    teacher, tok = tiny_model()
    student = build_student(teacher, layers=2, init="uniform")
    teacher.eval(), student.eval()
    batch = next(iter(make_loader(load_data(None, max_train=8, max_eval=8).dev, tok, batch_size=8, max_len=16)))
    from kdlab.tools.cka_run import alp_weights_of
    W = alp_weights_of(teacher, student, batch)
    with torch.no_grad():
        ft, fs = features(teacher, batch, Need(hidden=True)), features(student, batch, Need(hidden=True))
    assert W.shape == (2, teacher.config.num_hidden_layers) and not W.requires_grad
    assert torch.allclose(W, mp.alp_weights(fs.hidden, ft.hidden), atol=1e-6)
    assert torch.allclose(W.sum(1), torch.ones(2), atol=1e-5)
