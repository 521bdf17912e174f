"""The dashboard under streamlit.testing.v1.AppTest: every page, its widgets, its figures' data.

A tiny finished run (tiny teacher, 96 training examples, 3 steps) is prepared once in a temporary run
store with kdlab.engine.pipeline.distill_run, so Compare / Out of domain / Inspect have data.
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
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
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
    at.radio(key="setup_data_kind").set_value("embedded synthetic NLI (pairs, 2 domains)").run()
    no_errors(at)
    page = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "mnli" in page and "science-facts" in page and "sentence1" in page
    at.radio(key="setup_data_kind").set_value("embedded synthetic (3 domains)").run()
    no_errors(at)


def alp_expected(store_root, n: int) -> np.ndarray:
    """ALP-KD's batch-mean attention computed here from the stored teacher and a skip-copied student."""
    import torch
    from kdlab.kd import losses
    from kdlab.data.batching import make_loader
    from kdlab.data.loaders import load_data
    from kdlab.models.features import Need, features
    from kdlab.models.core import build_student, load_saved
    from kdlab.runs.store import Store
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


def test_layer_mapping_suggest_from_cka(app, store_root):
    from kdlab.analysis.cka_mapping import cka_scores
    from kdlab.data.loaders import load_data
    from kdlab.models.core import build_student, load_saved
    from kdlab.runs.store import Store
    at = app
    at.switch_page("pages/2_Layer_mapping.py").run()
    at.button(key="map_cka_suggest").click().run()   # one click: scores, and the strategy switched to them
    no_errors(at)
    assert at.selectbox(key="map_strategy").value == "cka (suggested)"
    root, rid = store_root
    store = Store(root)
    t, tok = load_saved(store.artifact(store.run(rid)["config"]["teacher_run"], "model_dir"))
    scores = cka_scores(t, build_student(t, layers=2, init="skip"), tok,
                        load_data(None, max_train=96, max_eval=48, seed=0).train, max_len=32)
    np.testing.assert_allclose(at.session_state["map_cka_scores"], scores, atol=1e-4)
    z = np.array(spec(at.get("plotly_chart")[0])["data"][0]["z"])
    assert [int(r.argmax()) + 1 for r in z] == [int(np.argmax(r)) + 1 for r in scores] and z.sum() == 2
    assert any(c.value == "--set mapping=cka" for c in at.code)
    at.selectbox(key="map_strategy").set_value("uniform").run()


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
    assert float(m4["KD loss T² · KL"]) == pytest.approx(16 * kl4, rel=1e-2, abs=1e-5)   # shown to 3 digits
    assert all("e-" not in str(v) for v in m4.values())   # readable numbers (0.00178), not 1.7763e-03
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
    from kdlab.runs.store import Store
    root, _ = store_root
    store = Store(root)
    rid = store.create_run("student", "kd", {"train": {"max_steps": 10}}, name="to-cancel")  # alive: this pid
    store.log_metrics(rid, 2, 0, {"loss": 1.0})
    import time
    store.set_artifact(rid, "plan", {"total_steps": 10, "started": time.time() - 20, "start_step": 0})
    try:
        at = app
        at.switch_page("pages/4_Train.py").run()
        at.selectbox(key="train_follow").set_value(rid).run()
        no_errors(at)
        assert any("status: **running** · kd: student training, step 2 / 10, ETA 1 min" in m.value
                   for m in at.markdown)   # 8 steps left at 10 s per step
        assert any("⏳ kd: student training, step 2 / 10" in c.value for c in at.sidebar.caption)   # every page
        assert not store.cancel_requested(rid)
        at.button(key="train_cancel").click().run()
        assert not at.exception
        assert store.cancel_requested(rid)  # the loop stops after its current step (kdlab.tools.launch.cancel)
        assert any("cancel requested" in w.value for w in at.warning)
    finally:
        store.finish(rid, "cancelled")


def test_setup_prepares_the_teacher_with_a_progress_bar(store_root, tmp_path):
    """The Prepare button fine-tunes the teacher in a separate process and fills a progress bar."""
    from kdlab.runs.store import Store
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
    from kdlab.runs.store import Store
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


