"""Tasks as data (issue 13): sentence pairs, score and multi-label tasks, GLUE folders, OOD label mappings.

Hand-computed values for the regression objective and every metric (checked against a second implementation),
the pair tokenization round trip, SciTail scored through a label mapping on a 3-way model, every registered
method on a tiny pair task and a tiny score task (runs 3 steps or refuses with one line), the bad inputs of the
issue, and the contract through ``kdlab.cli.main``. Tiny models and tiny TSVs built in tmp_path; one test reads
the real GLUE files and skips without them.
"""
import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab import cli
from kdlab.data.batching import collate, encode_split
from kdlab.data.loaders import Split, load_data, load_eval_file
from kdlab.errors import KdlabError
from kdlab.analysis.evaluate import metrics
from kdlab.models.features import Features
from kdlab.methods import Context, State, get, names
from kdlab.models.core import ModelInfo, tiny_model
from kdlab.tasks import get_task, resolve, task_of_path

SHARED = Path("/work/shared/data")
WORDS = ("good bad film plot actor scene music slow fast long short funny sad story end great awful nice "
         "boring fine").split()


def _sent(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_tsv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def pair_folder(root: Path, n_train=48, n_dev=12, labels=("entailment", "not_entailment"), name="RTE",
                label_col="label", seed=0):
    """A GLUE-style pair folder (index, sentence1, sentence2, label)."""
    rng = random.Random(seed)
    folder = root / name
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [(i, _sent(rng, rng.randint(3, 12)), _sent(rng, rng.randint(2, 6)), labels[i % len(labels)])
                for i in range(n)]
        write_tsv(folder / f"{split}.tsv", ("index", "sentence1", "sentence2", label_col), rows)
    return folder


def stsb_folder(root: Path, n_train=48, n_dev=12, seed=0):
    rng = random.Random(seed)
    folder = root / "STS-B"
    head = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
            "score")
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [(i, "news", "f", "2012", i, "s", "s", _sent(rng, rng.randint(3, 10)), _sent(rng, rng.randint(3, 10)),
                 f"{rng.uniform(0, 5):.3f}") for i in range(n)]
        write_tsv(folder / f"{split}.tsv", head, rows)
    return folder


def ctx(kind="classes", C=2):
    return Context(teacher=ModelInfo(2, 4, 1, 10), student=ModelInfo(1, 4, 1, 10), num_labels=C, label_kind=kind)


