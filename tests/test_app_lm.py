"""The dashboard's causal LM views under AppTest, on a tiny LM run stored here: the Temperature lab's LM mode (a typed
prompt's next-token distribution at T, the numbers those of kdlab.lm.explain; one line for bad input)."""
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kdlab.cli import main
from kdlab.runs.store import Store

APP = Path(__file__).resolve().parents[1] / "app"


@pytest.fixture(scope="module")
def lm_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-runs")
    assert main(["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4",
                 "--max-steps", "2", "--method", "lm-rkl", "--runs", str(root), "--quiet"]) == 0
    return root


def _page(root, monkeypatch, name):
    monkeypatch.syspath_prepend(str(APP))
    at = AppTest.from_file(str(APP / "pages" / name), default_timeout=120)
    at.session_state["kd_runs_root"] = str(root)
    return at


def _charts(at) -> dict:
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def test_temperature_lab_lm_mode(lm_store, monkeypatch, capsys):
    from kdlab.lm.explain import compare_next_token, run_models
    at = _page(lm_store, monkeypatch, "3_Temperature_lab.py")
    at.run()
    at.radio(key="temp_mode").set_value("causal LM: next token").run()
    assert not at.exception and not at.error
    store = Store(lm_store)
    student = store.runs(kind="student")[0]
    run = at.selectbox(key="temp_lm_run").value
    assert run["id"] == student["id"]   # the newest LM run first: the student (its teacher run is listed too)
    at.slider(key="temp_lm_T").set_value(2.0).run()
    bars = _charts(at)["Next-token distribution at T = 2"]["data"]
    assert [b["name"] for b in bars] == ["teacher", "student"]
    models = run_models(store, student["id"])
    want = compare_next_token({k: m for k, (m, _) in models.items()}, models["teacher"][1], "to make soup you need",
                              temperature=2.0, k=10)
    assert bars[0]["x"][:-1] == want["tokens"] and bars[0]["x"][-1] == "(all other tokens)"
    assert np.allclose(bars[0]["y"][:-1], want["probs"]["teacher"]) and np.allclose(bars[1]["y"][:-1],
                                                                                    want["probs"]["student"])
    metrics = {m.label: float(m.value) for m in at.metric}
    assert metrics["KL(teacher || student) at T=2"] == pytest.approx(want["kl"]["student"], rel=1e-2, abs=1e-4)
    h2 = metrics["teacher entropy (nats)"]
    at.slider(key="temp_lm_T").set_value(4.0).run()
    assert float(next(m.value for m in at.metric if m.label == "teacher entropy (nats)")) > h2   # softer at T = 4
    assert [d["name"] for d in _charts(at)["Entropy of the softened distribution vs temperature"]["data"]][:2] == \
        ["teacher", "student"]

    at.text_input(key="temp_lm_prompt").set_value("  ").run()   # bad input: one line each, no traceback
    assert not at.exception and [e.value for e in at.error] == [
        "type a prompt: the next-token distribution is conditioned on at least one token"]
    at.text_input(key="temp_lm_prompt").set_value(" ".join(["soup"] * 200)).run()
    assert not at.exception and "context is 128 positions" in at.error[0].value

    # a causal LM folder: the student's saved model, as the reference alone
    at.text_input(key="temp_lm_prompt").set_value("on monday it is").run()
    at.selectbox(key="temp_lm_run").set_value("a causal LM folder ...").run()
    assert any("type the folder" in i.value for i in at.info)
    at.text_input(key="temp_lm_run_folder").set_value(store.artifact(student["id"], "model_dir")).run()
    assert not at.exception and not at.error
    assert [b["name"] for b in _charts(at)["Next-token distribution at T = 4"]["data"]] == ["teacher"]
    at.text_input(key="temp_lm_run_folder").set_value("/etc").run()
    assert len(at.error) == 1 and "outside the allowed folders" in at.error[0].value


