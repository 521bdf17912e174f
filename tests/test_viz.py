"""kdlab.analysis.viz: every figure's data checked against its inputs (values, shapes, annotations)."""
import math

import numpy as np
import pytest
import torch

from kdlab.analysis import viz
from kdlab.analysis.evaluate import calibration_bins
from kdlab.kd.mapping import grouped, uniform


def test_soften_entropy_hand_values():
    # softmax([ln 1, ln 3]) = [0.25, 0.75]; at T=2: softmax([0, ln3 / 2]) = [1, sqrt 3] / (1 + sqrt 3)
    z = [0.0, math.log(3.0)]
    assert np.allclose(viz.soften(z, 1.0), [0.25, 0.75])
    r3 = math.sqrt(3.0)
    assert np.allclose(viz.soften(z, 2.0), [1 / (1 + r3), r3 / (1 + r3)])
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert viz.entropy([0.25, 0.75]) == pytest.approx(h)
    assert viz.entropy([1.0, 0.0]) == 0.0
    assert np.allclose(viz.soften(torch.tensor([[0.0, 0.0]]), 5.0), [[0.5, 0.5]])


def test_smooth_debiased_ema():
    # weight 0.5: acc1 = 0.5*2 = 1 -> 1/(1-0.5) = 2; acc2 = 0.5*1 + 0.5*4 = 2.5 -> 2.5/0.75 = 3.333...
    assert viz.smooth([2.0, 4.0], 0.5) == pytest.approx([2.0, 10 / 3])
    assert viz.smooth([1.0, 5.0, 3.0], 0.0) == [1.0, 5.0, 3.0]
    with pytest.raises(ValueError):
        viz.smooth([1.0], 1.0)


def test_cosine_matrix_hand_values():
    a = [[1.0, 0.0], [1.0, 1.0]]
    b = [[0.0, 2.0], [3.0, 0.0]]
    S = viz.cosine_matrix(a, b)
    s2 = 1 / math.sqrt(2)
    assert np.allclose(S, [[0.0, 1.0], [s2, s2]])


def test_mapping_heatmap_annotated():
    W = uniform(3, 6)  # S1<-T2, S2<-T4, S3<-T6
    fig = viz.mapping_heatmap(W)
    hm = fig.data[0]
    assert np.array(hm.z).shape == (3, 6)
    assert list(hm.x) == ["T1", "T2", "T3", "T4", "T5", "T6"] and list(hm.y) == ["S1", "S2", "S3"]
    assert hm.text[0][1] == "1.00" and hm.text[1][3] == "1.00" and hm.text[2][5] == "1.00"
    assert sum(t != "" for row in hm.text for t in row) == 3
    assert hm.texttemplate == "%{text}"
    fig = viz.mapping_heatmap(grouped(3, 6))  # rows of 0.5 on pairs of teacher layers
    assert fig.data[0].text[2][4] == "0.50" and fig.data[0].text[2][5] == "0.50" and fig.data[0].text[0][2] == ""
    assert np.allclose(np.array(fig.data[0].z).sum(1), 1.0)


def test_cka_heatmap_orientation():
    C = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]])  # 2 teacher layers (rows) x 3 student layers (cols)
    fig = viz.cka_heatmap(C)
    hm = fig.data[0]
    assert list(hm.y) == ["T0", "T1"] and list(hm.x) == ["S0", "S1", "S2"]
    assert hm.z[1][1] == 0.8 and hm.text[0][2] == "0.20"
    assert list(viz.cka_heatmap(C, with_embeddings=False).data[0].y) == ["T1", "T2"]
    nan = viz.cka_heatmap(np.array([[np.nan, 0.5], [0.25, 1.0]])).data[0]  # undefined entries: gaps, no label
    assert nan.z[0][0] is None and nan.text[0][0] == "" and nan.z[1][0] == 0.25 and nan.text[1][1] == "1.00"


def test_softened_distributions_bars():
    fig = viz.softened_distributions([0.0, math.log(3.0)], [math.log(3.0), 0.0], T=1.0, label_names=["neg", "pos"])
    assert [d.name for d in fig.data] == ["teacher", "student"]
    assert np.allclose(fig.data[0].y, [0.25, 0.75]) and np.allclose(fig.data[1].y, [0.75, 0.25])
    assert list(fig.data[0].x) == ["neg", "pos"] and fig.data[0].text[1] == "0.750"
    assert "T = 1" in fig.layout.title.text
    only = viz.softened_distributions([1.0, 2.0, 3.0], T=4.0)
    assert len(only.data) == 1 and len(only.data[0].y) == 3


def test_entropy_curve_values_and_limit():
    z = np.array([0.0, math.log(3.0)])
    fig = viz.entropy_curve({"teacher": z}, [1.0, 2.0], current_T=2.0)
    ys = fig.data[0].y
    assert ys[0] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    p = viz.soften(z, 2.0)
    assert ys[1] == pytest.approx(float(-(p * np.log(p)).sum()))
    assert ys[1] > ys[0]  # softer at higher T
    hline = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert hline and hline[0].y0 == pytest.approx(math.log(2))
    assert any(s.x0 == 2.0 and s.x1 == 2.0 for s in fig.layout.shapes)


