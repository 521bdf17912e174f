"""The deploy frontier figure (kdlab.analysis.viz.deploy_frontier): accuracy against latency, one point per model, the
teacher a star, the non-dominated models joined, on hand-made rows."""
from kdlab.analysis import viz

ROWS = {
    "teacher": {"mb": 90.0, "params": 22_000_000, "ms_b1": 8.0, "ms_b32": 2.0, "dev": 0.91},
    "student": {"mb": 45.0, "params": 11_000_000, "ms_b1": 4.0, "ms_b32": 1.0, "dev": 0.88},
    "onnx": {"mb": 45.0, "params": 11_000_000, "ms_b1": 3.0, "ms_b32": 0.9, "dev": 0.88},
    "int8": {"mb": 12.0, "params": 11_000_000, "ms_b1": 3.5, "ms_b32": 0.8, "dev": 0.86},   # slower and worse
    "static": {"mb": 8.0, "params": 2_000_000, "ms_b1": 0.05, "ms_b32": 0.01, "dev": 0.80},
    "unmeasured": {"mb": 1.0, "ms_b1": 0.01},
}


def test_frontier_models_are_the_non_dominated_ones_fastest_first():
    assert viz.frontier_models(ROWS, "dev") == ["static", "onnx", "teacher"]
    # at batch 32 int8 is the fastest of the 0.8x-ms models: not dominated there
    assert viz.frontier_models(ROWS, "dev", "ms_b32") == ["static", "int8", "onnx", "teacher"]


def test_deploy_frontier_one_point_per_model_teacher_starred():
    fig = viz.deploy_frontier(ROWS, "dev")
    by = {t.name: t for t in fig.data}
    assert set(by) == {"frontier", "models", "teacher"}
    assert list(by["teacher"].x) == [8.0] and by["teacher"].marker.symbol == "star"
    assert list(by["models"].text) == ["student", "onnx", "int8", "static"]   # no point without a dev value
    assert list(by["models"].y) == [0.88, 0.88, 0.86, 0.80]
    assert list(by["frontier"].x) == [0.05, 3.0, 8.0]
    sizes = dict(zip(by["models"].text, by["models"].marker.size))
    assert sizes["student"] > sizes["int8"] > sizes["static"]   # marker area grows with MB
    assert fig.layout.xaxis.type == "log"
