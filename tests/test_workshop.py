"""The workshop features: option forms built from each method's declaration, the dark-knowledge view, downloads,
the in-page waiting status and ``python -m kdlab workshop prepare``."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kdlab.errors import KdlabError
from kdlab.methods import get, names

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path))
    monkeypatch.setenv("KDLAB_APP_PRESET", "tiny")
    return tmp_path


@pytest.fixture
def launched(monkeypatch):
    """Replace the process launch by a recorder: the run configs the Train page would start."""
    from kdlab.tools import launch
    seen = []

    def fake(cfg, runs, name, command="distill", **kw):
        seen.append(cfg)
        return launch.Launch(pid=os.getpid(), name=name, runs=str(runs), log=os.devnull, started=0.0, command=[])
    monkeypatch.setattr(launch, "launch", fake)
    return seen


# ----------------------------------------------------------------------------------------------- option forms
def test_every_method_declares_every_option_with_help():
    for n in names():
        cls = get(n)
        specs = cls.option_specs()
        assert set(specs) == set(cls.option_names()), n
        for key, spec in specs.items():
            assert spec.help and spec.kind in ("float", "int", "bool", "choice", "text", "layers", "matrix"), (n, key)
            assert spec.check(key, cls.all_defaults().get(key)) is None or key.endswith(("_end", "_schedule")), (n, key)


def test_declared_ranges_refuse_bad_values_with_one_line():
    with pytest.raises(KdlabError, match=r"method 'kd': temperature must be > 0, got -1"):
        get("kd").check_options({"temperature": -1})
    with pytest.raises(KdlabError, match=r"alpha must be in \[0, 1\], got 1.5"):
        get("pkd-skip").check_options({"alpha": 1.5})
    with pytest.raises(KdlabError, match="k must be an integer"):
        get("rail-kd-l").check_options({"k": 1.5})
    with pytest.raises(KdlabError, match="must be true or false"):
        get("tinybert").check_options({"mask_padding": "yes"})
    get("pkd-skip").check_options({"beta": None, "alpha": 0.9, "temperature": 8})   # None = automatic
    # the command line's --set gives the same values (a comma list of layers is a list, as Layer mapping prints it)
    from kdlab.cli import _kv
    assert _kv("mapping_layers=2,4,6") == ("mapping_layers", [2, 4, 6]) and _kv("pool=cls") == ("pool", "cls")
    get("hidden").check_options(dict([_kv("mapping=explicit"), _kv("mapping_layers=2,4,6")]))


def test_train_form_value_reaches_the_run_config_and_bad_value_starts_nothing(env, launched):
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/4_Train.py").run()
    assert not at.exception
    at.number_input(key="train_opt_kd_temperature").set_value(8.0)
    at.number_input(key="train_opt_kd_alpha_soft").set_value(0.9)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(launched) == 1 and launched[0].method == "kd"
    assert launched[0].method_args == {"temperature": 8.0, "alpha_soft": 0.9}
    # an invalid value: the method's own message, nothing started
    at.number_input(key="train_opt_kd_temperature").set_value(-2.0)
    at.button[0].click().run()
    assert not at.exception
    assert any("method 'kd': temperature must be > 0, got -2.0" in e.value for e in at.error)
    assert len(launched) == 1
    # the advanced JSON box still overrides the form (a schedule the form does not show)
    at.number_input(key="train_opt_kd_temperature").set_value(4.0)
    at.text_area(key="train_opts").input('{"temperature_end": 1}')
    at.button[0].click().run()
    assert launched[-1].method_args == {"temperature": 4.0, "alpha_soft": 0.9, "temperature_end": 1}


def test_every_method_form_builds_widgets_and_round_trips_the_defaults(env, launched):
    import sys
    sys.path.insert(0, str(Path(APP).parent))
    from method_form import form_options, widget_key
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/4_Train.py").run()
    for n in names():
        at.selectbox(key="train_method").set_value(n).run()
        assert not at.exception, n
        cls = get(n)
        shown = {w.key: w for kind in ("number_input", "checkbox", "selectbox") for w in at.get(kind)}
        for key, spec in form_options(cls).items():
            w = shown[widget_key(n, key)]
            assert w.value == cls.all_defaults()[key] or (w.value is not None and
                                                          w.value == pytest.approx(cls.all_defaults()[key])), (n, key)
        at.button[0].click().run()
        assert not at.error, (n, [e.value for e in at.error])
        assert launched[-1].method == n and launched[-1].method_args == {}, n
    assert len(launched) == len(names())


# ----------------------------------------------------------------------------------------------- dark knowledge
def test_dark_knowledge_matches_hand_computed_values():
    from math import log, sqrt
    from kdlab.analysis.dark_knowledge import dark_knowledge
    # binary: p = [0.75, 0.25] at T=1; at T=2 p = [sqrt3, 1] / (sqrt3 + 1)
    dk = dark_knowledge([[log(3), 0.0]], [1, 2], labels=[0])
    assert dk["entropy"][0] == pytest.approx(-(0.75 * log(0.75) + 0.25 * log(0.25)))
    assert dk["non_target_mass"] == pytest.approx([0.25, 1 / (sqrt(3) + 1)])
    assert dk["second_informative"] == [0.0, 0.0] and dk["non_target_entropy"] == [0.0, 0.0]
    # three classes: p = [0.6, 0.3, 0.1] and [0.98, 0.01, 0.01] at T=1
    z = [[log(6), log(3), 0.0], [log(98), 0.0, 0.0]]
    dk = dark_knowledge(z, [1.0, 2.0], labels=[0, 0], threshold=0.05)
    h1 = -(0.6 * log(0.6) + 0.3 * log(0.3) + 0.1 * log(0.1))
    h2 = -(0.98 * log(0.98) + 2 * 0.01 * log(0.01))
    assert dk["entropy"][0] == pytest.approx((h1 + h2) / 2)
    assert dk["non_target_mass"][0] == pytest.approx((0.4 + 0.02) / 2)
    assert dk["second_informative"] == [0.5, 1.0]   # 0.01 < 0.05 at T=1; sqrt: 1 / (sqrt98 + 2) = 0.084 at T=2
    assert dk["non_target_entropy"][0] == pytest.approx((-(0.75 * log(0.75) + 0.25 * log(0.25)) + log(2)) / 2)
    # a wrong teacher: the mass off the gold label counts the teacher's own top class
    assert dark_knowledge([[log(6), log(3), 0.0]], [1], labels=[1])["non_target_mass"] == pytest.approx([0.7])
    with pytest.raises(KdlabError, match="temperatures must be > 0"):
        dark_knowledge(z, [0])


def test_temperature_lab_shows_the_dark_knowledge_view(env):
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/3_Temperature_lab.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    figs = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}
    dk = figs["Dark knowledge of the teacher's soft targets vs temperature (2 classes)"]
    lines = {d["name"]: d["y"] for d in dk["data"]}
    ent = np.array(lines["entropy of the soft targets"])
    assert np.all(np.diff(ent) > 0) and ent[-1] <= np.log(2) + 1e-9   # softer with T, at most log 2
    assert set(lines["entropy among the non-target classes"]) == {0.0}
    assert any("how sure" in m.value for m in at.markdown)
    labels = {m.label: m.value for m in at.metric}
    assert labels["second choice informative"] == "0%"
    # every figure of the page offers its download (HTML always; PNG when kaleido can render here)
    downloads = {d.proto.id.rsplit("-", 1)[-1]: d.proto.label for d in at.get("download_button")}
    for key in ("temp_dist", "temp_entropy", "temp_dark"):
        assert downloads[f"{key}_html"] == "HTML"
        assert downloads.get(f"{key}_png", "PNG") == "PNG"


# ----------------------------------------------------------------------------------------------- waiting status
def test_a_run_waiting_for_its_teacher_shows_the_preparation_and_how_to_cancel(env):
    import sys
    import time
    from kdlab.runs import prep_lock
    from kdlab.runs.store import Store
    from kdlab.tools import launch
    sys.path.insert(0, str(Path(APP).parent))
    import common
    store = Store(env)
    folder = common.teacher_folder(common.run_config(common.defaults()))   # the tiny Setup's teacher
    assert prep_lock.preparation(folder) is None
    tid = store.create_run("teacher", "ce", {"train": {"max_steps": 12}}, name="teacher tiny")
    store.set_artifact(tid, "plan", {"total_steps": 12, "started": time.time() - 30, "start_step": 0})
    store.log_metrics(tid, 3, 0, {"loss": 0.7})
    job = launch.Launch(pid=os.getpid(), name="kd-waiting", runs=str(env), log=os.devnull, started=time.time(),
                        command=[])   # alive: this process
    with prep_lock.held(folder, log=lambda m: None) as announce:
        announce(env, tid)
        prep = prep_lock.preparation(folder)
        assert prep["run"] == tid and prep["pid"] == os.getpid() and prep["fraction"] == 0.25
        # as another process (the Setup page's preparation) would have written it
        prep_lock.lock_path(folder).write_text(json.dumps({"pid": 4242, "store": str(env), "run": tid,
                                                           "since": "12:00:00"}))
        assert prep["line"].startswith("teacher fine-tuning, step 3 / 12, ETA")
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["train_job"] = job.__dict__
        at.switch_page("pages/4_Train.py").run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        info = " ".join(i.value for i in at.info)
        assert "waiting for the teacher being prepared by another process (pid 4242" in info
        assert "step 3 / 12" in info
        assert "phase: waiting for teacher" in info
        assert at.get("progress")[0].proto.value == 25
        assert any("teacher fine-tuning, step 3 / 12" in c.value for c in at.sidebar.caption)
        at.button(key="train_cancel_prep").click().run()
        assert store.cancel_requested(tid)
    assert prep_lock.preparation(folder) is None
    store.finish(tid, "cancelled")


# ----------------------------------------------------------------------------------------------- class pack
def test_workshop_prepare_runs_the_class_pack_then_skips_and_resumes(tmp_path, capsys, monkeypatch):
    import kdlab.engine.pipeline   # an interrupted run never gets to drop its checkpoint: keep them, to interrupt one below
    monkeypatch.setattr(kdlab.engine.pipeline, "drop_checkpoint", lambda folder: 0)
    from kdlab.cli import main
    from kdlab.runs.store import Store
    from kdlab.tools.workshop import PLAN, prepare, run_name
    args = ["workshop", "prepare", "--preset", "tiny", "--max-train", "32", "--max-eval", "16", "--max-steps", "2",
            "--runs", str(tmp_path), "--quiet"]
    assert main(args) == 0
    store = Store(tmp_path)
    runs = {r["name"]: r for r in store.runs()}
    assert len(store.runs(kind="teacher")) == 1   # one fine-tuning for the whole pack
    for label, method, margs in PLAN:
        r = runs[run_name("quick", label)]
        assert r["status"] == "finished" and r["method"] == method and r["config"]["method_args"] == margs
        assert r["config"]["train"]["max_steps"] == 2 and r["config"]["max_train"] == 32
    out = capsys.readouterr().out
    assert out.count(" trained ") == len(PLAN)
    # an interrupted run resumes from its checkpoint, the finished ones are skipped
    tiny = runs[run_name("quick", "tinybert")]["id"]
    store.finish(tiny, "failed", "interrupted")
    rows = prepare(store, "quick", log=lambda m: None, progress=False, preset="tiny", max_train=32, max_eval=16,
                   max_steps=2)
    acts = {r["label"]: r["action"] for r in rows}
    assert acts.pop("tinybert") == "resumed" and set(acts.values()) == {"skipped"}
    assert store.run(tiny)["status"] == "finished" and len(store.runs()) == len(PLAN) + 1
    rows = prepare(store, "quick", log=lambda m: None, progress=False, preset="tiny", max_train=32, max_eval=16,
                   max_steps=2)
    assert {r["action"] for r in rows} == {"skipped"} and len(store.runs()) == len(PLAN) + 1


# ----------------------------------------------------------------------------------------------- budgets
def test_setup_budget_quick_by_default_and_full_one_click_away(tmp_path, monkeypatch):
    from kdlab.config import BUDGETS
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path))
    monkeypatch.delenv("KDLAB_APP_PRESET", raising=False)   # the real defaults: packaged teacher, embedded data
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    q = BUDGETS["quick"]
    assert at.radio(key="setup_budget").value == "quick"
    assert at.number_input(key="setup_max_train").value == q["max_train"]
    assert at.number_input(key="setup_teacher_epochs").value == q["teacher_epochs"]
    at.radio(key="setup_budget").set_value("full").run()
    assert not at.exception and not at.error
    s = at.session_state["kd_setup"]
    assert (s["max_train"], s["max_eval"], s["teacher_epochs"], s["epochs"]) == (0, 0, 2, 3)
    assert at.number_input(key="setup_max_train").value == 0 and at.number_input(key="setup_teacher_epochs").value == 2
    assert any("2400 train" in m.value for m in at.success)
    at.switch_page("pages/4_Train.py").run()
    assert at.number_input(key="train_epochs").value == 3