def feats(logits):
    z = torch.tensor(logits, dtype=torch.float32)
    return Features(logits=z, mask=torch.ones(z.shape[0], 2, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ tasks as data
def test_builtin_tasks_and_resolution(tmp_path):
    assert get_task("STS-B").kind == "score" and get_task("stsb").primary == "pearson"
    assert get_task("cola").primary == "mcc" and get_task("cola").columns[1] == "label"
    assert get_task("mrpc").primary == "f1" and get_task("mrpc").pair
    assert len(get_task("mnli").label_names) == 3 and len(get_task("rte").label_names) == 2
    assert task_of_path(tmp_path / "glue" / "RTE" / "dev.tsv").name == "rte"
    assert task_of_path(tmp_path / "sst2" / "train.tsv") is None   # sentiment stays the default
    t = resolve(None, text_col="q,a", label_col="y", label_kind="score")
    assert (t.name, t.text_cols, t.label_col, t.kind, t.primary) == ("custom", ("q", "a"), "y", "score", "pearson")
    with pytest.raises(KdlabError, match="pairs two texts"):
        resolve(None, task="rte", text_col="sentence1")
    with pytest.raises(KdlabError, match="unknown task"):
        resolve(None, task="nope")


# ------------------------------------------------------------------------------------------------ objectives
def test_score_objective_hand_computed():
    """Score task: alpha_soft * MSE(student, teacher prediction) + alpha_hard * MSE(student, gold); no T."""
    s, t = feats([[1.0], [2.0]]), feats([[1.5], [1.0]])
    batch = {"labels": torch.tensor([1.0, 3.0])}
    expect = 0.5 * ((1 - 1.5) ** 2 + (2 - 1) ** 2) / 2 + 0.5 * ((1 - 1) ** 2 + (2 - 3) ** 2) / 2   # 0.5625
    for T in (1.0, 4.0):   # no temperature
        total, parts = get("kd")(ctx("score", 1), temperature=T).loss(s, t, batch, State())
        assert total.item() == pytest.approx(expect) == pytest.approx(0.5625)
        assert "temperature" not in parts and parts["kd"].item() == pytest.approx(0.625)
        assert parts["mse"].item() == pytest.approx(0.5)
    # second implementation: torch's own MSE
    mse = torch.nn.functional.mse_loss
    alt = 0.3 * mse(s.logits[:, 0], t.logits[:, 0]) + 0.7 * mse(s.logits[:, 0], batch["labels"])
    total, _ = get("kd")(ctx("score", 1), alpha_soft=0.3, alpha_hard=0.7).loss(s, t, batch, State())
    assert total.item() == pytest.approx(alt.item())
    ce, _ = get("ce")(ctx("score", 1)).loss(s, None, batch, State())   # teacher fine-tuning: MSE to gold
    assert ce.item() == pytest.approx(0.5)
    # a layer method keeps its layer term and uses the same logit terms
    hk = get("hidden")(ctx("score", 1))
    total, parts = hk.logit_terms(s, t, batch, State())
    assert total.item() == pytest.approx(0.5625)


def test_multi_label_objective_hand_computed():
    s, t = feats([[0.0, 2.0]]), feats([[2.0, 0.0]])
    batch = {"labels": torch.tensor([[1.0, 0.0]])}
    sig = lambda x: 1 / (1 + math.exp(-x))
    T = 2.0
    p = [sig(2.0 / T), sig(0.0)]
    q = [sig(0.0), sig(2.0 / T)]
    bce = lambda y, x: -(y * math.log(x) + (1 - y) * math.log(1 - x))
    kd = T * T * (bce(p[0], q[0]) + bce(p[1], q[1])) / 2
    hard = (bce(1.0, sig(0.0)) + bce(0.0, sig(2.0))) / 2
    total, parts = get("kd")(ctx("multi", 2), temperature=T).loss(s, t, batch, State())
    assert parts["kd"].item() == pytest.approx(kd, rel=1e-5) and parts["bce"].item() == pytest.approx(hard, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * kd + 0.5 * hard, rel=1e-5)


def test_class_only_methods_refuse_a_score_task():
    for name in ("crd", "tf-kd-reg", "label-smoothing", "dml", "srrd"):
        with pytest.raises(KdlabError, match=f"method '{name}' is defined only for classes"):
            get(name).check_label_kind("score", "sts-b")
    get("kd").check_label_kind("score")


# ------------------------------------------------------------------------------------------------ metrics
def _mcc_by_hand(pred, y):
    tp = sum(1 for a, b in zip(pred, y) if a == 1 and b == 1)
    tn = sum(1 for a, b in zip(pred, y) if a == 0 and b == 0)
    fp = sum(1 for a, b in zip(pred, y) if a == 1 and b == 0)
    fn = sum(1 for a, b in zip(pred, y) if a == 0 and b == 1)
    return (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


def _ranks(x):
    order = np.argsort(x)
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def test_class_metrics_hand_computed():
    y = [1, 1, 1, 0, 0, 1, 0, 1]
    pred = [1, 0, 1, 0, 1, 1, 0, 1]   # tp 4, fn 1, fp 1, tn 2
    logits = np.array([[0.0, 1.0] if p else [1.0, 0.0] for p in pred])
    m = metrics(logits, y, 2, get_task("mrpc"))
    assert list(m)[0] == "f1"
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))                   # 0.8
    assert m["accuracy"] == pytest.approx(6 / 8)
    f1_neg = 2 * 2 / (2 * 2 + 1 + 1)
    assert m["macro_f1"] == pytest.approx((0.8 + f1_neg) / 2)
    assert 0 <= m["ece"] <= 1 and m["n"] == 8
    c = metrics(logits, y, 2, get_task("cola"))
    assert list(c)[0] == "mcc"
    assert c["mcc"] == pytest.approx(_mcc_by_hand(pred, y)) == pytest.approx((4 * 2 - 1 * 1) / math.sqrt(5 * 5 * 3 * 3))
    assert list(metrics(logits, y, 2)) == ["accuracy", "macro_f1", "ece", "n"]   # sentiment: unchanged


def test_score_metrics_hand_computed():
    pred = np.array([0.5, 1.0, 3.0, 2.0, 4.5])
    gold = np.array([0.0, 1.5, 2.5, 3.0, 5.0])
    m = metrics(pred[:, None], gold, 1, get_task("sts-b"))
    assert list(m)[:2] == ["pearson", "spearman"] and "ece" not in m and "accuracy" not in m
    px, gx = pred - pred.mean(), gold - gold.mean()
    assert m["pearson"] == pytest.approx((px * gx).sum() / math.sqrt((px ** 2).sum() * (gx ** 2).sum()))
    rp, rg = _ranks(pred), _ranks(gold)   # no ties: Spearman = Pearson of the ranks
    assert m["spearman"] == pytest.approx(np.corrcoef(rp, rg)[0, 1]) == pytest.approx(0.9)
    assert m["mse"] == pytest.approx(np.mean((pred - gold) ** 2))


def test_multi_label_metrics_hand_computed():
    y = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    logits = np.array([[1, -1, 1], [1, 1, -1], [1, -1, -1]], dtype=float)   # predicted [[1,0,1],[1,1,0],[1,0,0]]
    m = metrics(logits, y, 3, resolve(None, text_col="t", label_kind="multi"))
    # micro: tp 4, fp 1, fn 1 -> 0.8; per label F1: [2*2/(4+1), 2*1/(2+1), 2*1/(2)] = [0.8, 0.667, 1.0]
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)
    assert m["subset_accuracy"] == pytest.approx(1 / 3) and "ece" not in m


