"""The run choices are declared once (kdlab.choices.TABLE): the command line's options, the config defaults, the
dashboard's defaults, the presets and the budgets all come from it, so a default cannot differ between them."""
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from kdlab import cli
from kdlab.choices import BUDGETS, BY_NAME, DEFAULT_STUDENT_LR, DEFAULT_TEACHER_LR, DEFAULTS, PRESETS, TABLE
from kdlab.config import RunConfig, TrainConfig, build_config
from kdlab.errors import KdlabError

ROOT = Path(__file__).resolve().parents[1]
RUN_COMMANDS = {"distill": {"run", "student", "named"}, "demo": {"run", "student"}, "study": {"run", "student"},
                "teacher": {"run"}}


def subparser(name):
    p = cli.build_parser()
    return next(a for a in p._actions if a.dest == "cmd").choices[name]


def load_common():
    spec = importlib.util.spec_from_file_location("kdlab_app_common_choices", ROOT / "app" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("command", list(RUN_COMMANDS))
def test_every_declared_choice_is_an_option_of_the_run_commands_that_take_it(command):
    actions = {a.dest: a for a in subparser(command)._actions}
    for c in TABLE:
        if c.scope in RUN_COMMANDS[command]:
            assert c.name in actions, f"`kdlab {command}` has no option for the declared choice {c.name}"
            a = actions[c.name]
            assert a.option_strings[0] == c.option and a.default is None, c.name   # None: the default or a preset's
            assert list(a.choices or []) == list(c.choices or []), c.name
        else:
            assert c.name not in actions or c.name == "name", f"`kdlab {command}` should not take {c.option}"


def test_only_the_dashboards_and_the_studys_own_choices_are_no_option():
    assert sorted(c.name for c in TABLE if c.scope is None) == ["augment_args", "data_seed"]


def test_kdlab_distill_with_no_options_is_the_config_defaults():
    cfg = cli.config_from_args(subparser("distill").parse_args([]))
    assert cfg == RunConfig() == build_config()
    # and each default is the table's: the student's training, the teacher's fine-tuning, the run's fields
    assert cfg.train.lr == DEFAULT_STUDENT_LR == DEFAULTS["lr"] == 1e-4
    assert cfg.teacher_train.lr == DEFAULT_TEACHER_LR == TrainConfig().lr == 5e-5
    assert cfg.teacher_train.epochs == DEFAULTS["teacher_epochs"] == 2
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in DEFAULTS.items():
        if name in train_fields and name != "lr":
            assert getattr(TrainConfig(), name) == getattr(cfg.train, name) == value, name
        elif name in {f.name for f in dataclasses.fields(RunConfig)} and name not in ("ood", "augment_args",
                                                                                     "method_args"):
            assert getattr(RunConfig(), name) == value, name


def test_the_dashboards_budgets_build_the_same_runs_as_the_command_line():
    C = load_common()
    # full: every default, exactly `kdlab distill` with no options (the dashboard never shows progress bars)
    full = C.run_config({**C.defaults(), **C.budget("full")})
    assert full == cli.config_from_args(subparser("distill").parse_args(["--no-progress"]))
    # quick, the dashboard's default: the budget's values over the same defaults
    q = BUDGETS["quick"]
    args = ["--no-progress", "--max-train", q["max_train"], "--max-eval", q["max_eval"], "--teacher-epochs",
            q["teacher_epochs"], "--teacher-lr", q["teacher_lr"], "--epochs", q["epochs"], "--lr", q["lr"]]
    d = C.defaults()
    assert C.run_config(d, epochs=d["epochs"]) == \
        cli.config_from_args(subparser("distill").parse_args(map(str, args)))   # the Train page gives the epochs
    assert (d["teacher"], d["student_layers"], d["student_init"], d["ensemble"], d["lr"]) == \
        (DEFAULTS["teacher"], DEFAULTS["student_layers"], DEFAULTS["student_init"], DEFAULTS["ensemble"], q["lr"])


def test_presets_and_budgets_set_declared_choices_and_an_explicit_choice_beats_them():
    for values in [*PRESETS.values(), *BUDGETS.values()]:
        assert set(values) <= set(BY_NAME)
    assert BUDGETS["full"] == {**{k: DEFAULTS[k] for k in BUDGETS["full"]}, "lr": None}
    tiny = cli.config_from_args(subparser("distill").parse_args(["--preset", "tiny"]))
    assert (tiny.teacher, tiny.student_layers, tiny.train.lr, tiny.train.epochs, tiny.train.max_len,
            tiny.teacher_train.epochs) == tuple(PRESETS["tiny"][k] for k in ("teacher", "student_layers", "lr", "epochs",
                                                                              "max_len", "teacher_epochs"))
    mine = cli.config_from_args(subparser("distill").parse_args(["--preset", "tiny", "--lr", "0.01"]))
    assert mine.train.lr == 0.01


def test_help_texts_show_the_declared_defaults():
    helps = {a.dest: a.help for a in subparser("distill")._actions}
    assert "default 0.0001;" in helps["lr"] and "0.0005 with --preset tiny" in helps["lr"]
    assert f"default {DEFAULTS['student_layers']};" in helps["student_layers"]
    assert f"default {DEFAULTS['teacher_epochs']};" in helps["teacher_epochs"]
    assert all("{" not in (h or "") for h in helps.values())


@pytest.mark.parametrize("name", [c.name for c in TABLE if c.choices and c.name not in ("preset",)])
def test_a_value_outside_a_declared_set_is_refused_by_the_builder_too(name):
    with pytest.raises(KdlabError) as e:
        build_config(**{name: "nonsense"})
    assert "nonsense" in str(e.value) and "\n" not in str(e.value)
