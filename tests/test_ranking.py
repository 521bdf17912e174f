"""Ranking distillation (kdlab.ranking): the losses and metrics against hand-computed values, the bi-encoder's
corpus-once search against pair-by-pair scoring, bad inputs refused at the command line, and the contract
commands (distill --task ranking, eval --run METHOD) end to end on a toy BEIR folder with tiny models."""
import json
import math

import pytest
import torch

from kdlab.cli import main
from kdlab.ranking.data import load_beir, write_beir
from kdlab.kd.ranking import in_batch_contrastive, listwise_kl, margin_mse, margin_mse_groups
from kdlab.ranking.metrics import ranking_metrics
from kdlab.runs.store import Store

DOCS = {
    "d1": ("great film", "a great and moving film with a wonderful cast"),
    "d2": ("boring movie", "a boring movie , dull and slow from start to end"),
    "d3": ("funny comedy", "a funny comedy that made the whole audience laugh"),
    "d4": ("sad story", "a sad story about loss , told with care"),
    "d5": ("bad acting", "the acting was bad and the plot made no sense"),
    "d6": ("beautiful music", "beautiful music and a lovely score throughout"),
    "d7": ("long film", "the film was too long but the ending was good"),
    "d8": ("scary horror", "a scary horror movie with a few good moments"),
    "d9": ("weak script", "a weak script and flat characters"),
    "d10": ("charming", "a charming and warm little film"),
}
QUERIES = {"q1": "great cast", "q2": "boring and dull", "q3": "funny laugh", "q4": "sad loss",
           "q5": "bad plot", "q6": "lovely music", "t1": "wonderful film", "t2": "scary movie", "t3": "flat script"}
QRELS = {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}, "q5": {"d5": 1},
                   "q6": {"d6": 1, "d10": 1}},
         "test": {"t1": {"d1": 1}, "t2": {"d8": 1}, "t3": {"d9": 1}}}


@pytest.fixture
def toy(tmp_path):
    return write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)


# ---------------------------------------------------------------------------------------------- losses
def test_margin_mse_hand_computed():
    s_pos, s_neg = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 1.0])
    t_pos, t_neg = torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0])
    # student margins (1, 0), teacher margins (2, -1): squared errors 1 and 1
    assert margin_mse(s_pos, s_neg, t_pos, t_neg).item() == pytest.approx(1.0)
    # groups [pos, neg1, neg2]: the pairs (pos, neg1), (pos, neg2) of each row
    s, t = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[5.0, 4.0, 1.0]])
    assert margin_mse_groups(s, t).item() == pytest.approx(((2 - 1) ** 2 + (3 - 4) ** 2) / 2)


def test_listwise_kl_hand_computed():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # T = 1: p = (3/4, 1/4), q = (1/2, 1/2)
    assert listwise_kl(s, t, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-5)
    # T = 2: p = (sqrt3, 1) / (sqrt3 + 1), scaled by T^2 = 4
    p1 = math.sqrt(3) / (math.sqrt(3) + 1)
    want = 4 * (p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5))
    assert listwise_kl(s, t, 2.0).item() == pytest.approx(want, rel=1e-5)


def test_in_batch_contrastive_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])   # two positives, then one hard negative
    # each row's logits are (1, 0, 1) or (0, 1, 1): -log(e / (2e + 1))
    assert in_batch_contrastive(q, d).item() == pytest.approx(math.log(2 * math.e + 1) - 1, rel=1e-6)
    assert in_batch_contrastive(q, d, tau=0.5).item() == pytest.approx(math.log(2 * math.e ** 2 + 1) - 2, rel=1e-6)


