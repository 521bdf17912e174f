"""kdlab compress / eval --model on the tiny preset: vocabulary pruning (identical logits in vocabulary), ONNX
(matches PyTorch), int8 (accuracy within tolerance), their composition, the lineage, and the refusals."""
import json
import os

import pytest
import torch

from kdlab.cli import main
from kdlab.config import build_config
from kdlab.data.loaders import load_data
from kdlab.deploy import onnx as onnx_mod
from kdlab.deploy.artifacts import compress_run, load_artifact
from kdlab.deploy.report import eval_models, format_table
from kdlab.deploy.vocab import read_corpus, remap
from kdlab.errors import KdlabError
from kdlab.analysis.evaluate import latency_side_by_side, metrics, predict_plain
from kdlab.models.core import load_saved, save_model, tiny_model
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store

INT8_TOLERANCE = 0.02   # int8 accuracy within 2 points of fp32 on the embedded dev split
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def run_id(store):
    # a short budget: the tiny teacher on 800 training examples, 40 student steps
    cfg = build_config(preset="tiny", method="kd", max_train=800, max_steps=40, no_progress=True)
    return distill_run(cfg, store, **QUIET)


@pytest.fixture(scope="module")
def dev():
    return load_data(None).dev


def _source(store, run_id):
    return load_saved(store.artifact(run_id, "model_dir"))


def _logits(model, tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def snapshot(store, run_id):
    """Everything a refused command must leave as it was: the run's row, artifacts and files."""
    folder = store.folder(run_id)
    files = sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    return (store.run(run_id), store.artifact(run_id, "models"), store.artifact(run_id, "model_dir"), files)


def test_pruned_model_gives_identical_logits_on_in_vocabulary_text(store, run_id, dev):
    info = compress_run(store, run_id, prune_vocab=True, name="pruned", **QUIET)
    step = info["steps"][0]
    assert info["format"] == "hf" and step["step"] == "prune-vocab"
    assert step["vocab_after"] < step["vocab_before"] and step["max_logit_diff_in_vocab"] == 0.0
    src, src_tok = _source(store, run_id)
    pruned, tok, _ = load_artifact(info["folder"])
    assert pruned.config.vocab_size == step["vocab_after"] == len(tok)
    assert pruned.get_input_embeddings().weight.shape[0] == step["vocab_after"]
    keep = sorted(src_tok.convert_tokens_to_ids(t) for t in tok.get_vocab())
    texts = [t for t in dev.texts if set(src_tok(t)["input_ids"]) <= set(keep)][:48]
    assert len(texts) >= 24
    for t in texts:   # the same text -> the same ids after remapping
        assert tok(t)["input_ids"] == remap(src_tok(t)["input_ids"], keep)
    assert torch.equal(_logits(src, src_tok, texts), _logits(pruned, tok, texts))
    # text outside the kept vocabulary still runs ([UNK] or smaller pieces)
    assert _logits(pruned, tok, ["qqqq zzzz"]).shape == (1, 2)


def test_an_extra_corpus_keeps_its_tokens(store, run_id, tmp_path):
    ood = load_data(None).ood["ood_electronics"].texts
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(ood[:200]) + "\n\n")
    assert len(read_corpus(corpus)) == 200
    info = compress_run(store, run_id, prune_vocab=str(corpus), name="pruned-ood", **QUIET)
    base = json.loads((store.folder(run_id) / "models" / "pruned" / "kdlab.json").read_text())
    assert info["steps"][0]["vocab_after"] > base["steps"][0]["vocab_after"]
    assert info["steps"][0]["corpus"] == str(corpus)
    _, src_tok = _source(store, run_id)
    _, tok, _ = load_artifact(info["folder"])
    unk = tok.unk_token_id
    assert unk not in tok(ood[0])["input_ids"] and len(tok(ood[0])["input_ids"]) == len(src_tok(ood[0])["input_ids"])


def test_onnx_outputs_match_pytorch(store, run_id, dev):
    info = compress_run(store, run_id, onnx=True, name="onnx", **QUIET)
    assert info["format"] == "onnx" and info["steps"][-1]["max_abs_diff_vs_pytorch"] <= onnx_mod.ATOL
    src, src_tok = _source(store, run_id)
    graph, tok, _ = load_artifact(info["folder"])
    for texts in (dev.texts[:1], dev.texts[:7], dev.texts[100:140]):   # other batch sizes and lengths than traced
        a, b = _logits(src, src_tok, texts), _logits(graph, tok, texts)
        assert a.shape == b.shape and torch.allclose(a, b, atol=onnx_mod.ATOL, rtol=0)


