"""The command line: one registration style, every declared option used by its command, the one config builder.

The engine calls of the handlers are replaced by stubs here, so these tests take seconds; the commands' real
runs are tested in test_pipeline.py, test_cka_run.py, test_bench.py, test_resume.py and test_bad_inputs.py.
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kdlab import cli
from kdlab.config import CHOICES, PRESETS, TEACHER_LR, RunConfig, apply_preset, build_config
from kdlab.errors import KdlabError


def subparsers() -> dict:
    p = cli.build_parser()
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def declared(parser) -> set:
    return {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)}


# -------------------------------------------------------------------------------------------------- --help
def test_cka_help_has_only_cka_options():
    exe = shutil.which("kdlab") or str(Path(sys.executable).with_name("kdlab"))   # the console command
    p = subprocess.run([exe, "cka", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--rounds" not in p.stdout and "--peak-tflops" not in p.stdout
    assert "--pool" in p.stdout and "--max-examples" in p.stdout
    bench = subparsers()["bench"].format_help()
    assert "--rounds" in bench and "--peak-tflops" in bench


def test_every_command_is_registered_the_same_way():
    import importlib.util
    assert importlib.util.find_spec("kdlab.cli_extra") is None
    assert set(cli.COMMANDS) == {"distill", "teacher", "demo", "eval", "methods", "runs", "cka", "bench",
                                 "compress", "study", "workshop", "gc", "doctor"}
    assert set(subparsers()) == set(cli.COMMANDS)
    for name, (f, help, add_args) in cli.COMMANDS.items():
        assert callable(f) and help and callable(add_args), name


def test_the_teacher_command_has_no_student_options():
    opts = declared(subparsers()["teacher"])
    assert not opts & {"student_layers", "method", "method_args", "epochs", "max_steps", "lr", "resume", "name",
                       "length_buckets", "teacher_cache"}
    assert "resume" in declared(subparsers()["distill"]) and "resume" not in declared(subparsers()["demo"])


# -------------------------------------------------------------------------------------------------- every option read
class Spy(argparse.Namespace):
    """A namespace that records which attributes the handler reads."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_read", set())

    def __getattribute__(self, k):
        if not k.startswith("_"):
            object.__getattribute__(self, "_read").add(k)
        return object.__getattribute__(self, k)


