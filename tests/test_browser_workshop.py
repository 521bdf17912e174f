"""The workshop path in a real browser (tiny preset): Prepare the teacher on Setup, then at once Start run on Train
with an option set in the form. One fine-tuning only, the sidebar status comes and goes, and the form's value is
in the stored run's configuration. Debian's Chromium + Playwright (never ``playwright install``)."""
import json
from pathlib import Path

import pytest

from test_browser import CHROMIUM, browser_page, open_page, serve

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian Chromium is not installed (apt-get install -y chromium)")

SIDEBAR = '[data-testid="stSidebar"]'
# remembers, for the whole tab (sessionStorage: kept across page switches and reloads), whether the sidebar ever
# listed a run or a preparation in progress (it refreshes itself every 2 s; a tiny run can be over in less)
WATCH = """() => {
  const check = () => { const s = document.querySelector('%s');
                        if (s && s.innerText.includes('⏳')) sessionStorage.setItem('kdlabSawRunning', '1'); };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});
  check(); }""" % SIDEBAR


def test_prepare_then_start_run_fine_tunes_the_teacher_once(tmp_path):
    from kdlab.runs.store import Store
    runs = tmp_path / "runs"
    runs.mkdir()
    # its own teacher cache: the teacher of the tiny Setup is not prepared yet
    with serve(runs, KDLAB_TEACHERS=str(tmp_path / "teachers")) as url, browser_page() as pg:
        open_page(pg, url, "Setup")
        pg.evaluate(WATCH)
        pg.get_by_role("button", name="Prepare (fine-tune) the teacher").click()
        pg.get_by_text("starting ...").first.wait_for(timeout=60_000)   # the preparation process is launched
        open_page(pg, url, "Train")
        pg.evaluate(WATCH)
        pg.get_by_label("temperature", exact=True).fill("3.5")
        # long enough (a few seconds) for the sidebar, which refreshes every 2 s, to list it while it trains
        pg.get_by_label("max steps", exact=True).fill("600")
        pg.get_by_label("epochs", exact=True).fill("30")
        pg.get_by_role("button", name="Start run").click()
        pg.get_by_text("status: finished").first.wait_for(timeout=120_000)
        pg.wait_for_function(f"() => !document.querySelector('{SIDEBAR}').innerText.includes('⏳')",
                             timeout=30_000)   # the sidebar status is gone once nothing runs
        saw = pg.evaluate("() => sessionStorage.getItem('kdlabSawRunning') === '1'")
        assert pg.locator('[data-testid="stException"]').count() == 0
        assert pg.external_requests == [], sorted(set(pg.external_requests))
    store = Store(runs)
    teachers = store.runs(kind="teacher")
    assert len(teachers) == 1 and teachers[0]["status"] == "finished"   # one fine-tuning
    students = [r for r in store.runs() if r["kind"] != "teacher"]
    assert len(students) == 1 and students[0]["status"] == "finished" and students[0]["method"] == "kd"
    assert students[0]["config"]["method_args"] == {"temperature": 3.5}   # from the form
    log = next((runs / "launches").glob("kd-*.log")).read_text()
    assert "fine-tuning tiny" not in log and ("waiting for another process" in log or "reusing" in log), log
    assert saw, "the sidebar never listed the run in progress"
    conf = json.loads(next((runs / "launches").glob("kd-*.json")).read_text())
    assert conf["method_args"] == {"temperature": 3.5}