def test_int8_accuracy_is_within_tolerance_of_fp32(store, run_id, dev):
    info = compress_run(store, run_id, quantize="int8", name="int8", **QUIET)
    assert info["format"] == "int8" and os.path.exists(os.path.join(info["folder"], "model.int8.safetensors"))
    src, src_tok = _source(store, run_id)
    q, tok, _ = load_artifact(info["folder"])
    assert "DynamicQuantizedLinear" in repr(q)
    fp = predict_plain(src, dev, src_tok, max_len=48)
    i8 = predict_plain(q, dev, tok, max_len=48)
    acc_fp = metrics(fp, dev.labels, 2)["accuracy"]
    acc_i8 = metrics(i8, dev.labels, 2)["accuracy"]
    assert abs(acc_fp - acc_i8) <= INT8_TOLERANCE, (acc_fp, acc_i8)
    assert (fp.argmax(1) == i8.argmax(1)).mean() >= 0.95
    # int8 weights on disk: the linear layers take a quarter of their fp32 bytes
    w = os.path.getsize(os.path.join(info["folder"], "model.int8.safetensors"))
    assert w < os.path.getsize(os.path.join(store.artifact(run_id, "model_dir"), "model.safetensors"))


def test_steps_compose_and_every_artifact_goes_through_eval(store, run_id):
    info = compress_run(store, run_id, prune_vocab=True, quantize="int8", onnx=True, **QUIET)
    assert info["name"] == "pruned-int8-onnx" and [s["step"] for s in info["steps"]] == ["prune-vocab", "int8", "onnx"]
    info2 = compress_run(store, run_id, prune_vocab=True, quantize="int8", **QUIET)
    assert info2["format"] == "int8"
    assert info["source_run"] == store.run(run_id)["id"]
    res = eval_models(store, run_id, ["pruned-int8-onnx", "pruned-int8"], rounds=2, **QUIET)
    rows = res["models"]
    assert list(rows) == ["teacher", "student", "pruned-int8-onnx", "pruned-int8"]
    assert res["splits"] == ["dev", "ood_restaurant", "ood_electronics"]
    for r in rows.values():
        assert r["mb"] > 0 and r["params"] > 0 and r["ms_b1"] > 0 and r["ms_b32"] > 0 and 0 <= r["dev"] <= 1
    assert rows["pruned-int8-onnx"]["mb"] < rows["student"]["mb"]
    assert abs(rows["pruned-int8"]["dev"] - rows["student"]["dev"]) <= INT8_TOLERANCE
    assert rows["teacher"]["agreement"] == 1.0
    assert store.artifact(run_id, "deploy_eval")["run"]["models"].keys() == rows.keys()
    assert "pruned-int8-onnx" in format_table(res)


def test_latency_side_by_side_measures_each_model_at_both_batch_sizes():
    m, tok = tiny_model()
    res = latency_side_by_side({"a": (m, tok), "b": (m, tok)}, ["a good film", "bad"], rounds=2)
    assert set(res) == {"a", "b"} and all(v["ms_b1"] > 0 and v["ms_b32"] > 0 for v in res.values())


# ------------------------------------------------------------------------------------------------- bad input
def _bilstm_run(store):
    from kdlab.models.bilstm import bilstm_student
    _, tok = tiny_model()
    rid = store.create_run("student", "bilstm", {"preset": "tiny"}, name="bilstm")
    m = bilstm_student(len(tok), 2, pad_token_id=tok.pad_token_id, embed_dim=16, hidden=8, fc_dim=12)
    save_model(m, tok, store.folder(rid) / "student")
    store.set_artifact(rid, "model_dir", str(store.folder(rid) / "student"))
    store.finish(rid, "finished")
    return rid


@pytest.mark.parametrize("case", ["no-model", "empty-corpus", "missing-corpus", "bilstm-onnx", "unknown-scheme",
                                  "nothing-to-do", "name-taken"])
def test_bad_input_is_refused_with_one_line_and_leaves_the_run_untouched(store, run_id, tmp_path, case):
    rid, kw = run_id, {}
    if case == "no-model":
        rid = store.create_run("student", "kd", {"preset": "tiny"})
        store.finish(rid, "failed", "killed")
        kw, needle = dict(quantize="int8"), "has no saved model"
    elif case == "empty-corpus":
        corpus = tmp_path / "empty.txt"
        corpus.write_text("\n  \n")
        kw, needle = dict(prune_vocab=str(corpus), name="bad"), "holds no text"
    elif case == "missing-corpus":
        kw, needle = dict(prune_vocab=str(tmp_path / "nope.txt"), name="bad"), "corpus file not found"
    elif case == "bilstm-onnx":
        rid = _bilstm_run(store)
        kw, needle = dict(onnx=True), "ONNX export of the BiLSTM/CNN student is not supported"
    elif case == "unknown-scheme":
        kw, needle = dict(quantize="int4"), "unknown quantization scheme 'int4'"
    elif case == "nothing-to-do":
        kw, needle = {}, "nothing to do"
    else:
        compress_run(store, run_id, quantize="int8", name="taken", **QUIET)
        kw, needle = dict(quantize="int8", name="taken"), "already has a model named 'taken'"
    before = snapshot(store, rid)
    with pytest.raises(KdlabError, match=needle) as e:
        compress_run(store, rid, **kw, **QUIET)
    assert "\n" not in str(e.value)
    after = snapshot(store, rid)
    assert before[1:] == after[1:] and before[0]["status"] == after[0]["status"]


