"""Inputs that used to end in a traceback or be silently accepted: one `kdlab: error:` line, exit 2, before any
work (no teacher fine-tuned, no run created)."""
import json

import pytest

from kdlab import cli
from kdlab.config import build_config
from kdlab.errors import KdlabError
from kdlab.runs.store import Store

TINY = ["distill", "--preset", "tiny", "--no-progress", "--quiet", "--max-train", "16", "--max-eval", "8"]


def _config(tmp_path, d):
    p = tmp_path / "run.json"
    p.write_text(json.dumps(d))
    return str(p)


CASES = {
    "max-len past the positions": (TINY + ["--max-len", "200"], "--max-len 200 is longer than the model 'tiny' "
                                                                "takes (128 tokens"),
    "student-layers 0": (TINY + ["--student-layers", "0"], "student-layers must be at least 1"),
    "student-hidden 0": (TINY + ["--student-hidden", "0"], "--student-hidden 0 is no hidden size"),
    "max-train -1": (TINY + ["--max-train", "-1"], "max-train must be a number of examples, or 0 for all"),
    "eval max-len 0": (["eval", "--run", "x", "--max-len", "0"], "--max-len is the number of tokens"),
    "eval max-len -3": (["eval", "--run", "x", "--max-len", "-3"], "at least 1 (got -3)"),
    "eval threads 0": (["eval", "--run", "x", "--model", "student", "--threads", "0"], "--threads is the number"),
    "config string for a number": ({"preset": "tiny", "train": {"lr": "abc"}}, "'train.lr' must be a number "
                                                                               "(got 'abc')"),
    "config string for layers": ({"preset": "tiny", "student_layers": "3"}, "'student_layers' must be a whole number"),
    "config bool for a number": ({"preset": "tiny", "max_train": True}, "'max_train' must be a whole number or null"),
    "preset keeps a bad lr": ({"preset": "tiny", "train": {"lr": -1}}, "train: learning rate must be positive"),
    "preset keeps a bad max_len": ({"preset": "tiny", "train": {"max_len": 0}}, "train: max-len must be at least 1"),
    "config unknown method": ({"preset": "tiny", "method": "nope"}, "nope"),
    "config student_layers 0": ({"preset": "tiny", "student_layers": 0}, "student_layers must be at least 1"),
    "config method option": ({"preset": "tiny", "method_args": {"nonsense": 1}}, "method 'kd' has no option(s)"),
    "--set method option": (TINY + ["--set", "nonsense=1"], "method 'kd' has no option(s) ['nonsense']"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_before_any_work(case, tmp_path, capsys):
    argv, needle = CASES[case]
    if isinstance(argv, dict):
        argv = ["distill", "--config", _config(tmp_path, argv), "--quiet"]
    rc = cli.main([*argv, "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("kdlab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert not (tmp_path / "runs" / "kdlab.db").exists() or Store(tmp_path / "runs").runs() == []


def test_zero_examples_means_all_as_the_help_says(capsys):
    cfg = build_config(preset="tiny", max_train=0, max_eval=0)
    assert cfg.max_train is None and cfg.max_eval is None
    p = cli.build_parser()
    sp = next(a for a in p._actions if hasattr(a, "choices") and a.choices and "distill" in a.choices).choices["distill"]
    helps = {a.dest: a.help for a in sp._actions}
    assert "0: all" in helps["max_train"] and "0: all" in helps["max_eval"]


def test_a_saved_model_refuses_a_longer_max_len(tmp_path):
    from kdlab.models.core import save_model, tiny_model
    from kdlab.engine.pipeline import eval_run
    store = Store(tmp_path / "runs")
    rid = store.create_run("student", "kd", build_config(preset="tiny").to_dict())
    model, tok = tiny_model()
    save_model(model, tok, store.folder(rid) / "student")
    store.set_artifact(rid, "model_dir", str(store.folder(rid) / "student"))
    store.finish(rid, "finished")
    (tmp_path / "x.tsv").write_text("sentence\tlabel\n" + "word " * 300 + "\tpositive\n")
    with pytest.raises(KdlabError, match="--max-len 512 is longer than the model takes \\(128 tokens"):
        eval_run(store, rid, str(tmp_path / "x.tsv"), max_len=512)
    import shutil
    shutil.rmtree(store.folder(rid) / "student")
    with pytest.raises(KdlabError, match="the model folder of run .* is gone"):
        eval_run(store, rid, str(tmp_path / "x.tsv"), max_len=64)


@pytest.mark.parametrize("method,args,needle", [
    ("margin-mse", {"doc_len": "abc"}, "doc_len must be an integer"),
    ("margin-mse", {"negatives": 0}, "negatives must be >= 1"),
    ("listwise-kl", {"temperature": "x"}, "temperature must be a number"),
    ("margin-mse", {"temperature": 2}, r"method 'margin-mse' has no option\(s\) \['temperature'\]"),
    ("contrastive", {"teacher_eval": "some"}, "teacher_eval must be a whole number of queries or 'all'")])
def test_ranking_options_are_checked(method, args, needle):
    from kdlab.ranking.train import options
    with pytest.raises(KdlabError, match=needle):
        options(build_config(method=method, method_args=args))
