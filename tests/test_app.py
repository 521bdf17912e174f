"""The dashboard under streamlit.testing.v1.AppTest: every page, its widgets, its figures' data.

A tiny finished run (tiny teacher, 96 training examples, 3 steps) is prepared once in a temporary run
store with kdlab.pipeline.distill_run, so Compare / Out of domain / Inspect have data.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    from kdlab.config import RunConfig, TrainConfig
    from kdlab.pipeline import distill_run
    from kdlab.store import Store
    root = tmp_path_factory.mktemp("runs")
    old = {k: os.environ.get(k) for k in ("KDLAB_RUNS", "KDLAB_APP_PRESET")}
    os.environ["KDLAB_RUNS"] = str(root)
    os.environ["KDLAB_APP_PRESET"] = "tiny"
    # the same teacher settings as the dashboard's tiny defaults, so the app finds the prepared teacher
    cfg = RunConfig(teacher="tiny", max_train=96, max_eval=48, student_layers=2, method="hidden", name="hid",
                    train=TrainConfig(max_steps=3, epochs=1, batch_size=16, max_len=32, progress=False),
                    teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False))
    rid = distill_run(cfg, Store(root), log=lambda m: None)
    yield root, rid
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def charts(at) -> dict:
    return {spec(c)["layout"]["title"]["text"]: spec(c) for c in at.get("plotly_chart")}


def no_errors(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def app(store_root):
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    return at


def test_setup_page(app, store_root):
    at = app
    no_errors(at)
    assert "96 train" in at.success[0].value and "48 dev" in at.success[0].value
    assert any("fine-tuned teacher ready" in i.value for i in at.info)
    at.button(key="setup_measure").click().run()
    no_errors(at)
    sizes = at.session_state["setup_sizes"]
    t, s = sizes["teacher (fine-tuned)"], sizes["student"]
    assert t["layers"] == 4 and s["layers"] == 2 and s["params"] < t["params"]
    assert t["latency_ms"] > 0 and s["latency_ms"] > 0
    # a data file outside the allowed folders is refused with one message, not a traceback
    at.radio(key="setup_data_kind").set_value("file or folder").run()
    at.text_input(key="setup_data_text").input("/etc/passwd").run()
    assert not at.exception
    assert any("outside the allowed folders" in e.value for e in at.error)
    at.radio(key="setup_data_kind").set_value("embedded synthetic (3 domains)").run()
    no_errors(at)


def alp_expected(store_root, n: int) -> np.ndarray:
    """ALP-KD's batch-mean attention computed here from the stored teacher and a skip-copied student."""
    import torch
    from kdlab import losses
    from kdlab.data.batching import make_loader
    from kdlab.data.loaders import load_data
    from kdlab.features import Need, features
    from kdlab.models import build_student, load_saved
    from kdlab.store import Store
    root, rid = store_root
    store = Store(root)
    t, tok = load_saved(store.artifact(store.run(rid)["config"]["teacher_run"], "model_dir"))
    stu = build_student(t, layers=2, init="skip")
    dev = load_data(None, max_train=96, max_eval=48, seed=0).dev
    batch = next(iter(make_loader(dev, tok, batch_size=n, max_len=32)))
    with torch.inference_mode():
        ft, fs = features(t.eval(), batch, Need(hidden=True)), features(stu.eval(), batch, Need(hidden=True))
    ts = torch.stack([ft.hidden[j][:, 0] for j in range(1, 5)], dim=1)
    return np.stack([losses.alp_attention(fs.hidden[i][:, 0], ts)[0].mean(0).numpy() for i in (1, 2)])


