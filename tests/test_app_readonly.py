"""The dashboard on a read-only run store: the pages that show stored runs open without an error and say once
that new runs need a writable store (opening a store writes nothing; the tests run as root, where chmod does not
bite, so os.access is told the folder is read-only)."""
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kdlab.runs import store_paths

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture(scope="module")
def ro_root(tmp_path_factory):
    from kdlab.config import RunConfig, TrainConfig
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(teacher="tiny", max_train=64, max_eval=32, student_layers=2, method="kd", name="kd",
                    train=TrainConfig(max_steps=2, epochs=1, batch_size=16, max_len=32, progress=False),
                    teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False))
    distill_run(cfg, Store(root), log=lambda m: None)
    return root


@pytest.fixture
def readonly(ro_root, monkeypatch):
    real = os.access
    monkeypatch.setattr(store_paths.os, "access", lambda p, m, **k: False if str(p).startswith(str(ro_root))
                        and m == os.W_OK else real(p, m, **k))
    monkeypatch.setenv("KDLAB_RUNS", str(ro_root))
    monkeypatch.setenv("KDLAB_APP_PRESET", "tiny")
    db = ro_root / "kdlab.db"
    before = db.read_bytes()
    yield
    assert db.read_bytes() == before   # nothing written


@pytest.mark.parametrize("page", ["main", *(f"pages/{p.name}" for p in sorted((Path(APP).parent / "pages").glob("*.py")))])
def test_pages_open_on_a_readonly_store(page, readonly):
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    if page != "main":
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("read-only" in w.value and "writable" in w.value for w in at.warning)