# ---------------------------------------------------------------------------------------------- metrics
def test_ranking_metrics_against_hand_computed():
    qrels = {"a": {"d2": 1}, "b": {"d1": 1, "d3": 1}, "c": {"d9": 1}}
    run = {"a": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "b": {"d1": 3.0, "d2": 2.0, "d3": 1.0},
           "c": {"d1": 1.0}}   # c's relevant document is not retrieved
    m = ranking_metrics(qrels, run)
    ndcg_a = (1 / math.log2(3)) / 1.0
    ndcg_b = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_a + ndcg_b + 0) / 3, rel=1e-6)
    assert m["mrr@10"] == pytest.approx((0.5 + 1 + 0) / 3, rel=1e-6)
    assert m["recall@100"] == pytest.approx((1 + 1 + 0) / 3, rel=1e-6)
    assert m["n"] == 3
    # a judged query the run does not rank at all counts as 0
    assert ranking_metrics(qrels, {"a": run["a"]})["mrr@10"] == pytest.approx(0.5 / 3, rel=1e-6)


# ---------------------------------------------------------------------------------------------- bi-encoder
@pytest.mark.parametrize("pooling,score", [("mean", "dot"), ("cls", "cosine")])
def test_bi_encoder_corpus_once_equals_pair_scores(toy, pooling, score):
    from kdlab.models.core import tiny_model
    from kdlab.ranking.models import BiEncoder, base_encoder
    from kdlab.ranking.train import rank_bi
    model, tok = tiny_model(1, num_hidden_layers=2)
    bi = BiEncoder(base_encoder(model), tok, pooling=pooling, score=score, query_len=16, doc_len=32).eval()
    data = load_beir(toy)
    calls = []
    encode = bi.encode
    bi.encode = lambda texts, **kw: calls.append((kw.get("kind"), len(texts))) or encode(texts, **kw)
    qids = data.split_queries("test")
    run, doc_emb = rank_bi(bi, data, qids, k=len(data.docs))
    assert calls == [("doc", len(data.docs)), ("query", len(qids))]   # the corpus is encoded once
    for q in qids:
        for j, did in enumerate(data.doc_ids):   # each pair scored alone (batch of one: no padding)
            alone = bi.pair_scores([data.queries[q]], [data.docs[j]], batch_size=1).item()
            assert run[q][did] == pytest.approx(alone, abs=1e-5)


# ---------------------------------------------------------------------------------------------- command line
def _runs(root):
    return Store(root).runs() if (root / "kdlab.db").exists() else []