def test_doctor_page(app, store_root):
    from kdlab.analysis.doctor import diagnose
    from kdlab.runs.store import Store
    at = app
    at.switch_page("pages/11_Doctor.py").run()
    no_errors(at)
    root, rid = store_root
    at.selectbox(key="doctor_run").set_value(rid).run()
    no_errors(at)
    d = diagnose(Store(root), rid)   # the page shows the command's findings, in its order
    table = at.dataframe[0].value
    assert list(table["finding"]) == [f["title"] for f in d["findings"]]
    assert list(table["figure"]) == [f["figure"] for f in d["findings"]]
    shares = at.dataframe[1].value   # the fixture's run measured its terms at step 0 (every 50 steps)
    by = {f["key"]: f for f in d["findings"]}["grad_share"]["data"]["shares"]
    assert set(shares["term"]) == {"kd", "ce", "hidden"} == set(by)
    assert shares["mean share"].sum() == pytest.approx(1.0, abs=1e-3)
    assert any(f"doctor --run {rid}" in c.value for c in at.caption)


def test_out_of_domain(app, store_root):
    from kdlab.analysis.evaluate import ece, softmax
    from kdlab.runs.store import Store
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
    assert len(at.dataframe) == 4  # drops, size and speed, ECE, disagreements
    drops = at.dataframe[0].value
    assert drops.loc["hid", "drop ood_restaurant"] == pytest.approx(round(drop, 4))
    sizes = at.dataframe[1].value
    assert list(sizes.index) == ["teacher", "hid"] and sizes.loc["hid", "accuracy dev"] == pytest.approx(
        round(ev["dev"]["accuracy"], 4))
    assert sizes.loc["hid", "params"] == store.artifact(rid, "size")["params"] < sizes.loc["teacher", "params"]
    assert 0 < sizes.loc["hid", "MB"] < sizes.loc["teacher", "MB"] and sizes.loc["hid", "ms/example"] > 0
    dis = at.dataframe[3].value
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