# ------------------------------------------------------------------------------------------------ pairs
def test_pair_tokenization_round_trip_keeps_both_texts():
    _, tok = tiny_model(2)
    a = " ".join(["alpha"] * 60)
    b = " ".join(["omega"] * 60)
    short = "beta gamma"
    split = Split("x", [a, a], [0, 1], "d", texts_b=[b, short])
    ds = encode_split(split, tok, max_len=32)
    word_a = set(tok.encode(a, add_special_tokens=False))
    word_b = set(tok.encode(b, add_special_tokens=False))
    special = {tok.cls_token_id, tok.sep_token_id}
    for r in range(2):
        ids, tt = ds.input_ids[r], ds.token_type_ids[r]
        assert ids.count(tok.sep_token_id) == 2 and ids[0] == tok.cls_token_id and len(tt) == len(ids)
        first = [i for i, s in zip(ids, tt) if s == 0 and i not in special]
        sec = [i for i, s in zip(ids, tt) if s == 1 and i not in special]
        assert first and set(first) <= word_a
        if r == 0:   # longest first: both texts truncated, each keeps half of the room
            assert len(ids) == 32 and sec and set(sec) <= word_b and abs(len(first) - len(sec)) <= 1
        else:        # a short second text survives whole, the first fills the rest
            assert len(ids) == 32 and tok.decode(sec) == short
    batch = collate([ds[0], ds[1]], pad_id=tok.pad_token_id)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    model, _ = tiny_model(2)
    model.eval()
    from kdlab.models.features import Need, features
    with torch.no_grad():
        plain = features(model, batch, Need(hidden=True))
        bucketed = features(model, batch, Need(hidden=True), bucketed=True)
        direct = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
    assert torch.allclose(plain.logits, direct, atol=1e-5) and torch.allclose(bucketed.logits, direct, atol=1e-5)