def test_layer_mapping_lm_mode(lm_store, monkeypatch):
    from kdlab.lm.layers import run_layer_cka, run_mapping
    at = _page(lm_store, monkeypatch, "2_Layer_mapping.py")
    at.run()
    at.radio(key="map_mode").set_value("causal LM run: decoder layers").run()
    assert not at.exception and not at.error
    store = Store(lm_store)
    rid = store.runs(kind="student")[0]["id"]
    m = run_mapping(store, rid)
    assert m["copied"] == [2, 4] and m["M"] == 2 and m["N"] == 4   # 2 of 4 layers, skip: teacher layers 2 and 4
    heat = _charts(at)["W, 2 student x 4 teacher decoder layers"]["data"][0]
    assert np.allclose(heat["z"], m["W"])
    assert any("--student-layer-list 1,3" in c.value for c in at.code)
    at.slider(key="map_lm_cka_n").set_value(4).run()
    at.button(key="map_lm_cka_go").click().run()
    assert not at.exception and not at.error
    cka = _charts(at)["CKA: teacher vs student decoder layers"]["data"][0]
    assert np.allclose(np.array(cka["z"], float), run_layer_cka(store, rid, 4), atol=1e-6)
    assert cka["y"] == ["T1", "T2", "T3", "T4"] and cka["x"] == ["S1", "S2"]


def test_classification_pages_do_not_offer_lm_runs(lm_store, monkeypatch):
    # an LM run is not a classifier: Out of domain and Inspect (C.student_runs) leave it out
    for page, key in (("6_Out_of_domain.py", "ood_student"), ("7_Inspect.py", "insp_run")):
        at = _page(lm_store, monkeypatch, page)
        at.run()
        assert not at.exception
        shown = [str(o) for s in at.selectbox if s.key == key for o in s.options]   # run labels: name or id, method
        assert not any("lm-rkl" in o for o in shown), shown


def test_deploy_page_shows_an_lm_runs_size_and_perplexities(lm_store, monkeypatch):
    at = _page(lm_store, monkeypatch, "8_Deploy.py")
    at.run()
    student = Store(lm_store).runs(kind="student")[0]
    at.selectbox(key="dep_run").set_value(student["id"]).run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "perplexity" in d.value.columns)
    want = Store(lm_store).final_evals(student["id"])
    assert set(table.index) == set(want)
    assert all(table.loc[d, "perplexity"] == pytest.approx(e["perplexity"], abs=1e-3) for d, e in want.items())
    assert not any(b.key == "dep_compress" for b in at.button)   # nothing to compress for a decoder


def test_train_page_follows_an_lm_run_per_layer(tmp_path, monkeypatch):
    # an LM run with the hidden-state term logs each layer pair's MSE and its W: the Train page draws both
    assert main(["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4",
                 "--max-steps", "2", "--method", "lm-fkl", "--set", "hidden_weight=1", "--runs", str(tmp_path),
                 "--quiet"]) == 0
    store = Store(tmp_path)
    rid = store.runs(kind="student")[0]["id"]
    names = {r["name"] for r in store.metrics(rid)}
    assert {"kd", "hidden", "hidden/s1-t2", "hidden/s2-t4"} <= names   # skip: student layers <- teacher 2 and 4
    last = {r["name"]: r["value"] for r in store.metrics(rid) if r["step"] == 2}
    assert last["hidden"] == pytest.approx((last["hidden/s1-t2"] + last["hidden/s2-t4"]) / 2, rel=1e-5)
    assert store.mappings(rid)[0]["matrix"] == [[0, 1, 0, 0], [0, 0, 0, 1]]
    at = _page(tmp_path, monkeypatch, "4_Train.py")
    at.run()
    assert not at.exception and not at.error
    titles = list(_charts(at))
    assert "W at step 0 (epoch 0)" in titles, titles
    per_layer = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if "hidden" in json.dumps(json.loads(c.proto.spec)["data"])]
    assert per_layer, titles   # the per-layer multiples: one panel per (student, teacher) pair
    terms = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
             if {d.get("name") for d in json.loads(c.proto.spec)["data"]} >= {"kd", "hidden"}]
    assert terms, titles       # the loss's terms, one curve each