# ------------------------------------------------------------------------------------------ sentence pairs, deploy
def write_shared_data(root: Path, n_train: int = 48, n_dev: int = 16, n_ood: int = 16):
    """A GLUE-shaped shared data folder: glue/RTE (a pair task), glue/STS-B (a score task), glue/QNLI (dev only)
    and ood_pairs/scitail_test.tsv (SciTail's own labels). Texts come from the embedded corpus, so the tiny
    teacher's vocabulary covers them."""
    import csv
    src = list(csv.reader(open(Path(APP).parents[1] / "data" / "embedded" / "train.tsv"), delimiter="\t"))[1:]

    def pairs(n, off):
        return [(src[off + 2 * i][0], src[off + 2 * i + 1][0], src[off + 2 * i][1] == src[off + 2 * i + 1][1])
                for i in range(n)]
    glue = root / "glue"
    for d in ("RTE", "STS-B", "QNLI"):
        (glue / d).mkdir(parents=True)
    for split, n, off in (("train", n_train, 0), ("dev", n_dev, 400)):
        rows = pairs(n, off)
        (glue / "RTE" / f"{split}.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
            f"{i}\t{a}\t{b}\t{'entailment' if same else 'not_entailment'}\n" for i, (a, b, same) in enumerate(rows)))
        (glue / "STS-B" / f"{split}.tsv").write_text("index\tsentence1\tsentence2\tscore\n" + "".join(
            f"{i}\t{a}\t{b}\t{4.0 if same else 1.0 + i % 3 * 0.5}\n" for i, (a, b, same) in enumerate(rows)))
    (glue / "QNLI" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\ta\tb\tentailment\n")
    (root / "ood_pairs").mkdir()
    scitail = root / "ood_pairs" / "scitail_test.tsv"
    scitail.write_text("premise\thypothesis\tlabel\n" + "".join(
        f"{a}\t{b}\t{'entails' if same else 'neutral'}\n" for a, b, same in pairs(n_ood, 800)))
    return glue / "RTE", scitail


def tiny_run(cfg, root):
    """distill_run on one CPU thread (the tiny models' latency measurement is slow when threads contend)."""
    import torch
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return distill_run(cfg, Store(root), log=lambda m: None)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory):
    """A tiny finished kd run on RTE-shaped pairs with a SciTail-shaped OOD set, in its own run store; the shared
    data folder is found through KDLAB_SHARED_DATA."""
    from kdlab.config import RunConfig, TrainConfig
    from kdlab.runs.store import Store
    shared = tmp_path_factory.mktemp("shared")
    rte, scitail = write_shared_data(shared)
    root = tmp_path_factory.mktemp("pair-runs")
    old = {k: os.environ.get(k) for k in ("KDLAB_SHARED_DATA", "KDLAB_APP_PRESET")}
    os.environ.update(KDLAB_SHARED_DATA=str(shared), KDLAB_APP_PRESET="tiny")
    # the dashboard's tiny teacher settings, so Setup finds this teacher for RTE + SciTail
    cfg = RunConfig(teacher="tiny", data=str(rte), ood=[str(scitail)], max_train=96, max_eval=48, student_layers=2,
                    method="kd", name="rte-kd",
                    train=TrainConfig(max_steps=3, epochs=1, batch_size=16, max_len=32, progress=False),
                    teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False))
    rid = tiny_run(cfg, root)
    yield dict(shared=shared, rte=rte, scitail=scitail, root=root, rid=rid, store=Store(root))
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pair_app(ps, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["kd_runs_root"] = str(ps["root"])
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def load_common():
    import importlib.util
    spec_ = importlib.util.spec_from_file_location("kdlab_app_common", Path(APP).parent / "common.py")
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    return mod


def test_setup_picks_a_glue_pair_task_and_its_ood_set(pair_store):
    from kdlab.engine.pipeline import load_bundle
    ps = pair_store
    at = pair_app(ps)
    at.radio(key="setup_data_kind").set_value("GLUE task (shared data)").run()
    no_errors(at)
    assert at.selectbox(key="setup_glue").options == ["RTE", "STS-B"]   # QNLI has no train file
    assert any("no train file" in c.value and "QNLI" in c.value for c in at.caption)
    at.selectbox(key="setup_glue").set_value("RTE").run()
    no_errors(at)
    line = [m.value for m in at.markdown if m.value.startswith("task **")][0]
    assert "task **rte**" in line and "sentence pair: `sentence1` + `sentence2`" in line
    assert "primary metric **accuracy**" in line and "entailment → entails" in line
    ood = [m for m in at.multiselect if m.label.startswith("out-of-domain")][0]
    assert ood.value == ["scitail_test"]   # chosen by default for an entailment task
    assert "48 train · 16 dev · OOD: scitail_test (16)" in at.success[0].value
    s = at.session_state["kd_setup"]
    assert s["data"] == str(ps["rte"]) and s["ood"] == [str(ps["scitail"])]
    # Train launches the config of these choices: same data and OOD set as the stored run, so the same teacher
    cfg = load_common().run_config(s, method="kd")
    assert cfg.data == str(ps["rte"]) and cfg.ood == [str(ps["scitail"])]
    run = ps["store"].run(ps["rid"])
    assert load_bundle(cfg).identity == run["config"]["data_identity"]
    assert any("fine-tuned teacher ready" in i.value for i in at.info)
    stored = [d.value for d in at.dataframe][-1]   # the stored models on this data
    assert sorted(stored.index) == ["rte-kd", "teacher tiny"]
    ev = ps["store"].final_evals(ps["rid"])
    assert stored.loc["rte-kd", "accuracy scitail_test"] == pytest.approx(round(ev["scitail_test"]["accuracy"], 4))
    assert (stored["MB"] > 0).all() and (stored["params"] > 0).all() and (stored["ms/example"] > 0).all()
    at.button(key="setup_measure").click().run()   # sizes and speeds on pair inputs
    no_errors(at)
    assert at.session_state["setup_sizes"]["student"]["latency_ms"] > 0
    # a score task: its own line, no OOD default, and the Temperature lab says T does not apply
    at.selectbox(key="setup_glue").set_value("STS-B").run()
    no_errors(at)
    line = [m.value for m in at.markdown if m.value.startswith("task **")][0]
    assert "task **sts-b**" in line and "a real-valued score" in line and "primary metric **pearson**" in line
    assert [m for m in at.multiselect if m.label.startswith("out-of-domain")][0].value == []
    at.switch_page("pages/3_Temperature_lab.py").run()
    no_errors(at)
    assert any("Temperature does not apply" in i.value and "score" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_temperature_lab_on_a_pair_task(pair_store):
    ps = pair_store
    at = pair_app(ps)
    at.radio(key="setup_data_kind").set_value("GLUE task (shared data)").run()
    at.selectbox(key="setup_glue").set_value("RTE").run()
    at.switch_page("pages/3_Temperature_lab.py").run()
    no_errors(at)
    assert [o.split(": ")[0] for o in at.selectbox(key="temp_example").options][:2] == ["0", "1"]
    assert " ‖ " in at.selectbox(key="temp_example").options[0]
    assert any("pair input: sentence1 = " in c.value for c in at.caption)
    at.selectbox(key="temp_student").set_value(at.selectbox(key="temp_student").options[1]).run()   # rte-kd
    at.slider(key="temp_T").set_value(4.0).run()
    no_errors(at)
    d = [v for k, v in charts(at).items() if k.startswith("Softened")][0]["data"]
    assert d[0]["x"] == ["entailment", "not_entailment"] and sum(d[0]["y"]) == pytest.approx(1)


def test_out_of_domain_on_a_pair_task(pair_store):
    ps = pair_store
    ev = ps["store"].final_evals(ps["rid"])
    at = pair_app(ps, "pages/6_Out_of_domain.py")
    no_errors(at)
    bars = charts(at)["Accuracy per domain (drop vs dev in brackets)"]["data"]
    assert [b["name"] for b in bars] == ["teacher", "rte-kd"] and bars[1]["x"] == ["dev", "scitail_test"]
    assert bars[1]["y"] == pytest.approx([ev["dev"]["accuracy"], ev["scitail_test"]["accuracy"]])
    sizes = at.dataframe[1].value
    assert {"MB", "params", "ms/example", "accuracy dev", "accuracy scitail_test"} <= set(sizes.columns)
    at.selectbox(key="ood_split").set_value("scitail_test").run()
    no_errors(at)
    # SciTail scored through the mapping, as the training loop scored it: the same ECE
    rel = charts(at)["Reliability diagram"]["data"]
    shown = float(rel[1]["name"].split("ECE ")[1].rstrip(")"))
    assert shown == pytest.approx(ev["scitail_test"]["ece"], abs=1e-3)
    assert any("entailment → entails" in c.value for c in at.caption)
    assert at.dataframe[2].value.loc["student", "accuracy"] == pytest.approx(round(ev["scitail_test"]["accuracy"], 4))
    dis = at.dataframe[3].value
    if len(dis):
        assert list(dis.columns[:3]) == ["sentence1", "sentence2", "label"]
        assert set(dis["label"]) <= {"entails", "neutral"} and set(dis["student"]) <= {"entails", "neutral"}
        premises = set(ps["scitail"].read_text().splitlines()[1:])
        assert f"{dis.iloc[0]['sentence1']}\t{dis.iloc[0]['sentence2']}\t{dis.iloc[0]['label']}" in premises
    # a metric other than the primary one
    at.selectbox(key="ood_metric::rte").set_value("macro_f1").run()
    assert "Macro-F1 per domain (drop vs dev in brackets)" in charts(at)


def test_inspect_a_pair_shows_both_texts_and_the_separator(pair_store):
    ps = pair_store
    at = pair_app(ps, "pages/7_Inspect.py")
    no_errors(at)
    first = ps["rte"].joinpath("dev.tsv").read_text().splitlines()[1].split("\t")
    assert [t.value for t in at.text_area] == [first[1], first[2]]
    att = charts(at)["Attention maps (rows: query token, columns: key token)"]["data"]
    labels = att[0]["x"]
    seps = [x for x in labels if x.endswith(":[SEP]")]
    assert labels[0] == "0:[CLS]" and len(seps) == 2 and labels[-1].endswith(":[SEP]")
    z = np.array(att[1]["z"])
    assert z.shape == (len(labels), len(labels)) and np.allclose(z.sum(1), 1.0, atol=1e-4)
    # an example of the OOD set, edited text B: the map follows
    at.selectbox(key="insp_split").set_value("scitail_test").run()
    no_errors(at)
    sci = ps["scitail"].read_text().splitlines()[1].split("\t")
    assert [t.value for t in at.text_area] == [sci[0], sci[1]]
    assert any("gold label: **" in c.value and "own labels" in c.value for c in at.caption)
    at.text_area[1].input("great").run()
    labels = charts(at)["Attention maps (rows: query token, columns: key token)"]["data"][0]["x"]
    assert labels[-3:] == [f"{len(labels) - 3}:[SEP]", f"{len(labels) - 2}:great", f"{len(labels) - 1}:[SEP]"]


def test_deploy_compresses_measures_and_offers_a_download(pair_store):
    import zipfile
    import io
    ps = pair_store
    store = ps["store"]
    ev = store.final_evals(ps["rid"])
    at = pair_app(ps, "pages/8_Deploy.py")
    no_errors(at)
    at.selectbox(key="dep_run").set_value(ps["rid"]).run()
    assert any("not measured yet" in i.value for i in at.info)
    at.checkbox(key="dep_int8").check().run()
    at.button(key="dep_compress").click().run()
    no_errors(at)
    assert any("made **int8** (int8," in m.value for m in at.success)
    at.number_input(key="dep_rounds").set_value(2).run()
    at.button(key="dep_measure").click().run()
    no_errors(at)
    table = at.dataframe[0].value
    assert list(table.index) == ["teacher", "student", "int8"]
    assert {"MB", "params", "ms b1", "ms b32", "accuracy dev (in domain)", "accuracy scitail_test"} <= \
        set(table.columns)
    assert (table["MB"] > 0).all() and (table["ms b1"] > 0).all() and (table["ms b32"] > 0).all()
    assert table.loc["int8", "MB"] < table.loc["student", "MB"] < table.loc["teacher", "MB"]
    # the student's metrics through the deploy path (pair encoding, SciTail mapping) equal the training loop's
    assert table.loc["student", "accuracy dev (in domain)"] == pytest.approx(round(ev["dev"]["accuracy"], 4))
    assert table.loc["student", "accuracy scitail_test"] == pytest.approx(round(ev["scitail_test"]["accuracy"], 4))
    sc = charts(at)["Accuracy vs size on disk"]["data"]
    assert [t["name"] for t in sc] == ["dev (in domain)", "scitail_test"] and sc[0]["text"] == list(table.index)
    assert sc[0]["x"] == pytest.approx(list(table["MB"]))
    fr = {t["name"]: t for t in charts(at)["Accuracy (dev) vs CPU latency (batch 1); marker area: MB on disk"]["data"]}
    assert fr["teacher"]["marker"]["symbol"] == "star" and fr["models"]["text"] == ["student", "int8"]
    assert at.selectbox(key="dep_dl_model").options == ["student", "int8", "teacher"]
    at.selectbox(key="dep_dl_model").set_value("int8").run()
    dl = [d for d in at.get("download_button") if d.key == "dep_download"]   # besides the table's CSV, the figure's
    assert len(dl) == 1 and dl[0].proto.label.startswith("Download int8 as zip")
    folder = Path(store.artifact(ps["rid"], "models")["int8"])
    names = zipfile.ZipFile(io.BytesIO(load_common().zip_folder(folder))).namelist()
    assert {"int8/config.json", "int8/kdlab.json", "int8/model.int8.safetensors"} <= set(names)
    # head pruning from the page, on the pair task (importance over both texts of the training pairs)
    at.checkbox(key="dep_int8").uncheck().run()
    at.number_input(key="dep_heads").set_value(1).run()
    at.button(key="dep_compress").click().run()
    no_errors(at)
    assert any("made **h1** (hf," in m.value and "prune-structure" in m.value for m in at.success)
    # a run without a saved model: one line
    bare = store.create_run("student", "kd", {"train": {"max_len": 32}}, name="no-model")
    store.finish(bare, "finished")
    at.run()
    at.selectbox(key="dep_run").set_value(bare).run()
    no_errors(at)
    assert any("has no saved model" in i.value for i in at.info) and not at.get("download_button")


def test_out_of_domain_on_a_score_task(pair_store, tmp_path):
    """STS-B-shaped data: Pearson per domain (not accuracy), no reliability diagram but a note and a scatter of the
    predicted score against the gold score, and the largest student-teacher differences with both texts."""
    from kdlab.config import RunConfig, TrainConfig
    from kdlab.runs.store import Store
    ps = pair_store
    sts = ps["rte"].parent / "STS-B"
    root = tmp_path / "runs"
    cfg = RunConfig(teacher="tiny", data=str(sts), max_train=48, max_eval=16, student_layers=2, method="kd",
                    name="sts-kd", train=TrainConfig(max_steps=2, epochs=1, batch_size=16, max_len=32, progress=False),
                    teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False))
    rid = tiny_run(cfg, root)
    ev = Store(root).final_evals(rid)
    at = pair_app(dict(ps, root=root), "pages/6_Out_of_domain.py")
    no_errors(at)
    bars = charts(at)["Pearson r per domain (drop vs dev in brackets)"]["data"]
    assert bars[1]["name"] == "sts-kd" and bars[1]["y"] == pytest.approx([ev["dev"]["pearson"]])
    assert at.selectbox(key="ood_metric::sts-b").options == ["pearson", "spearman", "mse"]
    assert any("Calibration" in i.value and "score" in i.value for i in at.info)
    assert "Reliability diagram" not in charts(at)
    sc = charts(at)["Prediction vs gold score (dev)"]["data"]
    gold = [float(line.split("\t")[3]) for line in sts.joinpath("dev.tsv").read_text().splitlines()[1:]]
    assert [t["name"] for t in sc] == ["student", "teacher", "y = x"] and sc[0]["x"] == pytest.approx(gold)
    assert at.dataframe[2].value.loc["student", "pearson"] == pytest.approx(round(ev["dev"]["pearson"], 4))
    diffs = at.dataframe[3].value
    assert list(diffs.columns) == ["sentence1", "sentence2", "gold", "teacher", "student", "difference"]
    assert len(diffs) == 16 and list(diffs["difference"]) == sorted(diffs["difference"], reverse=True)


REAL_SHARED = Path(APP).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (REAL_SHARED / "glue" / "MRPC").is_dir() or
                    not (REAL_SHARED / "ood_pairs" / "paws_qqp_dev_and_test.tsv").is_file(),
                    reason="the shared GLUE data (../shared/data) is not present")
def test_setup_finds_the_real_shared_glue_folders(store_root, monkeypatch):
    """../shared/data beside the repository: the GLUE folders with a train file are offered; MRPC gets PAWS-QQP."""
    monkeypatch.delenv("KDLAB_SHARED_DATA", raising=False)
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="setup_data_kind").set_value("GLUE task (shared data)").run()
    at.selectbox(key="setup_glue").set_value("MRPC").run()
    no_errors(at)
    opts = at.selectbox(key="setup_glue").options
    assert {"MRPC", "RTE", "STS-B"} <= set(opts) and not {"MNLI", "QNLI"} & set(opts)   # dev only: not offered
    line = [m.value for m in at.markdown if m.value.startswith("task **")][0]
    assert "task **mrpc**" in line and "`#1 String` + `#2 String`" in line and "primary metric **f1**" in line
    assert [m for m in at.multiselect if m.label.startswith("out-of-domain")][0].value == ["paws_qqp_dev_and_test"]
    assert "96 train · 48 dev · OOD: paws_qqp_dev_and_test (48)" in at.success[0].value
    # the same folder, whether ../shared is a folder or a link to one
    assert Path(at.session_state["kd_setup"]["data"]).resolve() == (REAL_SHARED / "glue" / "MRPC").resolve()
