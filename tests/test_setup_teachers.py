"""The Setup page's teacher and student choices under AppTest (tiny preset, an empty run store, no training):
the family picker, the ensemble, the soft-labels file, the ready teacher and the pretrained student reach the
session settings and the RunConfig the pages launch (``common.run_config``); a bad value is one message."""
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app"


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    monkeypatch.setenv("KDLAB_APP_PRESET", "tiny")
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(str(APP / "pages" / "1_Setup.py"), default_timeout=120)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def config(at):
    import common
    return common.run_config(at.session_state["kd_setup"])


def test_family_picker_sets_arch_and_the_tiny_teacher_of_that_family(page):
    at = page
    assert at.selectbox(key="setup_arch").options[:3] == ["bert", "roberta", "electra"]
    at.selectbox(key="setup_arch").set_value("roberta").run()
    assert not at.exception and not at.error
    assert at.session_state["kd_setup"]["arch"] == "roberta"
    assert config(at).teacher == "tiny-roberta" and config(at).teachers == []
    assert any("fine-tuned" in w.value for w in at.warning)   # nothing prepared in this store yet
    at.radio(key="setup_teacher_kind").set_value("built-in minilm-l6").run()   # the family is the tiny one's only
    assert at.session_state["kd_setup"]["arch"] is None and config(at).teacher == "minilm-l6"


def test_ensemble_inputs_give_two_teachers_and_the_loss_form(page):
    at = page
    at.selectbox(key="setup_arch").set_value("electra").run()
    at.multiselect(key="setup_ensemble_pick").set_value(["tiny-roberta"]).run()
    at.radio(key="setup_ensemble").set_value("mean-kl").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cfg = config(at)
    assert cfg.teachers == ["tiny-electra", "tiny-roberta"] and cfg.teacher == "tiny-electra"
    assert cfg.ensemble == "mean-kl"
    assert any("ensemble of 2 teachers (mean-kl)" in c.value for c in at.caption)
    warn = " ".join(w.value for w in at.warning)   # the Prepare section lists both teachers to fine-tune
    assert "tiny-electra" in warn and "tiny-roberta" in warn
    assert at.button(key="setup_prepare").label == "Prepare (fine-tune) the ensemble's teachers"
    # teachers that tokenize differently: refused with one line before any run
    at.multiselect(key="setup_ensemble_pick").set_value(["minilm-l6"]).run()
    assert not at.exception and len(at.error) == 1 and "tokenize differently" in at.error[0].value


def test_pretrained_student_and_ready_teacher_reach_the_config(page):
    at = page
    at.radio(key="setup_student_kind").set_value("a pretrained model (name or folder)").run()
    at.text_input(key="setup_student_text").input("minilm-l6").run()
    assert not at.exception and not at.error
    assert at.session_state["kd_setup"]["student"] == "minilm-l6" and config(at).student == "minilm-l6"
    at.radio(key="setup_teacher_kind").set_value("hub name").run()
    at.text_input(key="setup_teacher_text").input("someone/finetuned-sst2").run()
    at.checkbox(key="setup_teacher_finetuned").check().run()
    assert not at.exception and not at.error
    cfg = config(at)
    assert cfg.teacher == "someone/finetuned-sst2" and cfg.teacher_finetuned is True
    assert any("used as is" in i.value for i in at.info)


def test_soft_labels_file_good_and_bad(page):
    at = page
    runs = Path(os.environ["KDLAB_RUNS"])
    runs.mkdir(parents=True, exist_ok=True)
    good = runs / "soft.npy"   # inside the run store: an allowed folder
    np.save(good, np.zeros((4, 2), dtype=np.float32))
    at.text_input(key="setup_teacher_logits").input(str(good)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert config(at).teacher_logits == str(good.resolve())
    assert any("soft labels" in i.value for i in at.info)
    at.text_input(key="setup_teacher_logits").input(str(runs / "missing.npy")).run()
    assert not at.exception
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    (runs / "notes.txt").write_text("x")
    at.text_input(key="setup_teacher_logits").input(str(runs / "notes.txt")).run()
    assert len(at.error) == 1 and ".npy, .csv or .tsv" in at.error[0].value


def test_train_page_refuses_a_layer_method_for_an_ensemble_before_launching(page):
    at = page
    at.multiselect(key="setup_ensemble_pick").set_value(["tiny-roberta"]).run()
    train = AppTest.from_file(str(APP / "pages" / "4_Train.py"), default_timeout=60)
    train.session_state["kd_setup"] = at.session_state["kd_setup"]
    train.run()
    train.selectbox(key="train_method").set_value("pkd-skip").run()
    train.button[0].click().run()   # the form's "Start run"
    assert not train.exception and len(train.error) == 1
    assert "cannot learn from several teachers" in train.error[0].value and "kd" in train.error[0].value
    assert "train_job" not in train.session_state   # nothing was launched


def test_a_folder_kdlab_saved_is_the_ready_teacher_and_a_pretrained_student(page):
    """A kdlab folder (kdlab.json) as the teacher is used as is without the checkbox; the same folder as the
    pretrained student is what Measure sizes (same tokenizer as the teacher)."""
    from kdlab.models.core import save_model, tiny_model
    runs = Path(os.environ["KDLAB_RUNS"])
    folder = runs / "saved" / "model"
    model, tok = tiny_model(2, num_hidden_layers=3)
    save_model(model, tok, folder, extra={"note": "a saved classifier"})
    at = page
    at.radio(key="setup_teacher_kind").set_value("model folder").run()
    at.text_input(key="setup_teacher_text").input(str(folder)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("used as is" in i.value for i in at.info) and not at.warning
    at.radio(key="setup_student_kind").set_value("a pretrained model (name or folder)").run()
    at.text_input(key="setup_student_text").input(str(folder)).run()
    at.button(key="setup_measure").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sizes = at.session_state["setup_sizes"]
    assert sizes["teacher (fine-tuned)"]["layers"] == 3 and sizes["student"]["layers"] == 3
    assert sizes["student"]["params"] == sizes["teacher (fine-tuned)"]["params"] == model.num_parameters()