def test_layer_mapping_page(app, store_root):
    at = app
    at.switch_page("pages/2_Layer_mapping.py").run()
    no_errors(at)
    hm = spec(at.get("plotly_chart")[0])["data"][0]
    assert np.array(hm["z"]).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]  # uniform 2 <- 4: T2, T4
    at.selectbox(key="map_strategy").set_value("grouped (CKD)").run()
    hm = spec(at.get("plotly_chart")[0])["data"][0]
    assert np.array(hm["z"]).tolist() == [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]] and hm["text"][0][1] == "0.50"
    at.selectbox(key="map_strategy").set_value("random (RAIL-KD)").run()
    z0 = spec(at.get("plotly_chart")[0])["data"][0]["z"]
    assert np.array(z0).sum() == 1  # k = M - 1 = 1 drawn layer, from 1..N-1
    assert np.array(z0)[1].sum() == 0 and np.array(z0)[0][3] == 0
    draws = {str(z0)}
    for e in range(1, 6):
        at.slider(key="map_epoch").set_value(e).run()
        draws.add(str(spec(at.get("plotly_chart")[0])["data"][0]["z"]))
    assert len(draws) > 1  # redrawn across epochs
    at.selectbox(key="map_strategy").set_value("explicit").run()
    at.text_input(key="map_explicit").input("3,4").run()
    no_errors(at)
    assert np.array(spec(at.get("plotly_chart")[0])["data"][0]["z"]).tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]
    at.text_input(key="map_explicit").input("3,9").run()  # out of range -> one message
    assert not at.exception and "out of range" in at.error[0].value
    at.text_input(key="map_explicit").input("1,2").run()
    # edit by pairs: student 2 takes teacher 3 with weight 0.5 as well
    at.selectbox(key="map_edit_s").set_value(2)
    at.selectbox(key="map_edit_t").set_value(3)
    at.number_input(key="map_edit_w").set_value(0.5)
    at.button(key="map_edit_add").click().run()
    no_errors(at)
    assert np.array(spec(at.get("plotly_chart")[0])["data"][0]["z"]).tolist() == [[1, 0, 0, 0], [0, 1, 0.5, 0]]
    # a weighted matrix is shown as a command the `hidden` method accepts
    cmd = "--method hidden --set mapping=matrix --set mapping_matrix=[[1.0,0.0,0.0,0.0],[0.0,1.0,0.5,0.0]]"
    assert any(c.value == cmd for c in at.code), [c.value for c in at.code]
    at.button(key="map_edit_reset").click().run()
    at.selectbox(key="map_strategy").set_value("last").run()
    assert np.array(spec(at.get("plotly_chart")[0])["data"][0]["z"]).tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]
    # ALP weights: ALP-KD's attention over all teacher layers for the untrained student, rows sum to 1
    at.selectbox(key="map_strategy").set_value("ALP weights (ALP-KD)").run()
    no_errors(at)
    hm = spec(at.get("plotly_chart")[0])["data"][0]
    Wa = np.array(hm["z"], dtype=float)
    assert Wa.shape == (2, 4) and np.allclose(Wa.sum(1), 1, atol=1e-5) and (Wa > 0).all()
    assert hm["text"][1][2] == f"{Wa[1, 2]:.2f}"
    np.testing.assert_allclose(Wa, alp_expected(store_root, n=32), atol=1e-5)
    at.radio(key="map_alp_src").set_value("a stored alp-kd run").run()
    assert not at.exception and any("no ALP-KD run" in i.value for i in at.info)
    at.radio(key="map_alp_src").set_value("the untrained student on dev examples").run()
    at.selectbox(key="map_strategy").set_value("uniform").run()
    at.slider(key="map_cka_n").set_value(16)
    at.button(key="map_cka_go").click().run()
    no_errors(at)
    cka = charts(at)["CKA: teacher vs student layers"]["data"][0]
    C = np.array(cka["z"], dtype=float)
    assert C.shape == (5, 3) and np.all(C <= 1 + 1e-9) and np.all(C >= -1e-9)
    # the untrained student copies teacher layers 2 and 4 (skip) and the embeddings: identical embeddings, close states
    assert C[0, 0] == pytest.approx(1.0) and C[2, 1] > 0.9


