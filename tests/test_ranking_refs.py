"""Ranking reference rows and the fused teacher: per-query normalisation and the weight choice against
hand-computed values, the dev split carved from training queries, the published rows, the corpus-embedding cache,
and a saved bi-encoder loading in sentence-transformers with kdlab's embeddings. Tiny models built in code."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.runs.store import Store
from kdlab.ranking import fused
from kdlab.ranking.data import carve_dev


def test_normalise_hand_computed():
    assert fused.normalise([[2.0, 1.0, 0.0]], "minmax").tolist() == [[1.0, 0.5, 0.0]]
    z = fused.normalise([[1.0, 2.0, 3.0]], "zscore")[0]
    assert z == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-6)
    assert fused.normalise([[4.0, 4.0]], "minmax").tolist() == [[0.0, 0.0]]   # a flat row stays finite


def test_weight_choice_needs_both_signals():
    # q1: BM25 finds d0, the dense score prefers d1; q2: the dense score finds d2, BM25 prefers d1.
    # min-max by hand: q1 ranks d0 first iff w > 2/7, q2 ranks d2 first iff w < 0.823
    bm25 = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 2.5]])
    dense = np.array([[0.4, 0.5, 0.0], [0.0, 0.2, 0.9]])
    qrels = {"q1": {"d0": 1}, "q2": {"d2": 1}}
    w, how, table = fused.choose(bm25, dense, ["q1", "q2"], ["d0", "d1", "d2"], qrels)
    by = {(h, x): v for h, x, v in table}
    assert by[("minmax", 0.0)] < 1 and by[("minmax", 1.0)] < 1   # either signal alone misses one query
    assert (how, w) == ("minmax", 0.3) and by[(how, w)] == pytest.approx(1.0)   # the first weight above 2/7


def test_carve_dev_from_training_queries():
    qids = [f"q{i}" for i in range(10)]
    train, dev = carve_dev(qids, 0.2, seed=3)
    assert len(dev) == 2 and not set(train) & set(dev) and sorted(train + dev) == sorted(qids)
    assert carve_dev(qids, 0.2, seed=3) == (train, dev)
    with pytest.raises(KdlabError, match="dev split"):
        carve_dev(qids[:2], 0.1)


def test_published_rows_with_source():
    from kdlab.ranking.reference import published_rows, reference_lines
    rows = published_rows("scifact")
    assert [r["ndcg@10"] for r in rows] == [0.665, 0.688, 0.643]
    assert published_rows("unknown") == []
    text = "\n".join(reference_lines([{"label": "BM25 (bm25s, measured)", "ndcg@10": 0.5}], "SciFact"))
    assert "0.665" in text and "arXiv:2104.08663" in text and "0.500" in text


def _tiny_bi(pooling="mean", score="cosine"):
    from kdlab.models.core import tiny_model
    from kdlab.ranking.models import BiEncoder, base_encoder
    model, tok = tiny_model(1, num_hidden_layers=2)
    return BiEncoder(base_encoder(model), tok, pooling=pooling, score=score, query_len=16, doc_len=32).eval()


TEXTS = ["a great and moving film", "boring", "the acting was bad and the plot made no sense at all"]


def test_corpus_embeddings_cached_by_model_and_corpus(tmp_path):
    from kdlab.ranking.embcache import corpus_embeddings
    bi = _tiny_bi()
    first = corpus_embeddings(bi, TEXTS, key="m1", identity="c1", cache=tmp_path)
    assert len(list(tmp_path.glob("emb-m1-c1.safetensors"))) == 1

    def encode(*a, **k):
        raise RuntimeError("encoded again")
    bi.encode = encode
    assert torch.equal(corpus_embeddings(bi, TEXTS, key="m1", identity="c1", cache=tmp_path), first)
    with pytest.raises(RuntimeError, match="encoded again"):   # another corpus: encoded
        corpus_embeddings(bi, TEXTS, key="m1", identity="c2", cache=tmp_path)


@pytest.mark.parametrize("pooling,score", [("mean", "cosine"), ("cls", "dot")])
def test_saved_bi_encoder_loads_in_sentence_transformers(tmp_path, pooling, score):
    st = pytest.importorskip("sentence_transformers")
    bi = _tiny_bi(pooling, score)
    folder = bi.save(tmp_path / "student")
    model = st.SentenceTransformer(str(folder), device="cpu")
    got = model.encode(TEXTS, convert_to_tensor=True, batch_size=2)
    want = bi.encode(TEXTS, kind="doc")
    assert got.shape == want.shape
    assert torch.allclose(got.float(), want, atol=1e-5)
    assert model.max_seq_length == 32


def test_stored_student_loads_in_sentence_transformers_and_compresses(tmp_path, capsys):
    """A saved bi-encoder loads in sentence-transformers with kdlab's embeddings; kdlab compress gives it int8 (torch),
    ONNX and ONNX + int8 artifacts whose embeddings agree with the fp32 model (recorded in each lineage), and
    `kdlab eval --model all` ranks the corpus with every one of them; a pruning flag is refused in one line."""
    from kdlab.cli import main
    from kdlab.ranking import compress
    from kdlab.ranking.data import write_beir
    from kdlab.ranking.models import BiEncoder
    from kdlab.runs.store import Store
    from test_ranking import DOCS, QRELS, QUERIES
    toy = write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)
    root = tmp_path / "runs"
    assert main(["distill", "--task", "ranking", "--method", "contrastive", "--set", "student_from=tiny",
                 "--data", str(toy), "--max-steps", "2", "--runs", str(root), "--quiet"]) == 0
    store = Store(root)
    run = store.runs()[0]
    folder = store.artifact(run["id"], "model_dir")
    st = pytest.importorskip("sentence_transformers")
    got = st.SentenceTransformer(folder, device="cpu").encode(TEXTS, convert_to_tensor=True)
    ref = BiEncoder.load(folder)
    assert torch.allclose(got.float(), ref.encode(TEXTS, kind="doc"), atol=1e-5)
    capsys.readouterr()
    for flags in (["--quantize", "int8"], ["--onnx"], ["--onnx", "--quantize", "int8"]):
        assert main(["compress", "--runs", str(root), "--run", run["id"], *flags, "--quiet"]) == 0
    models = store.artifact(run["id"], "models")
    assert set(models) == {"int8", "onnx", "int8-onnx"}
    for name, path in models.items():
        info = json.loads((Path(path) / "kdlab.json").read_text())
        assert info["bi"] == {"pooling": ref.pooling, "score": ref.score_fn, "query_len": ref.query_len,
                              "doc_len": ref.doc_len}
        emb = compress.load(path).encode(TEXTS, kind="doc")
        cos = torch.nn.functional.cosine_similarity(emb, ref.encode(TEXTS, kind="doc"), dim=-1)
        tol = 1e-4 if name == "onnx" else 0.05   # fp32 ONNX matches PyTorch; int8 is close, not equal
        assert float((emb - ref.encode(TEXTS, kind="doc")).abs().max()) <= tol and float(cos.min()) > 0.9
        recorded = [x for x in info["steps"] if "max_abs_diff_vs_fp32" in x or "max_abs_diff_vs_pytorch" in x]
        assert recorded and all(v <= 0.05 for x in recorded for k, v in x.items() if k.startswith("max_abs_diff"))
    capsys.readouterr()
    assert main(["eval", "--runs", str(root), "--run", run["id"], "--model", "all", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["models"]) == {"student", "int8", "onnx", "int8-onnx"}
    assert res["models"]["onnx"]["ndcg@10"] == pytest.approx(res["models"]["student"]["ndcg@10"], abs=1e-6)
    assert all(r["mb"] > 0 and r["latency_ms"] > 0 and 0 <= r["ndcg@10"] <= 1 for r in res["models"].values())
    assert main(["eval", "--runs", str(root), "--run", run["id"], "--model", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err
    assert main(["compress", "--runs", str(root), "--run", run["id"], "--prune-heads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlab: error:") and "\n" not in err and "bi-encoder" in err and "--prune" in err


def test_fused_teacher_kind_distills_and_is_reused(tmp_path, capsys):
    from kdlab.cli import main
    from kdlab.ranking.data import write_beir
    from kdlab.runs.store import Store
    from test_ranking import DOCS, QRELS, QUERIES
    toy = write_beir(tmp_path / "scifact", DOCS, QUERIES, QRELS)   # named like SciFact: its published rows
    root = tmp_path / "runs"
    common = ["--task", "ranking", "--data", str(toy), "--max-steps", "2", "--runs", str(root), "--quiet",
              "--set", "teacher_kind=fused", "--set", "fused_dense=tiny", "--set", "student_from=tiny"]
    assert main(["distill", "--method", "margin-mse", *common]) == 0
    assert main(["distill", "--method", "listwise-kl", *common, "--set", "inbatch=true", "--set", "alpha_hard=0.5"]) == 0
    store = Store(root)
    teachers = store.runs(kind="teacher")
    assert [t["method"] for t in teachers] == ["fused"]   # one fused teacher, reused by the second student
    t = teachers[0]
    assert t["status"] == "finished" and 0.0 <= t["config"]["weight"] <= 1.0 and t["config"]["dev_queries"] == 1
    assert store.final_evals(t["id"])["test"]["n"] == 3
    students = store.runs(kind="student")
    assert len(students) == 2 and all(s["parent"] == t["id"] and s["status"] == "finished" for s in students)
    inb = next(s for s in students if s["method"] == "listwise-kl")   # in-batch KD from the fused teacher's scores
    terms = store.metrics_frame(inb["id"])
    assert {"listwise_kl", "contrastive"} <= set(terms.columns) and (terms["listwise_kl"].dropna() > 0).all()
    capsys.readouterr()
    assert main(["distill", *common, "--method", "margin-mse", "--set", "teacher_kind=oracle"]) == 2
    assert "teacher_kind" in capsys.readouterr().err
    from kdlab.ranking import baselines, bm25
    from kdlab.ranking.data import load_beir
    table = baselines.run_table(store, students)
    assert [r["nDCG@10"] for r in table[:3]] == [0.665, 0.688, 0.643] and "2104.08663" in table[0]["source"]
    assert len(table) == 5 and table[3]["source"] == "run " + students[0]["id"]
    size = store.artifact(students[0]["id"], "size")
    assert table[3]["layers"] == int(size["layers"]) >= 1 and table[3]["MB"] == round(size["mb"], 1) > 0
    res = baselines.measure(load_beir(toy), bm25.cache_dir(root), log=lambda *_: None)   # BM25, MiniLM, fused
    assert [r["label"].split(" ")[0] for r in res["rows"]] == ["BM25", "all-MiniLM-L6-v2,", "fused"]
    assert len(baselines.run_table(store, students)) == 8


@pytest.mark.parametrize("flag", [["--length-buckets", "on"], ["--max-eval", "5"], ["--student", "minilm-l6"],
                                  ["--ood", "x.tsv"]])
def test_flags_that_do_not_apply_to_ranking_are_refused(tmp_path, capsys, flag):
    from kdlab.cli import main
    from kdlab.ranking.data import write_beir
    from test_ranking import DOCS, QRELS, QUERIES
    toy = write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)
    assert main(["distill", "--task", "ranking", "--method", "contrastive", "--set", "student_from=tiny",
                 "--data", str(toy), "--runs", str(tmp_path / "runs"), "--quiet", *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlab: error:") and "\n" not in err and flag[0] in err and "ranking" in err
    assert not (tmp_path / "runs" / "kdlab.db").exists() or not Store(tmp_path / "runs").runs()


def test_cosine_student_margins_scaled_by_tau():
    """Margin-MSE of a cosine student compares its cosine / tau with the teacher's margins: one query, a positive
    at cosine 1 and a negative at cosine 0 -> student margin 1 / 0.05 = 20; teacher margin 4 -> (20 - 4)^2."""
    from kdlab.engine.distill import build_method
    from kdlab.models.core import tiny_model
    from kdlab.records import Features
    from kdlab.ranking.models import BiEncoder, base_encoder
    model, tok = tiny_model(1, num_hidden_layers=1)
    bi = BiEncoder(base_encoder(model), tok)
    s = Features(logits=torch.tensor([[1.0, 0.0]]), mask=torch.ones(1, 2))
    t = Features(logits=torch.tensor([[5.0, 1.0]]), mask=torch.ones(1, 2))
    cos = build_method("margin-mse", bi, bi, 1, 1, 1, 0, 1, label_kind="ranking", score="cosine")
    assert cos.hp["tau"] == 0.05 and cos.loss(s, t, {}, None)[0].item() == pytest.approx((20.0 - 4.0) ** 2)
    dot = build_method("margin-mse", bi, bi, 1, 1, 1, 0, 1, label_kind="ranking")
    assert dot.loss(s, t, {}, None)[0].item() == pytest.approx((1.0 - 4.0) ** 2)   # a dot-product student: unscaled


def test_deploy_page_compresses_and_measures_a_bi_encoder(tmp_path, monkeypatch):
    """The Deploy page on a ranking run: int8 + ONNX made from the page, then every model ranks the corpus; the table
    is the one `kdlab eval --model all` stores."""
    from streamlit.testing.v1 import AppTest
    from kdlab.cli import main
    from kdlab.ranking.data import write_beir
    from test_ranking import DOCS, QRELS, QUERIES
    app = Path(__file__).resolve().parents[1] / "app"
    toy = write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)
    root = tmp_path / "runs"
    assert main(["distill", "--task", "ranking", "--method", "contrastive", "--set", "student_from=tiny",
                 "--data", str(toy), "--max-steps", "1", "--runs", str(root), "--quiet"]) == 0
    rid = Store(root).runs(kind="student")[0]["id"]
    monkeypatch.syspath_prepend(str(app))
    at = AppTest.from_file(str(app / "pages" / "8_Deploy.py"), default_timeout=180)
    at.session_state["kd_runs_root"] = str(root)
    at.run()
    at.selectbox(key="dep_run").set_value(rid).run()
    at.checkbox(key="dep_int8").check().run()
    at.checkbox(key="dep_onnx").check().run()
    at.button(key="dep_compress").click().run()
    assert not at.exception and not at.error
    assert list(Store(root).artifact(rid, "models")) == ["int8-onnx"]
    at.button(key="dep_measure").click().run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "nDCG@10" in d.value.columns)
    stored = Store(root).artifact(rid, "ranking_deploy_eval")
    assert list(table.index) == ["student", "int8-onnx"] == list(stored["models"])
    assert table.loc["student", "nDCG@10"] == pytest.approx(stored["models"]["student"]["ndcg@10"], abs=1e-4)


def test_cut_baseline_script_scores_the_untrained_cut_encoder(tmp_path, capsys):
    """scripts/ranking_cut_baseline.py: the pretrained encoder cut to N layers, untrained, over the test queries;
    its nDCG@10 is what eval_bi gives that model."""
    import importlib.util
    from kdlab.ranking.adaptor import eval_bi
    from kdlab.ranking.data import load_beir, write_beir
    from kdlab.ranking.models import BiEncoder, keep_layers, sentence_encoder
    from test_ranking import DOCS, QRELS, QUERIES
    toy = write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)
    spec = importlib.util.spec_from_file_location("cut", Path(__file__).parents[1] / "scripts" /
                                                  "ranking_cut_baseline.py")
    cut = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cut)
    assert cut.main([str(toy), "--model", "tiny", "--layers", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    enc, tok = sentence_encoder("tiny")
    want, _ = eval_bi(BiEncoder(keep_layers(enc, 1), tok, pooling="mean", score="cosine", query_len=32, doc_len=128),
                      load_beir(toy, splits=("test",)), split="test")
    assert row["layers"] == 1 and row["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-4)
    assert cut.main([str(toy), "--model", "tiny", "--layers", "9"]) == 2
    assert "at most" in capsys.readouterr().err