def assert_refused(capsys, root, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlab: error:") and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not [r for r in _runs(root) if r["status"] == "finished"]


def test_bad_ranking_inputs_refused(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["distill", "--method", "margin-mse", "--teacher", "tiny", "--runs", str(root), "--quiet"]
    unknown = write_beir(tmp_path / "unknown", DOCS, QUERIES, {**QRELS, "test": {"t1": {"d99": 1}}})
    assert_refused(capsys, root, [*base, "--data", str(unknown)], "unknown ids", "d99")
    nopos = write_beir(tmp_path / "nopos", DOCS, QUERIES, {**QRELS, "test": {"t1": {"d1": 0}, "t2": {"d8": 1}}})
    assert_refused(capsys, root, [*base, "--data", str(nopos)], "no positive", "t1")
    empty = write_beir(tmp_path / "empty", {}, QUERIES, QRELS)
    assert_refused(capsys, root, [*base, "--data", str(empty)], "corpus", "empty")
    sentiment = tmp_path / "sst.tsv"
    sentiment.write_text("sentence\tlabel\n" + "a great film\t1\na bad film\t0\n" * 4)
    assert_refused(capsys, root, [*base, "--data", str(sentiment)], "margin-mse", "BEIR")
    assert_refused(capsys, root, [*base], "margin-mse", "classification")   # the embedded sentiment data
    toy = write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)
    assert_refused(capsys, root, ["distill", "--preset", "tiny", "--method", "kd", "--data", str(toy), "--runs", str(root),
                            "--quiet"], "'kd' is a classification method", "margin-mse")
    assert_refused(capsys, root, ["distill", "--preset", "tiny", "--method", "tinybert", "--data", str(toy), "--runs",
                            str(root), "--quiet"], "position", "bi-encoder")


def test_contract_commands_on_toy_beir(toy, tmp_path, capsys):
    root = tmp_path / "runs"
    common = ["--teacher", "tiny", "--data", str(toy), "--max-train", "4", "--runs", str(root), "--quiet"]
    assert main(["distill", "--task", "ranking", "--method", "margin-mse", *common, "--max-steps", "3"]) == 0
    assert main(["distill", "--method", "listwise-kl", *common, "--max-steps", "2", "--set", "temperature=2"]) == 0
    capsys.readouterr()
    runs = Store(root).runs()
    assert [r["kind"] for r in runs].count("teacher") == 1   # the second run reuses the cross-encoder
    assert all(r["status"] == "finished" for r in runs)
    assert main(["eval", "--runs", str(root), "--run", "margin-mse", "--data", str(toy)]) == 0
    res = json.loads(capsys.readouterr().out)
    mm = next(r for r in runs if r["method"] == "margin-mse")
    assert res["run"] == mm["id"] and res["n"] == 3
    for k in ("ndcg@10", "mrr@10", "recall@100"):
        assert 0 <= res[k] <= 1
    assert res["ndcg@10"] == pytest.approx(Store(root).final_evals(mm["id"])["test"]["ndcg@10"], abs=1e-6)
    assert main(["eval", "--runs", str(root), "--run", "cross-encoder", "--data", str(toy)]) == 0   # the teacher
    assert json.loads(capsys.readouterr().out)["recall@100"] == 1.0   # BM25 top-10 of 10 documents: all found


def test_dashboard_ranking_page(toy, tmp_path, monkeypatch, capsys):
    from pathlib import Path
    from streamlit.testing.v1 import AppTest
    root = tmp_path / "runs"
    assert main(["distill", "--method", "margin-mse", "--teacher", "tiny", "--data", str(toy), "--max-train", "4",
                 "--max-steps", "2", "--runs", str(root), "--quiet"]) == 0
    monkeypatch.setenv("KDLAB_RUNS", str(root))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/9_Ranking.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception]
    refs = at.dataframe[0].value   # reference rows (none measured in this store) and the run's own test row
    assert len(refs) == 1 and refs["nDCG@10"].iloc[0] == pytest.approx(
        Store(root).final_evals(Store(root).runs(kind="student")[0]["id"])["test"]["ndcg@10"], abs=1e-3)
    rows = at.dataframe[1].value
    assert len(rows) == len(DOCS)   # the BM25 candidates of a toy query: every document
    assert set(rows["teacher"].str.split(":").str[0].str.lstrip("* ")) == set(DOCS)
    before = at.metric[2].value
    at.slider(key="rank_T").set_value(4.0).run()
    assert not at.exception and at.metric[2].value != before   # the listwise KL at another temperature


def test_embedding_mse_hand_computed():
    """2 (1 - cos) per text on unit vectors, averaged: (1, 0) vs (0, 2) -> 2; (3, 4) vs (6, 8) -> 0."""
    from kdlab.kd.ranking import embedding_mse
    s = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [6.0, 8.0]])
    assert embedding_mse(s, t).item() == pytest.approx((2.0 + 0.0) / 2)
    s3 = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])                       # [B, K, H] (a group's documents)
    t3 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert embedding_mse(s3, t3).item() == pytest.approx((0.0 + 2 * (1 - 1 / math.sqrt(2))) / 2)
    from kdlab.errors import KdlabError
    with pytest.raises(KdlabError, match="hidden sizes"):
        embedding_mse(torch.ones(2, 3), torch.ones(2, 4))


