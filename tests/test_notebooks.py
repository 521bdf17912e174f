"""The notebooks: committed with outputs cleared, and each one runs top to bottom in fast mode
(KDLAB_FAST=1, tiny teacher, a temporary run store) with nbclient, after which a test cell in the same
kernel moves one of its widgets and checks that the interactive's result changed accordingly.

Needs the ``python3`` kernelspec of the environment's interpreter, e.g.
``python -m ipykernel install --sys-prefix``.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))

# Code run in the notebook's kernel after the notebook: move a widget of `w`, check `w.result`.
WIDGET_CHECKS = {
    "01_soft_targets_temperature": """
before = w.result
assert before["T"] == 2.0
w.children[0].value = 10.0
after = w.result
assert after["T"] == 10.0 and after["entropy"] > before["entropy"]
assert np.allclose(after["probs"], viz.soften(z5, 10.0))
assert abs(after["probs"].sum() - 1) < 1e-9 and after["probs"].max() < before["probs"].max()
w.children[0].value = 0.25
assert w.result["entropy"] < before["entropy"]
""",
    "02_kd_vs_alone": """
assert w.result["metric"] == "accuracy"
w.children[0].value = "ece"
r = w.result
assert r["metric"] == "ece"
for label, rid in runs.items():
    stored = S.store().final_evals(rid)
    assert set(r["table"][label]) == set(stored)
    for split, m in stored.items():
        assert r["table"][label][split] == m["ece"]
assert r["table"] != S.accuracy_table({"teacher": teacher_run, **runs})
""",
    "03_layer_mapping": """
assert torch.equal(w.result, mapping.uniform(M, N))
w.children[0].value = "ckd"
assert torch.equal(w.result, mapping.grouped(M, N))
assert torch.allclose(w.result.sum(1), torch.ones(M))
w.children[0].value = "rail"
draws = []
for e in (1, 2, 3):
    w.children[1].value = e
    assert torch.equal(w.result, mapping.rail_random(M, N, seed=0, epoch=e))
    draws.append(w.result)
assert all(d[-1].sum() == 0 for d in draws)
w.children[0].value = "alp"
assert torch.allclose(w.result.sum(1), torch.ones(M), atol=1e-5)
""",
    "04_internal_representations": """
r0 = w.result
assert r0["pair"] == (1, pairs[0][1]) and r0["model"] == "plain KD"
w.children[1].value = M
r1 = w.result
assert r1["pair"] == (M, pairs[-1][1])
expected = float(losses.attention_kl(feats["plain KD"].attentions[M - 1], ft.attentions[r1["pair"][1] - 1],
                                     batch["attention_mask"]))
assert abs(r1["kl"] - expected) < 1e-6
w.children[0].value = "before training"
assert w.result["kl"] == att_kl["before training"][f"s{M}-t{pairs[-1][1]}"]
assert len(w.result) == 4 and w.result["model"] == "before training"
""",
    "05_ood_calibration": """
assert w.result["bins"] == 10 and w.result["split"] == "dev"
ood = [s for s in splits if s != "dev"][0]
w.children[0].value = ood
w.children[1].value = 4
r = w.result
assert r["split"] == ood and r["bins"] == 4
for label in probs:
    assert r["ece"][label] == evaluate.ece(probs[label][ood], labels[ood], 4)
    assert 0.0 <= r["ece"][label] <= 1.0
""",
    "07_nli_vs_sentiment": """
r = w.result
assert r["suite"] == "nli" and r["method"] == "kd" and r["run"] == runs["nli"]["kd"]
ev = S.store().final_evals
for split, g in r["gain"].items():
    assert abs(g - 100 * (ev(runs["nli"]["kd"])[split]["accuracy"] - ev(runs["nli"]["ce"])[split]["accuracy"])) < 1e-9
assert S.store().run(r["run"])["config"]["task_spec"]["name"] == "mnli"
assert "ood_science" in r["gain"] and "[SEP]" in tokens and 1 in segments
w.children[0].value = "sentiment"
w.children[1].value = "pkd-skip"
r2 = w.result
assert r2["run"] == runs["sentiment"]["pkd-skip"] != r["run"]
assert set(r2["gain"]) == set(ev(runs["sentiment"]["pkd-skip"]))
""",
    "09_studies": """
assert w.result["domain"] == "dev"
ood = [d for d in domains if d != "dev"][0]
w.children[0].value = ood
r = w.result
stored = S.store().study(NAME)["result"]["rows"]
assert r["domain"] == ood and [x["verdict"] for x in r["rows"]] == [x["verdict"] for x in stored if x["domain"] == ood]
kd = next(x for x in r["rows"] if x["method"] == "kd")
base = next(x for x in r["rows"] if x["method"] == "ce")
assert set(r["deltas"]["kd"]) == {"0", "1"}
assert abs(r["deltas"]["kd"]["0"] - (kd["seeds"]["0"] - base["seeds"]["0"])) < 1e-12
assert kd["ci_low"] <= kd["delta"] <= kd["ci_high"]
""",
    "06_beyond_frozen_teacher": """