def test_temperature_lab(app):
    at = app
    at.switch_page("pages/3_Temperature_lab.py").run()
    no_errors(at)

    def state():
        c = charts(at)
        d = [v for k, v in c.items() if k.startswith("Softened")][0]["data"]
        return {m.label: m.value for m in at.metric}, d

    at.slider(key="temp_T").set_value(1.0).run()
    m1, d1 = state()
    at.slider(key="temp_T").set_value(4.0).run()
    m4, d4 = state()
    no_errors(at)
    pt1, pt4 = np.array(d1[0]["y"]), np.array(d4[0]["y"])
    assert pt1.sum() == pytest.approx(1) and pt4.max() < pt1.max()  # softer at T = 4
    # the KD loss shown is T^2 times the KL shown
    kl4 = float(m4["KL(p_T || q_S) at T=4"])
    assert float(m4["KD loss T² · KL"]) == pytest.approx(16 * kl4, rel=1e-3, abs=1e-5)
    assert float(m4["teacher entropy (nats)"]) > float(m1["teacher entropy (nats)"])
    ent = charts(at)["Entropy of the softened distribution vs temperature"]
    assert [d["name"] for d in ent["data"]] == ["teacher", "student"]
    # the trained student from the store
    at.selectbox(key="temp_student").set_value(at.selectbox(key="temp_student").options[1]).run()
    at.selectbox(key="temp_example").set_value(3).run()
    no_errors(at)


def test_train_page_shows_stored_run(app, store_root):
    at = app
    at.switch_page("pages/4_Train.py").run()
    no_errors(at)
    c = charts(at)
    assert "loss by step (smoothing 0.3)" in c
    pl = c["Per-layer losses (smoothing 0.6)"]
    assert [a["text"] for a in pl["layout"]["annotations"]] == ["S1 <- T2", "S2 <- T4"]
    assert {d["meta"] for d in pl["data"]} == {"s1-t2", "s2-t4"}
    w = [v for k, v in c.items() if k.startswith("W at step")][0]["data"][0]
    assert np.array(w["z"]).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert any("status: **finished**" in m.value for m in at.markdown)
    from kdlab.methods import names
    opts = at.selectbox(key="train_method").options
    assert sorted(opts) == sorted(names())
    assert {"newsbert", "dml", "takd", "tf-kd-self", "tf-kd-reg", "crd", "srrd", "bilstm", "sad"} <= set(opts)
    # bad method options: one message, nothing started
    at.text_area(key="train_opts").input('{"no_such_option": 1}')
    at.button[0].click().run()
    assert not at.exception and "has no option" in at.error[0].value
    assert "train_job" not in at.session_state


def test_train_page_cancels_a_running_run(app, store_root):
    from kdlab.store import Store
    root, _ = store_root
    store = Store(root)
    rid = store.create_run("student", "kd", {"train": {"max_steps": 10}}, name="to-cancel")  # alive: this pid
    store.log_metrics(rid, 2, 0, {"loss": 1.0})
    try:
        at = app
        at.switch_page("pages/4_Train.py").run()
        at.selectbox(key="train_follow").set_value(rid).run()
        no_errors(at)
        assert any("status: **running** · step **2** / 10" in m.value for m in at.markdown)
        assert not store.cancel_requested(rid)
        at.button(key="train_cancel").click().run()
        assert not at.exception
        assert store.cancel_requested(rid)  # the loop stops after its current step (kdlab.tools.launch.cancel)
        assert any("cancel requested" in w.value for w in at.warning)
    finally:
        store.finish(rid, "cancelled")


def test_setup_prepares_the_teacher_with_a_progress_bar(store_root, tmp_path):
    """The Prepare button fine-tunes the teacher in a separate process and fills a progress bar."""
    from kdlab.store import Store
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["kd_runs_root"] = str(tmp_path)  # its own store: the other tests see one teacher run
    at.run()
    at.number_input(key="setup_teacher_epochs").set_value(2).run()  # not prepared yet with 2 epochs
    no_errors(at)
    assert any("not fine-tuned" in w.value for w in at.warning)
    at.button(key="setup_prepare").click().run()
    no_errors(at)
    assert any("teacher fine-tuned and cached" in m.value for m in at.success)
    bar = at.get("progress")[0].proto
    assert bar.value == 100 and bar.text == "done"
    runs = Store(tmp_path).runs(kind="teacher")
    assert len(runs) == 1 and runs[0]["status"] == "finished" and runs[0]["config"]["train"]["epochs"] == 2
    assert max(m["step"] for m in Store(tmp_path).metrics(runs[0]["id"])) == 12  # 2 epochs x 96 / 16
    at.run()
    assert any("fine-tuned teacher ready" in i.value for i in at.info)