def test_ranking_kd_adds_the_contrastive_and_embedding_terms():
    """margin-mse with alpha_hard and embed_weight: alpha_soft * margin-MSE + alpha_hard * in-batch contrastive +
    embed_weight * (embedding_mse(q) + embedding_mse(d)) / 2, each term computed by hand from the same tensors."""
    from types import SimpleNamespace
    from kdlab.kd.ranking import embedding_mse
    from kdlab.methods import get
    from kdlab.methods.base import State
    from kdlab.records import Features
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(2, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    tq, td = torch.randn(2, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    x, tx = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)   # transfer documents (transfer_docs)
    s = Features(logits=(q.unsqueeze(1) * d).sum(-1), mask=torch.ones(2, 1), extra={"q": q, "d": d, "x": x})
    t = Features(logits=torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.5, -1.0]]), mask=torch.ones(2, 1),
                 extra={"q": tq, "d": td, "x": tx})
    m = get("margin-mse")(SimpleNamespace(label_kind="ranking"), alpha_soft=0.5, alpha_hard=2.0, embed_weight=3.0)
    state = State(step=0, epoch=0, total_steps=1, steps_per_epoch=1)
    total, parts = m.loss(s, t, {}, state)
    ms = ((s.logits[:, :1] - s.logits[:, 1:]) - (t.logits[:, :1] - t.logits[:, 1:])).pow(2).mean()
    docs = torch.cat([d[:, 0], d[:, 1:].reshape(-1, 4)])
    ce = torch.nn.functional.cross_entropy(q @ docs.T, torch.arange(2))
    emb = (embedding_mse(q, tq) + embedding_mse(d, td) + embedding_mse(x, tx)) / 3
    assert parts["margin_mse"].item() == pytest.approx(0.5 * ms.item(), rel=1e-5)
    assert parts["contrastive"].item() == pytest.approx(2.0 * ce.item(), rel=1e-5)
    assert parts["embed"].item() == pytest.approx(3.0 * emb.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.5 * ms.item() + 2.0 * ce.item() + 3.0 * emb.item(), rel=1e-5)
    plain, parts = get("margin-mse")(SimpleNamespace(label_kind="ranking")).loss(s, t, {}, state)
    assert set(parts) == {"margin_mse"} and plain.item() == pytest.approx(ms.item(), rel=1e-5)


def test_keep_layers_takes_the_skip_layers_of_the_encoder():
    from kdlab.errors import KdlabError
    from kdlab.models.core import tiny_model
    from kdlab.ranking.models import base_encoder, keep_layers
    enc = base_encoder(tiny_model(1, num_hidden_layers=4)[0])
    want = [enc.encoder.layer[i].attention.self.query.weight.clone() for i in (1, 3)]   # skip: layers 2 and 4
    out = keep_layers(enc, 2)
    assert out.config.num_hidden_layers == 2 and len(out.encoder.layer) == 2
    assert all(torch.equal(out.encoder.layer[j].attention.self.query.weight, want[j]) for j in range(2))
    ids = torch.tensor([[2, 5, 6, 3]])
    assert out(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.shape[-1] == out.config.hidden_size
    with pytest.raises(KdlabError, match="at most 2"):
        keep_layers(out, 3)


def test_listwise_kl_inbatch_over_every_document_of_the_batch():
    """inbatch=true: the KL between the teacher's and the student's softmax over every document of the batch (the
    positives first, then the negatives), the student's cosine divided by tau; refused without in-batch scores."""
    from types import SimpleNamespace
    from kdlab.errors import KdlabError
    from kdlab.methods import get
    from kdlab.methods.base import State
    from kdlab.records import Features
    g = torch.Generator().manual_seed(1)
    q, d = torch.randn(2, 4, generator=g), torch.randn(2, 2, 4, generator=g)   # 2 queries, groups of 2
    docs = torch.stack([d[0, 0], d[1, 0], d[0, 1], d[1, 1]])                  # positives, then the negatives
    t_inb = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.5, 3.0, 0.0, 1.0]])
    s = Features(logits=(q.unsqueeze(1) * d).sum(-1), mask=torch.ones(2, 1), extra={"q": q, "d": d})
    t = Features(logits=torch.zeros(2, 2), mask=torch.ones(2, 1), extra={"inbatch": t_inb})
    state = State(step=0, epoch=0, total_steps=1, steps_per_epoch=1)
    m = get("listwise-kl")(SimpleNamespace(label_kind="ranking"), inbatch=True, score="cosine", tau=0.5,
                           temperature=2.0)
    loss, parts = m.loss(s, t, {}, state)
    sp = torch.log_softmax((q @ docs.T) / 0.5 / 2.0, -1)
    tp = torch.softmax(t_inb / 2.0, -1)
    want = 4.0 * (tp * (tp.log() - sp)).sum(-1).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(KdlabError, match="teacher_kind=fused"):
        m.loss(s, Features(logits=torch.zeros(2, 2), mask=torch.ones(2, 1)), {}, state)