def _rows():
    rows = []
    for step in (1, 2, 3):
        rows += [dict(step=step, name="loss", value=10.0 * step),
                 dict(step=step, name="hidden_mse/s1-t2", value=float(step)),
                 dict(step=step, name="hidden_mse/s2-t4", value=2.0 * step),
                 dict(step=step, name="cos/s2-t4", value=0.5)]
    return rows


def test_per_layer_series_and_multiples():
    ser = viz.per_layer_series(_rows())
    assert list(ser) == [(1, 2), (2, 4)]
    assert ser[(2, 4)]["hidden_mse"] == ([1, 2, 3], [2.0, 4.0, 6.0])
    fig = viz.per_layer_multiples(_rows(), smoothing=0.0, cols=3)
    assert [a.text for a in fig.layout.annotations] == ["S1 <- T2", "S2 <- T4"]
    traces = {(t.meta, t.name): list(t.y) for t in fig.data}
    assert traces[("s1-t2", "hidden_mse")] == [1.0, 2.0, 3.0]
    assert traces[("s2-t4", "hidden_mse")] == [2.0, 4.0, 6.0] and traces[("s2-t4", "cos")] == [0.5] * 3
    assert len(fig.data) == 3  # "loss" is not a per-layer name
    sm = viz.per_layer_multiples(_rows(), smoothing=0.5)
    assert [t.y for t in sm.data if t.meta == "s1-t2"][0][1] == pytest.approx(viz.smooth([1, 2, 3], 0.5)[1])
    empty = viz.per_layer_multiples([dict(step=1, name="loss", value=1.0)])
    assert len(empty.data) == 0 and "no per-layer" in empty.layout.annotations[0].text


def test_run_curves_overlay():
    fig = viz.run_curves({"a": ([1, 2], [3.0, 1.0]), "b": ([1, 2, 3], [2.0, 2.0, 2.0])}, "loss")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].y) == [3.0, 1.0] and list(fig.data[1].x) == [1, 2, 3]
    fig = viz.run_curves({"a": ([1, 2], [2.0, 4.0])}, "loss", smoothing=0.5)
    assert list(fig.data[0].y) == pytest.approx([2.0, 10 / 3])


def test_domain_accuracy_bars_with_drop():
    acc = {"teacher": {"ood_x": 0.7, "dev": 0.9}, "student": {"dev": 0.8, "ood_x": 0.5}}
    fig = viz.domain_accuracy_bars(acc)
    assert list(fig.data[0].x) == ["dev", "ood_x"]  # in-domain first
    assert list(fig.data[0].y) == [0.9, 0.7] and list(fig.data[1].y) == [0.8, 0.5]
    assert fig.data[0].text[1] == "0.700 (-0.200)" and fig.data[1].text[1] == "0.500 (-0.300)"
    assert fig.data[1].text[0] == "0.800"
    assert viz.drop_table(acc)["student"]["ood_x"] == pytest.approx(-0.3)


def test_reliability_diagram_from_calibration_bins():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    bins = calibration_bins(probs, labels, bins=10)
    fig = viz.reliability_diagram({"student": bins}, {"student": 0.123})
    diag, bars = fig.data
    assert list(diag.x) == [0, 1] and list(diag.y) == [0, 1]
    # non-empty bins: (0.6,0.7] conf .6 and .7? 0.6 -> bin (0.5,0.6]; 0.7 -> (0.6,0.7]; 0.9 -> (0.8,0.9]; .95 -> (0.9,1]
    assert list(bars.x) == pytest.approx([0.55, 0.65, 0.85, 0.95])
    assert list(bars.y) == [1.0, 1.0, 0.0, 1.0]
    assert bars.name == "student (ECE 0.123)"
    assert [c[0] for c in bars.customdata] == [1, 1, 1, 1]


def test_attention_heatmaps_and_hidden_similarity():
    tokens = ["[CLS]", "good", "[SEP]"]
    ta = torch.eye(3)
    sa = torch.full((3, 3), 1 / 3)
    fig = viz.attention_heatmaps(ta, sa, tokens)
    assert len(fig.data) == 2
    assert fig.data[0].z[1][1] == 1.0 and fig.data[1].z[0][2] == pytest.approx(1 / 3)
    assert list(fig.data[0].x) == ["0:[CLS]", "1:good", "2:[SEP]"]
    with pytest.raises(ValueError):
        viz.attention_heatmaps(torch.eye(2), sa, tokens)
    th = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sh = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    hm = viz.hidden_similarity(th, sh, tokens).data[0]
    assert hm.z[0][0] == pytest.approx(1.0) and hm.z[1][1] == pytest.approx(-1.0)
    assert hm.z[2][0] == pytest.approx(1 / math.sqrt(2)) and hm.z[0][1] == pytest.approx(0.0)


def test_term_series_keeps_the_loss_terms_only():
    from kdlab.analysis.viz import term_series
    rows = [{"step": 1, "name": "loss", "value": 1.0}, {"step": 1, "name": "lr", "value": 1e-4},
            {"step": 1, "name": "kd", "value": 0.6}, {"step": 1, "name": "ce", "value": 0.4},
            {"step": 1, "name": "hidden/s1-t2", "value": 0.2}, {"step": 2, "name": "kd", "value": 0.5},
            {"step": 2, "name": "grad_scale", "value": 1024.0}]
    got = term_series(rows)
    assert list(got) == ["kd", "ce"]
    assert got["kd"] == ([1, 2], [0.6, 0.5]) and got["ce"] == ([1], [0.4])