def test_eval_of_an_unknown_model_name_is_refused(store, run_id):
    with pytest.raises(KdlabError, match="has no model named 'nope'"):
        eval_models(store, run_id, ["nope"], **QUIET)


def test_cli_compress_and_eval_model(store, run_id, capsys):
    runs = str(store.root)
    assert main(["compress", "--run", run_id, "--runs", runs, "--prune-vocab", "--quantize", "int8", "--name",
                 "cli-pi8", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "cli-pi8" and info["format"] == "int8"
    assert main(["eval", "--run", run_id, "--runs", runs, "--model", "cli-pi8", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["models"]) == ["teacher", "student", "cli-pi8"]
    assert {"mb", "params", "ms_b1", "ms_b32", "dev", "ood_restaurant"} <= set(res["models"]["cli-pi8"])
    assert main(["runs", "--runs", runs]) == 0   # the run's compressed models under it, with MB and latency
    out = capsys.readouterr().out
    assert "+ cli-pi8" in out and "MB" in out and "ms/ex" in out


@pytest.mark.parametrize("args,needle", [
    (["--quantize", "int4"], "unknown quantization scheme 'int4'"),
    (["--onnx", "--prune-vocab", "/nonexistent/corpus.txt", "--name", "bad"], "corpus file not found"),
    ([], "nothing to do"),
])
def test_cli_bad_compress_gives_one_line_and_exit_2(store, run_id, capsys, args, needle):
    before = snapshot(store, run_id)
    assert main(["compress", "--run", run_id, "--runs", str(store.root), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdlab: error:") and needle in err and err.count("\n") == 1
    assert snapshot(store, run_id)[1:] == before[1:]


def test_pairs_reach_the_onnx_graph_eval_and_latency_with_their_segment_ids(tmp_path):
    from kdlab.data.batching import encode_texts, model_inputs
    from kdlab.data.loaders import Split
    model, tok = tiny_model(num_labels=3, seed=2)
    model.eval()
    a = ["a man is playing a guitar", "the cat sleeps", "two dogs run in a field", "nobody is here"]
    b = ["someone plays music", "a cat is awake", "animals are outside", "a crowd gathers"]
    enc = model_inputs(encode_texts(tok, a, b, max_len=32))
    assert "token_type_ids" in enc and int(enc["token_type_ids"].sum()) > 0
    with torch.no_grad():
        ref = model(**enc).logits
        no_seg = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert not torch.allclose(ref, no_seg, atol=1e-4)   # the segment ids change the output: dropping them would show
    diff = onnx_mod.export(model, tok, tmp_path, a, max_len=32, texts_b=b)
    graph = onnx_mod.OnnxModel(tmp_path)
    assert "token_type_ids" in graph.inputs and diff <= onnx_mod.ATOL
    assert torch.allclose(graph(**enc).logits, ref, atol=onnx_mod.ATOL)
    split = Split("dev", a, [0, 1, 2, 0], "in-domain", b)
    assert torch.allclose(torch.from_numpy(predict_plain(graph, split, tok, max_len=32)), ref, atol=onnx_mod.ATOL)
    assert torch.allclose(torch.from_numpy(predict_plain(model, split, tok, max_len=32)), ref, atol=1e-5)
    lat = latency_side_by_side({"torch": (model, tok), "onnx": (graph, tok)}, a, texts_b=b, max_len=32, rounds=1,
                               n_single=2)
    assert set(lat) == {"torch", "onnx"} and all(v["ms_b1"] > 0 and v["ms_b32"] > 0 for v in lat.values())


def test_a_teacher_run_keeps_its_out_of_domain_sets_for_eval(tmp_path, monkeypatch, capsys):
    """`kdlab teacher --data D --ood F` then `eval --run TEACHER --model all`: the table scores F too."""
    import json as _json
    from pathlib import Path
    from kdlab.cli import main
    emb = Path(__file__).resolve().parents[1] / "data" / "embedded"
    monkeypatch.setenv("KDLAB_TEACHERS", str(tmp_path / "teachers"))
    runs = ["--runs", str(tmp_path / "runs")]
    assert main(["teacher", "--preset", "tiny", "--data", str(emb), "--ood", str(emb / "ood_restaurant.tsv"),
                 "--max-train", "64", "--max-eval", "16", "--quiet", *runs]) == 0
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    rid = [r["id"] for r in store.runs() if r["kind"] == "teacher"][0]
    capsys.readouterr()
    assert main(["eval", "--run", rid, "--model", "all", "--json", "--quiet", *runs]) == 0
    res = _json.loads(capsys.readouterr().out)
    assert res["splits"] == ["dev", "ood_restaurant"]
    assert 0 <= res["models"]["teacher"]["ood_restaurant"] <= 1