def test_compare_runs(app, store_root):
    from kdlab.store import Store
    at = app
    at.switch_page("pages/5_Compare_runs.py").run()
    no_errors(at)
    root, rid = store_root
    ms = at.multiselect(key="cmp_runs")
    ms.set_value(ms.options[:0] + [rid] + [r["id"] for r in Store(root).runs(kind="teacher")]).run()
    no_errors(at)
    diff = at.dataframe[0].value  # the config differences come first
    assert "method" in diff.index and list(diff.loc["method"]) == ["hidden", "ce"]
    curves = charts(at)["loss by step"]["data"]
    assert len(curves) == 2
    stored = [m["value"] for m in Store(root).metrics(rid) if m["name"] == "loss"]
    assert curves[0]["y"] == pytest.approx(stored)
    bars = charts(at)["Accuracy per domain (drop vs dev in brackets)"]["data"]
    ev = Store(root).final_evals(rid)
    assert bars[0]["y"][0] == pytest.approx(ev["dev"]["accuracy"])


def test_out_of_domain(app, store_root):
    from kdlab.evaluate import ece, softmax
    from kdlab.store import Store
    at = app
    at.switch_page("pages/6_Out_of_domain.py").run()
    no_errors(at)
    root, rid = store_root
    store = Store(root)
    bars = charts(at)["Accuracy per domain (drop vs dev in brackets)"]["data"]
    assert [b["name"] for b in bars] == ["teacher", "hid"]
    ev = store.final_evals(rid)
    i = bars[1]["x"].index("ood_restaurant")
    drop = ev["ood_restaurant"]["accuracy"] - ev["dev"]["accuracy"]
    assert bars[1]["text"][i] == f"{ev['ood_restaurant']['accuracy']:.3f} ({drop:+.3f})"
    rel = charts(at)["Reliability diagram"]["data"]
    assert rel[0]["name"] == "perfect calibration" and rel[1]["name"].startswith("student (ECE ")
    # the shown ECE equals the ECE of the split recorded by the training loop (same model, same split)
    shown = float(rel[1]["name"].split("ECE ")[1].rstrip(")"))
    split = at.selectbox(key="ood_split").value
    assert shown == pytest.approx(ev[split]["ece"], abs=1e-3)
    assert len(at.dataframe) == 3  # drops, ECE, disagreements
    drops = at.dataframe[0].value
    assert drops.loc["hid", "drop ood_restaurant"] == pytest.approx(round(drop, 4))
    dis = at.dataframe[2].value
    agree = float([m.value for m in at.metric if m.label == "student-teacher agreement"][0])
    n = ev[split]["n"]
    assert len(dis) == round((1 - agree) * n)
    assert list(dis.columns) == ["text", "label", "teacher", "p_teacher", "student", "p_student"] or len(dis) == 0


def test_inspect(app):
    at = app
    at.switch_page("pages/7_Inspect.py").run()
    no_errors(at)
    at.selectbox(key="insp_tl").set_value(2)
    at.selectbox(key="insp_sl").set_value(1)
    at.selectbox(key="insp_head").set_value(1).run()
    no_errors(at)
    c = charts(at)
    att = c["Attention maps (rows: query token, columns: key token)"]["data"]
    assert len(att) == 2
    for a in att:
        z = np.array(a["z"])
        assert z.shape[0] == z.shape[1] == len(a["x"])
        assert np.allclose(z.sum(1), 1.0, atol=1e-4)  # each query row is a distribution
    hid = c["cosine: teacher layer 2 x student layer 1"]["data"][0]
    # student layer 1 is a copy of teacher layer 2 (skip init) trained 3 steps: the diagonal stays close to 1
    assert np.mean(np.diag(np.array(hid["z"]))) > 0.5


def test_guard_turns_an_unexpected_exception_into_one_message():
    def page():  # run from a temporary file: load the dashboard's helper module from app/
        import importlib.util
        from pathlib import Path
        import streamlit as st
        spec = importlib.util.spec_from_file_location("common", Path.cwd() / "app" / "common.py")
        C = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(C)
        with C.guard():
            raise RuntimeError("disk on fire\nsecond line")
        st.write("after the guard")
    at = AppTest.from_function(page, default_timeout=60)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "unexpected error (RuntimeError: disk on fire)" in at.error[0].value
    assert "second line" not in at.error[0].value and at.markdown[0].value == "after the guard"