@pytest.fixture
def stubs(monkeypatch, tmp_path):
    """The engine calls of every command replaced by stubs that record nothing and take no time."""
    import kdlab.deploy.artifacts
    import kdlab.deploy.report
    import kdlab.models.core
    import kdlab.engine.pipeline
    import kdlab.tools.bench
    import kdlab.tools.cka_run
    import kdlab.tools.demo
    import kdlab.tools.workshop   # before the pipeline is stubbed: the module binds its functions at import

    def finished(store, cfg=None):
        rid = store.create_run("student", "kd", cfg.to_dict() if cfg else {}, name=cfg.name if cfg else None)
        store.finish(rid, "finished")
        return rid

    matrix = {"run": "r", "teacher_run": "t", "n": 4, "pool": "mean", "linear": [[1.0]], "debiased": [[1.0]]}
    bundle = SimpleNamespace(train=[], eval_splits=lambda: {"dev": []}, num_labels=lambda: 2)
    monkeypatch.setattr(kdlab.engine.pipeline, "distill_run", lambda cfg, store, log, **k: finished(store, cfg))
    monkeypatch.setattr(kdlab.engine.pipeline, "resume_run", lambda store, run_id, log, **k: finished(store))
    monkeypatch.setattr(kdlab.engine.pipeline, "prepare_teacher", lambda cfg, store, bundle, log, **k: (0, 0, finished(store, cfg)))
    monkeypatch.setattr(kdlab.engine.pipeline, "load_bundle", lambda cfg: bundle)
    monkeypatch.setattr(kdlab.engine.pipeline, "eval_run", lambda *a, **k: {"accuracy": 1.0})
    monkeypatch.setattr(kdlab.tools.demo, "run_demo", lambda cfg, store, log, also=(): 0)
    monkeypatch.setattr(kdlab.tools.cka_run, "cka_for_run", lambda *a, **k: matrix)
    monkeypatch.setattr(kdlab.tools.cka_run, "cka_between", lambda *a, **k: matrix)
    monkeypatch.setattr(kdlab.models.core, "load_teacher", lambda *a, **k: (None, None))
    monkeypatch.setattr(kdlab.models.core, "build_student", lambda *a, **k: None)
    monkeypatch.setattr(kdlab.deploy.artifacts, "compress_run", lambda *a, **k: {})
    import kdlab.engine.study
    monkeypatch.setattr(kdlab.tools.workshop, "prepare", lambda store, profile, **k: [
        {"label": "kd", "status": "finished", "action": "skipped", "seconds": 0.0, "run": "r"}])

    def study(cfg, store, name, *a, **k):
        store.save_study(name, {})
        return {"rows": [], "failed": 0, "busy": []}
    monkeypatch.setattr(kdlab.engine.study, "run_study", study)
    monkeypatch.setattr(kdlab.engine.study, "aggregate", lambda *a, **k: [])
    monkeypatch.setattr(kdlab.deploy.report, "eval_models", lambda *a, **k: {})
    monkeypatch.setattr(kdlab.tools.bench, "run_bench", lambda **k: {})
    monkeypatch.setattr(kdlab.tools.bench, "write_markdown", lambda *a, **k: None)
    import kdlab.runs.run_record
    monkeypatch.setattr(kdlab.runs.run_record.StoredRun, "load", staticmethod(lambda store, run: SimpleNamespace(
        task_kind="classes", is_ranking=False, data=None, row={})))
    import kdlab.analysis.doctor
    monkeypatch.setattr(kdlab.analysis.doctor, "diagnose", lambda store, run: {})
    monkeypatch.setattr(kdlab.analysis.doctor, "format_report", lambda d: "")
    import kdlab.tools.bench_concurrent
    monkeypatch.setattr(kdlab.tools.bench_concurrent, "run_concurrent", lambda n, every_core, log: {})
    monkeypatch.setattr(kdlab.tools.bench_concurrent, "write_markdown", lambda *a, **k: None)
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "runs"))
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"preset": "tiny"}))
    return {"config": str(config), "md": str(tmp_path / "B.md")}