def test_glue_folders_are_recognised(tmp_path):
    rte = load_data(pair_folder(tmp_path))
    assert rte.task.name == "rte" and rte.train.texts_b and rte.label_names == ["entailment", "not_entailment"]
    sts = load_data(stsb_folder(tmp_path))
    assert sts.task.kind == "score" and sts.num_labels() == 1 and isinstance(sts.train.labels[0], float)
    cola = tmp_path / "CoLA"   # no header: source, label, orig, sentence
    rng = random.Random(1)
    for split in ("train", "dev"):
        write_tsv(cola / f"{split}.tsv", None, [("gj04", i % 2, "*" if i % 2 == 0 else "", _sent(rng, 5))
                                              for i in range(10)])
    b = load_data(cola)
    assert b.task.name == "cola" and len(b.train) == 10 and b.label_names == ["unacceptable", "acceptable"]
    assert b.train.texts_b is None and b.train.labels[:2] == [0, 1]
    # --task with any file; --text-col a,b with --label-kind score
    f = write_tsv(tmp_path / "any" / "pairs.tsv", ("q", "a", "y"), [(_sent(rng, 4), _sent(rng, 3), i * 0.5)
                                                                   for i in range(10)])
    c = load_data(f, text_col="q,a", label_col="y", label_kind="score")
    assert c.task.kind == "score" and c.train.texts_b is not None and len(c.train) + len(c.dev) == 10


