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