# each command line of a command together takes every path of its handler
VARIANTS = {
    "distill": [["--keep-checkpoints"], ["--resume", "x"], ["--config", "{config}"]],
    "teacher": [[], ["--config", "{config}"]],
    "demo": [[], ["--config", "{config}"]],
    "eval": [["--run", "r", "--data", "x.tsv"], ["--run", "r", "--model", "student", "--json"]],
    "compress": [["--run", "r", "--prune-vocab", "c.txt", "--quantize", "int8", "--onnx", "--name", "n",
                  "--text-col", "t", "--prune-heads", "2", "--prune-ffn", "8", "--recover-steps", "3",
                  "--prune-sample", "16"]],
    "methods": [[]],
    "runs": [[], ["--prune"]],
    "gc": [["--failed", "--dry-run"]],
    "doctor": [["--run", "r"], ["--run", "r", "--json"]],
    "cka": [[], ["--run", "r"]],
    "bench": [["--write", "{md}"], ["--concurrent", "2", "--every-core", "--write", "{md}"]],
    "study": [["--methods", "ce,kd", "--seeds", "2", "--vary", "temperature=2,4", "--baseline", "ce", "--workers", "2",
               "--bootstrap", "10", "--name", "s", "--json"], ["--name", "s", "--csv"], ["--list"]],
    "workshop": [["prepare", "--profile", "full", "--preset", "tiny", "--teacher", "tiny", "--data", "x",
                  "--max-train", "8", "--max-eval", "4", "--max-steps", "2"]],
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_declared_option_is_read_by_its_command(name, stubs, capsys):
    assert set(VARIANTS) == set(cli.COMMANDS)
    parser = cli.build_parser()
    read = set()
    for extra in VARIANTS[name]:
        a = parser.parse_args([name, *(x.format(**stubs) for x in extra)], namespace=Spy())
        a._read.clear()                       # what argparse itself looked at
        assert a.func(a) == 0
        read |= a._read
    capsys.readouterr()
    unread = declared(subparsers()[name]) - read
    assert not unread, f"`kdlab {name}` declares options its handler never reads: {sorted(unread)}"


# -------------------------------------------------------------------------------------------------- every run option used
SAMPLES = {
    "preset": ["tiny"], "teacher": ["tiny"], "teacher_finetuned": [], "arch": ["roberta", "--teacher", "tiny"],
    "ensemble": ["mean-kl"], "teacher_logits": ["z.npy"], "trust_remote_code": [], "student_layers": ["2"],
    "student_init": ["first"], "student_layer_list": ["0,2"], "student_hidden": ["64"], "data": ["x.tsv"],
    "student_narrow_init": ["pca", "--student-hidden", "64"],
    "text_col": ["text"], "label_col": ["y"], "task": ["rte"], "label_kind": ["score"], "ood_map": ["a=b"],
    "ood": ["o.tsv"], "max_train": ["10"], "max_eval": ["10"],
    "method": ["ce"], "method_args": ["alpha_soft=0.7"], "temperature": ["4"], "epochs": ["5"], "max_steps": ["7"],
    "batch_size": ["8"], "lr": ["0.01"], "grad_accum": ["2"], "max_len": ["16"], "seed": ["5"], "device": ["cpu"],
    "precision": ["fp32"], "teacher_epochs": ["1"], "teacher_lr": ["0.01"], "checkpoint_every": ["3"],
    "teacher_cache": ["on"], "cache_dtype": ["fp16"], "length_buckets": ["off"],
    "select": ["dev:accuracy"], "patience": ["2", "--select", "dev:accuracy"], "name": ["x"], "no_progress": [],
    "data_seed": [], "transfer": [__file__], "student": ["tiny"], "augment": [], "augment_args": [], "tensorboard": [],
    "threads": ["2"], "grad_share_every": ["5"],
}


def teacher_view(cfg: RunConfig) -> dict:
    """What ``kdlab teacher`` uses: the teacher, the data (split with the seed) and the fine-tuning settings."""
    d = cfg.to_dict()
    keep = ("teacher", "teacher_finetuned", "trust_remote_code", "data", "text_col", "label_col", "task", "label_kind", "ood_map", "ood",
            "max_train", "max_eval", "teacher_train")
    return {**{k: d[k] for k in keep}, "seed": cfg.train.seed}


VIEWS = {"distill": RunConfig.to_dict, "demo": RunConfig.to_dict, "teacher": teacher_view}


@pytest.mark.parametrize("name", list(VIEWS))
def test_every_run_option_changes_what_its_command_runs(name):
    sp = subparsers()[name]
    flags = {a.dest: a.option_strings[0] for a in sp._actions if a.dest in CHOICES}
    assert set(SAMPLES) == set(CHOICES), "add a sample value for each new build_config choice"
    view = VIEWS[name]
    base = view(cli.config_from_args(sp.parse_args([])))
    for dest, flag in flags.items():
        cfg = cli.config_from_args(sp.parse_args([flag, *SAMPLES[dest]]))
        assert view(cfg) != base, f"`kdlab {name} {flag}` does not change what the command runs"


# -------------------------------------------------------------------------------------------------- one builder
def test_build_config_defaults_presets_and_explicit_choices():
    cfg = build_config()
    assert cfg.teacher == "minilm-l6" and cfg.student_layers == 3 and cfg.data is None
    assert cfg.train.lr == CHOICES["lr"] and cfg.teacher_train.lr == 5e-5 and cfg.teacher_train.epochs == 2
    tiny = build_config(preset="tiny")
    p = PRESETS["tiny"]
    assert (tiny.teacher, tiny.student_layers, tiny.train.lr, tiny.train.epochs, tiny.train.max_len) == \
        (p["teacher"], p["student_layers"], p["lr"], p["epochs"], p["max_len"])
    assert tiny.teacher_train.lr == TEACHER_LR["tiny"] and tiny.teacher_train.epochs == p["teacher_epochs"]
    assert tiny.preset_applied and apply_preset(tiny) is tiny
    # an explicit choice beats the preset
    mine = build_config(preset="tiny", teacher_epochs=1, max_len=16, lr=1e-5, student_layers=3)
    assert (mine.teacher_train.epochs, mine.train.max_len, mine.teacher_train.max_len, mine.train.lr,
            mine.student_layers) == (1, 16, 16, 1e-5, 3)
    # the tiny teacher's learning rate is the same with or without the preset, and in apply_preset
    assert build_config(teacher="tiny").teacher_train.lr == TEACHER_LR["tiny"] == \
        apply_preset(RunConfig(preset="tiny")).teacher_train.lr
    # the CLI's spellings
    cfg = build_config(data="embedded", student_init="uniform", method_args=[("alpha_soft", 0.5)], temperature=2,
                       max_train=0, student_hidden=0)
    assert cfg.data is None and cfg.student_init == "skip" and cfg.method_args == {"alpha_soft": 0.5, "temperature": 2}
    assert cfg.max_train is None and cfg.student_hidden is None
    assert build_config(student_layer_list=[0, 2]).student_init == "explicit"


@pytest.mark.parametrize("choices, words", [
    ({"colour": "red"}, ["unknown run setting", "colour"]),
    ({"preset": "huge"}, ["unknown preset", "huge"]),
    ({"lr": -1.0}, ["learning rate must be positive"]),
    ({"teacher_epochs": 0}, ["epochs must be at least 1"]),
    ({"max_steps": 0}, ["max-steps"]),
    ({"student_init": "middle"}, ["student-init", "middle"]),
])
def test_build_config_refuses_bad_choices(choices, words):
    with pytest.raises(KdlabError) as e:
        build_config(**choices)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_cli_builds_with_build_config():
    a = subparsers()["distill"].parse_args(["--preset", "tiny", "--set", "temperature=4", "--max-steps", "3",
                                            "--student-layer-list", "0,2"])
    assert cli.config_from_args(a) == build_config(preset="tiny", method_args={"temperature": 4}, max_steps=3,
                                                   student_layer_list=[0, 2])


# -------------------------------------------------------------------------------------------------- options that would do nothing
@pytest.mark.parametrize("argv, words", [
    (["distill", "--config", "{config}", "--epochs", "2", "--set", "a=1"], ["--config", "drop --set, --epochs"]),
    (["distill", "--resume", "x", "--lr", "1"], ["--resume", "drop --lr"]),
    (["cka", "--run", "r", "--teacher", "tiny"], ["--run", "drop --teacher"]),
    (["cka", "--runs", "/tmp/x"], ["without --run", "drop --runs"]),
])
def test_options_that_would_do_nothing_are_one_error_line(argv, words, stubs, capsys):
    assert cli.main([x.format(**stubs) for x in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdlab: error:") and all(w in err for w in words), err


def test_argparse_mistakes_are_one_error_line(capsys):
    for argv in (["nope"], ["cka", "--rounds", "3"], ["teacher", "--epochs", "2"],
                 ["distill", "--student-layer-list", "1,x"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("kdlab: error:") and "Traceback" not in "".join(lines), argv


# -------------------------------------------------------------------------------------------------- the dashboard's launcher
def test_launch_runs_kdlab_with_the_config_written_to_the_store(tmp_path):
    """The dashboard launches `kdlab distill --config <runs>/launches/NAME.json`; here the process stops at
    once on an unknown method, and its one error line comes back through the launch log."""
    from kdlab.runs.store import Store
    from kdlab.tools import launch
    cfg = build_config(preset="tiny", method="no-such-method", max_train=16, max_eval=8)
    job = launch.launch(cfg, tmp_path, "my run")
    assert job.command[3:6] == ["distill", "--config", job.config] and "--name" not in job.command
    saved = json.loads(Path(job.config).read_text())
    assert saved["name"] == "my run" and saved["method"] == "no-such-method"
    assert saved["train"]["progress"] is False and saved["teacher_train"]["progress"] is False
    assert saved["teacher_train"] == dict(cfg.to_dict()["teacher_train"], progress=False)
    assert cfg.name is None and cfg.train.progress   # the caller's config is left as it was
    with pytest.raises(KdlabError, match="stopped before it started") as e:
        launch.wait_for_run(Store(tmp_path), job, timeout=300)
    assert "kdlab: error: unknown method" in str(e.value)