assert w.result["method"] == "kd" and w.result["run"] == runs["kd"]
w.children[0].value = "ce"
r = w.result
assert r["method"] == "ce" and r["run"] == runs["ce"] != runs["kd"]
assert r["accuracy"] == S.store().final_evals(runs["ce"])["dev"]["accuracy"]
f = fam_w.result
assert f["family"] == "roberta" and f["teacher"] == "tiny-roberta"
assert S.store().run(f["run"])["config"]["teacher"] == "tiny-roberta"
assert f["accuracy"] == S.store().final_evals(f["run"])["dev"]["accuracy"]
fam_w.children[0].value = "bert"   # the tiny BERT teacher: the same configuration as the kd run above, reused
assert fam_w.result["teacher"] == "tiny" and fam_w.result["run"] == runs["kd"]
for form, rid in ens_runs.items():
    c = S.store().run(rid)["config"]
    assert c["teachers"] == ["tiny", "tiny-roberta"] and c["ensemble"] == form and len(c["teacher_runs"]) == 2
    assert c["teacher_runs"][1] == S.store().run(f["run"])["config"]["teacher_run"]   # the family run's teacher
assert set(ens_table["kd, ensemble mean-kl"]) == set(S.store().final_evals(ens_runs["mean-kl"]))
""",
    "08_ranking": """
assert ref_table[-1]["source"] == "run " + run_id and (not S.FAST or len(ref_table) == 4)   # BM25, MiniLM, fused
r = w.result
assert r["qid"] == qids[0] and r["T"] == 1.0 and len(r["rows"]) == min(10, K, len(data.docs))
w.children[1].value = 4.0
r2 = w.result
v = view.query_view(bi, teacher, tok, data, cands, qids[0], k=K, doc_len=DOC_LEN)
want = float(listwise_kl(torch.tensor(v.student)[None], torch.tensor(v.teacher)[None], 4.0))
assert r2["T"] == 4.0 and abs(r2["loss"] - want) < 1e-6 and r2["loss"] != r["loss"]
w.children[0].value = qids[1]
assert w.result["qid"] == qids[1] and w.result["rows"] != r2["rows"]
""",
    "10_lm_forward_reverse_kl": """
r = w.result
assert r["T"] == 1.0 and r["position"] == positions[0] and list(r["probs"]) == ["teacher", "forward KL", "reverse KL"]
w.children[1].value = 3.0
r3 = w.result
want = compare_next_token(models, tok, ids=ids, temperature=3.0, k=K, position=positions[0])
assert r3["T"] == 3.0 and r3["probs"] == want["probs"] and r3["entropy"]["teacher"] > r["entropy"]["teacher"]
w.children[0].value = positions[-1]
r4 = w.result
assert r4["position"] == positions[-1] and len(r4["prompt_tokens"]) == positions[-1] + 1
with torch.no_grad():
    z = models["teacher"](torch.tensor([ids[:positions[-1] + 1]])).logits[0, -1].double()
assert abs(r4["probs"]["teacher"][0] - torch.softmax(z / 3.0, -1).max().item()) < 1e-5
assert abs(sum(r4["probs"]["reverse KL"]) + r4["other"]["reverse KL"] - 1) < 1e-9
t1 = toy_w.result
assert t1["T"] == 1.0
left = lambda f: float(f["probs"][:24].sum())
assert left(t1["reverse KL"]) > 0.95 and 0.3 < left(t1["forward KL"]) < 0.8   # one mode vs both modes covered
assert entropy(t1["reverse KL"]["probs"]) < entropy(t1["forward KL"]["probs"])
toy_w.children[0].value = 4.0
t4 = toy_w.result
assert t4["T"] == 4.0 and left(t4["reverse KL"]) < 0.8   # a shallow valley at T = 4: no single mode
want = losses.forward_kl(t4["forward KL"]["logits"][None], teacher_logits[None], temperature=4.0).item()
assert abs(t4["forward KL"]["loss"] - want) < 1e-9
""",
}


def test_every_notebook_has_a_widget_check():
    assert len(NOTEBOOKS) == 10
    assert {p.stem for p in NOTEBOOKS} == set(WIDGET_CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_cleared(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for c in code:
        assert c.outputs == [], f"{path.name}: a cell has outputs; clear them before committing"
        assert c.execution_count is None, f"{path.name}: a cell has an execution count; clear outputs"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    src = "\n".join(c.source for c in code)
    assert "import _setup as S" in src and "interactive(" in src and "kdlab" in src


@pytest.fixture(scope="module")
def fast_env(tmp_path_factory):
    """One tiny run store for all notebooks, so that the tiny teacher is fine-tuned once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("KDLAB_FAST", "1")
    mp.setenv("KDLAB_RUNS", str(tmp_path_factory.mktemp("notebook-runs")))
    mp.setenv("KDLAB_CACHE", str(tmp_path_factory.mktemp("kdlab-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    yield
    mp.undo()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode_and_its_widget_responds(path, fast_env, tmp_path):
    """Each notebook runs in its own process (nbclient), so one kernel's session cannot affect the next."""
    import os
    import subprocess
    import sys
    check = tmp_path / "check.py"
    check.write_text(WIDGET_CHECKS[path.stem])
    runner = Path(__file__).with_name("nb_runner.py")
    for attempt in (1, 2):  # a kernel that stops answering is started again once
        try:
            p = subprocess.run([sys.executable, str(runner), str(path), str(check)], capture_output=True,
                               text=True, timeout=420, env=dict(os.environ))
            break
        except subprocess.TimeoutExpired:
            if attempt == 2:
                raise
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "WIDGET-CHECK-OK" in p.stdout
    assert "mode: FAST" in p.stdout