def test_scitail_mapping_on_a_3way_model(tmp_path):
    folder = pair_folder(tmp_path, labels=("entailment", "neutral", "contradiction"), name="MNLI",
                         label_col="gold_label")
    ood = write_tsv(tmp_path / "scitail_test.tsv", ("premise", "hypothesis", "label"),
                    [("a b", "c", "entails"), ("d e", "f", "neutral"), ("g h", "i", "neutral"), ("j", "k", "entails")])
    b = load_data(folder, ood=[ood])
    sp = b.ood["scitail_test"]
    assert b.task.name == "mnli" and sp.label_names == ["entails", "neutral"] and sp.label_map == [0, 1, 1]
    assert sp.texts_b == ["c", "f", "i", "k"] and sp.labels == [0, 1, 1, 0]
    # predictions entailment, contradiction, neutral, neutral -> entails, neutral, neutral, neutral: 3 of 4
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.3, 0.6, 0.1]]))
    m = metrics(logits, sp.labels, 3, b.task, sp.label_map)
    assert m["accuracy"] == pytest.approx(0.75)
    # ECE over the summed probabilities p(entails) = p(e), p(neutral) = p(n) + p(c)
    conf = np.array([0.8, 0.9, 0.8, 0.7])
    correct = np.array([1, 1, 1, 0])
    assert m["ece"] == pytest.approx(abs(np.mean(correct[[2, 0]]) - 0.8) * 2 / 4 + abs(1 - 0.9) / 4 + 0.7 / 4)
    # an explicit mapping, and a file nothing maps
    b2 = load_data(folder, ood=[ood], ood_map="entailment=entails,neutral=neutral,contradiction=neutral")
    assert b2.ood["scitail_test"].label_map == [0, 1, 1]
    bad = write_tsv(tmp_path / "odd.tsv", ("premise", "hypothesis", "label"), [("a", "b", "maybe")])
    with pytest.raises(KdlabError, match=r"odd.tsv: row 1 .*--ood-map"):
        load_data(folder, ood=[bad])
    split = load_eval_file(ood, list(b.task.label_names), task=b.task)   # eval of a stored run: same mapping
    assert split.label_map == [0, 1, 1]


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_name_file_row_and_fix(tmp_path):
    folder = pair_folder(tmp_path)
    one = write_tsv(tmp_path / "RTE2" / "train.tsv", ("index", "sentence1", "label"), [(0, "a", "entailment")] * 4)
    with pytest.raises(KdlabError, match=r"train.tsv: the task pairs two texts.*--text-col a,b"):
        load_data(one, task="rte")
    lines = (folder / "train.tsv").read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(KdlabError, match=r"train.tsv: row 3 .*'maybe'.*Fix the label"):
        load_data(folder)
    sts = stsb_folder(tmp_path)
    lines = (sts / "dev.tsv").read_text().splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0] + "\thigh"
    (sts / "dev.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(KdlabError, match=r"dev.tsv: row 2 .*'high', which is not a number.*--label-kind"):
        load_data(sts)
    multi = write_tsv(tmp_path / "m" / "train.tsv", ("text", "tags"), [("a b", "x,y"), ("c d", "y"), ("e", "z,x")])
    dev = write_tsv(tmp_path / "m" / "dev.tsv", ("text", "tags"), [("a", "x"), ("b", "w")])
    with pytest.raises(KdlabError, match=r"dev.tsv: row 2 .*'w', which is not one of the task's labels"):
        load_data(multi, text_col="text", label_col="tags", label_kind="multi")
    ok = load_data(write_tsv(tmp_path / "m2" / "train.tsv", ("text", "tags"), [("a b", "x,y"), ("c d", "y")] * 4),
                   text_col="text", label_col="tags", label_kind="multi")
    assert ok.label_names == ["x", "y"] and sorted(map(tuple, ok.train.labels + ok.dev.labels))[0] == (0.0, 1.0)


def test_bad_inputs_through_the_cli_exit_2_without_a_finished_run(tmp_path, capsys):
    from kdlab.runs.store import Store
    folder = pair_folder(tmp_path)
    runs = tmp_path / "runs"
    base = ["distill", "--teacher", "tiny", "--max-steps", "1", "--runs", str(runs), "--no-progress", "--quiet"]
    cases = [
        ["--data", str(folder), "--text-col", "sentence1"],                            # a pair task, one column
        ["--data", str(folder), "--ood", str(write_tsv(tmp_path / "o.tsv", ("premise", "hypothesis", "label"),
                                                        [("a", "b", "perhaps")]))],   # OOD labels unmapped
        ["--data", str(stsb_folder(tmp_path)), "--method", "crd"],                     # class-only method, score
    ]
    for args in cases:
        assert cli.main(base + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("kdlab: error:"), err
    assert not [r for r in Store(runs).runs() if r["status"] == "finished"] if runs.exists() else True


# ------------------------------------------------------------------------------------------------ every method
def _env(tmp_path_factory, make):
    from kdlab.config import RunConfig, apply_preset
    from kdlab.engine.pipeline import load_bundle, prepare_teacher
    from kdlab.runs.store import Store
    root = tmp_path_factory.mktemp("data")
    store = Store(tmp_path_factory.mktemp("runs"))
    cfg = apply_preset(RunConfig(data=str(make(root)), preset="tiny"))
    cfg.train = dataclasses.replace(cfg.train, max_steps=3, progress=False, batch_size=8, max_len=24,
                                    checkpoint_each_epoch=False, eval_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False, epochs=1, batch_size=8, max_len=24)
    bundle = load_bundle(cfg)
    teacher, tok, trun = prepare_teacher(cfg, store, bundle, attentions=True, log=lambda *a: None)
    return dict(store=store, cfg=cfg, bundle=bundle, teacher=teacher, tok=tok, trun=trun)


@pytest.fixture(scope="module")
def pair_env(tmp_path_factory):
    return _env(tmp_path_factory, lambda r: pair_folder(r, n_train=24, n_dev=8))


@pytest.fixture(scope="module")
def score_env(tmp_path_factory):
    return _env(tmp_path_factory, lambda r: stsb_folder(r, n_train=24, n_dev=8))


ARGS = {"internal-pid": {"stage_steps": 1}, "internal-sid": {"stage_steps": 1}, "bilstm": {"n_samples": 1,
        "embed_dim": 16, "hidden": 16, "fc_dim": 16}}


def _run_method(env, method):
    from kdlab.engine.pipeline import distill_run
    cfg = dataclasses.replace(env["cfg"], method=method, method_args=ARGS.get(method, {}))
    cls = get(method)
    if env["bundle"].task.kind not in cls.label_kinds:
        with pytest.raises(KdlabError, match=f"method '{method}' is defined only for classes"):
            distill_run(cfg, env["store"], teacher=env["teacher"], tokenizer=env["tok"], bundle=env["bundle"],
                        teacher_run=env["trun"], log=lambda *a: None)
        return None
    rid = distill_run(cfg, env["store"], teacher=env["teacher"], tokenizer=env["tok"], bundle=env["bundle"],
                      teacher_run=env["trun"], log=lambda *a: None)
    run = env["store"].run(rid)
    assert run["status"] == "finished", run["message"]
    return env["store"].final_evals(rid)["dev"]


@pytest.mark.parametrize("method", names())
def test_every_method_on_a_tiny_pair_task(pair_env, method):
    ev = _run_method(pair_env, method)
    assert ev is not None and list(ev)[0] == "accuracy" and 0 <= ev["accuracy"] <= 1


@pytest.mark.parametrize("method", names())
def test_every_method_on_a_tiny_score_task_or_refuses(score_env, method):
    ev = _run_method(score_env, method)
    if ev is not None:
        assert "pearson" in ev and "accuracy" not in ev


# ------------------------------------------------------------------------------------------------ the contract
def test_contract_through_the_cli(tmp_path, capsys):
    """distill on an STS-B folder, then eval of the stored run prints pearson and spearman (the task stored with
    the run); an RTE folder with a SciTail OOD file is scored through the built-in mapping."""
    runs = str(tmp_path / "runs")
    sts = stsb_folder(tmp_path, n_train=16, n_dev=8)
    base = ["--teacher", "tiny", "--max-train", "16", "--max-steps", "3", "--runs", runs, "--no-progress", "--quiet",
            "--max-len", "24", "--teacher-epochs", "1"]
    assert cli.main(["distill", "--method", "kd", "--data", str(sts), *base]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--runs", runs, "--run", "kd", "--data", str(sts / "dev.tsv")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["task"] == "sts-b" and {"pearson", "spearman"} <= set(res)
    metric_keys = [k for k in res if k not in ("run", "data", "task", "primary")]
    assert metric_keys[0] == "pearson"
    rte = pair_folder(tmp_path, n_train=16, n_dev=8)
    sci = write_tsv(tmp_path / "scitail_test.tsv", ("premise", "hypothesis", "label"),
                    [("a b", "c", "entails"), ("d e", "f", "neutral")] * 3)
    runs2 = str(tmp_path / "runs2")
    base2 = [b if b != runs else runs2 for b in base]
    assert cli.main(["distill", "--method", "kd", "--data", str(rte), "--ood", str(sci), *base2]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"dev", "scitail_test"} <= set(out["evals"]) and "accuracy" in out["evals"]["scitail_test"]
    assert cli.main(["eval", "--runs", runs2, "--run", "kd", "--data", str(sci)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["label_map"] == {"entailment": "entails", "not_entailment": "neutral"} and res["n"] == 6


@pytest.mark.skipif(not (SHARED / "glue").is_dir(), reason="the shared GLUE data is not here")
def test_real_glue_files_load():
    for name, task, primary in (("RTE", "rte", "accuracy"), ("CoLA", "cola", "mcc"), ("MRPC", "mrpc", "f1"),
                                ("STS-B", "sts-b", "pearson")):
        b = load_data(SHARED / "glue" / name, max_train=32, max_eval=16)
        assert b.task.name == task and b.task.primary == primary
    rte = load_data(SHARED / "glue" / "RTE", ood=[SHARED / "ood_pairs" / "scitail_test.tsv"], max_train=8)
    assert rte.ood["scitail_test"].label_map == [0, 1] and len(rte.ood["scitail_test"]) == 2126
    full = load_data(SHARED / "glue" / "MRPC")
    assert (len(full.train), len(full.dev)) == (3668, 408)
    assert (len(load_data(SHARED / "glue" / "CoLA").train)) == 8551


def test_embedded_nli_corpus_is_an_mnli_task_with_a_mapped_ood_set(tmp_path):
    from kdlab.data import synth_nli
    from kdlab.data.loaders import EMBEDDED_NLI_DIR
    b = load_data("embedded-nli")
    assert b.task.name == "mnli" and b.label_names == ["entailment", "neutral", "contradiction"]
    assert b.train.texts_b is not None and len(b.train) == synth_nli.SIZES["train"]
    ood = b.ood["ood_science"]
    assert ood.label_names == ["entails", "neutral"] and ood.label_map == [0, 1, 1]
    # the committed files are what the generator writes, byte for byte
    for split, p in synth_nli.write(tmp_path).items():
        assert p.read_bytes() == (EMBEDDED_NLI_DIR / p.name).read_bytes(), split
