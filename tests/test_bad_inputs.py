"""Bad inputs end with one clear line on stderr, exit code 2, no traceback, and no run lost or corrupted."""
import json

import pytest

from kdlab.cli import main
from kdlab.runs.store import Store

TINY = ["distill", "--preset", "tiny", "--no-progress", "--max-train", "16", "--max-eval", "8"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    s = Store(root)
    rid = s.create_run("student", "kd", {"method": "kd"}, name="existing")
    s.log_metrics(rid, 1, 0, {"loss": 0.5})
    s.finish(rid, "finished")
    monkeypatch.setenv("KDLAB_RUNS", str(root))
    return s


def _files(tmp_path):
    d = tmp_path
    (d / "bin.tsv").write_bytes(b"sentence\tlabel\n\x00\x01\x02\tx\n")
    (d / "cols.tsv").write_text("text\ty\nhello\t1\nbye\t0\n")
    (d / "empty.tsv").write_text("")
    (d / "ood.tsv").write_text("sentence\tlabel\nfine\tmaybe\n")
    (d / "bad.json").write_text("{not json")
    (d / "unknown.json").write_text(json.dumps({"colour": "red"}))
    (d / "badtrain.json").write_text(json.dumps({"train": {"learning_rate": 1}}))
    (d / "binmodel").mkdir()
    (d / "binmodel" / "config.json").write_text("{}")
    (d / "binmodel" / "pytorch_model.bin").write_bytes(b"pickle")
    (d / "nocfg").mkdir()
    (d / "good.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    (d / "badlabels.tsv").write_text("sentence\tlabel\n" + "good\t1\nbad\t0\n" * 8 + "odd\tmaybe\n")
    return d


CASES = {
    "missing data file": (TINY + ["--data", "{d}/missing.tsv"], "not found"),
    "binary data file": (TINY + ["--data", "{d}/bin.tsv"], "NUL"),
    "wrong column names": (TINY + ["--data", "{d}/cols.tsv"], "column"),
    "empty data": (TINY + ["--data", "{d}/empty.tsv"], "empty"),
    "eval labels outside the label set": (TINY + ["--ood", "{d}/ood.tsv"], "maybe"),
    "missing model folder": (["distill", "--teacher", "{d}/nope/model", "--no-progress"], "does not exist"),
    "folder without config": (["distill", "--teacher", "{d}/nocfg", "--no-progress"], "config.json"),
    "only pytorch_model.bin": (["distill", "--teacher", "{d}/binmodel", "--no-progress"], "safetensors"),
    "student deeper than its teacher": (TINY + ["--student-layers", "9"], "more layers"),
    "student layer index out of range": (TINY + ["--student-layer-list", "0,7"], "out of range"),
    "training labels outside the label set": (TINY + ["--data", "{d}/badlabels.tsv"], "maybe"),
    "unknown model name": (["distill", "--teacher", "no-such-org/no-such-model", "--no-progress"], "no-such-model"),
    "unknown method": (TINY + ["--method", "nope"], "unknown method"),
    "bad config JSON": (["distill", "--config", "{d}/bad.json"], "not valid JSON"),
    "missing config file": (["distill", "--config", "{d}/none.json"], "cannot read"),
    "unknown config key": (["distill", "--config", "{d}/unknown.json"], "colour"),
    "unknown train key": (["distill", "--config", "{d}/badtrain.json"], "learning_rate"),
    "negative lr": (TINY + ["--lr", "-1"], "learning rate"),
    "max-steps 0": (TINY + ["--max-steps", "0"], "max-steps"),
    "batch size 0": (TINY + ["--batch-size", "0"], "batch-size"),
    "negative checkpoint-every": (TINY + ["--checkpoint-every", "-1"], "checkpoint-every"),
    "eval on a missing run": (["eval", "--run", "nope", "--data", "{d}/good.tsv"], "no run 'nope'"),
    "resume a missing run": (["distill", "--resume", "nope"], "no run 'nope'"),
    "resume a finished run": (["distill", "--resume", "existing"], "finished"),
}
ARGPARSE = {
    "bad precision": (TINY + ["--precision", "fp8"], "invalid choice"),
    "bad teacher-cache": (TINY + ["--teacher-cache", "sometimes"], "invalid choice"),
    "unknown flag": (TINY + ["--colour", "red"], "unrecognized"),
    "--set without =": (TINY + ["--set", "temperature"], "key=value"),
    "non-numeric epochs": (TINY + ["--epochs", "three"], "invalid int"),
}


def _snapshot(store):
    return [(r["id"], r["status"], len(store.metrics(r["id"]))) for r in store.runs()]


def _check(store, before, err):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("kdlab: error:"), err
    after = _snapshot(store)
    assert all(x in after for x in before)            # existing runs unchanged
    assert all(r[1] != "finished" for r in after if r not in before)   # nothing half-written marked finished


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, store, tmp_path, capsys):
    args, needle = CASES[name]
    d = _files(tmp_path)
    before = _snapshot(store)
    args = [a.replace("{d}", str(d)) for a in args]
    if args[0] == "distill" and "--resume" in args and args[-1] == "existing":
        args[-1] = before[0][0]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower(), err
    _check(store, before, err)


@pytest.mark.parametrize("name", list(ARGPARSE))
def test_bad_argument(name, store, tmp_path, capsys):
    args, needle = ARGPARSE[name]
    before = _snapshot(store)
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle.lower() in err.lower(), err
    _check(store, before, err)


def test_corrupted_store(tmp_path, capsys):
    (tmp_path / "kdlab.db").write_bytes(b"this is not sqlite at all" * 100)
    assert main(["runs", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a kdlab database" in err and "Traceback" not in err
    assert (tmp_path / "kdlab.db").read_bytes().startswith(b"this is not sqlite")   # left as it was


def test_different_tokenizers():
    from kdlab.errors import KdlabError
    from kdlab.models.core import same_tokenizer, tiny_model
    from kdlab.models.teachers import check_same_tokenizer
    _, a = tiny_model()
    from transformers import BertTokenizerFast
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as t:
        (pathlib.Path(t) / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "x"]))
        b = BertTokenizerFast(vocab=str(pathlib.Path(t) / "vocab.txt"))
        assert same_tokenizer(a, a) and not same_tokenizer(a, b)
        with pytest.raises(KdlabError, match="tokenize differently"):
            check_same_tokenizer([a, b], ["a", "b"])


def test_confine(tmp_path):
    from kdlab.errors import KdlabError
    from kdlab.safety import confine
    (tmp_path / "data").mkdir()
    assert confine(tmp_path / "data" / "x.tsv", [tmp_path / "data"]) == (tmp_path / "data" / "x.tsv").resolve()
    for bad in (tmp_path / "data" / ".." / "secret", "/etc/passwd"):
        with pytest.raises(KdlabError, match="outside the allowed folders"):
            confine(bad, [tmp_path / "data"])
