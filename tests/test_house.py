"""The house rules of the code base: one path rule for the loader and the dashboard, app/ computes nothing
itself (no tokenizer, softmax, KL or metric), every kdlab module is named in docs/ARCHITECTURE.md."""
import ast
import importlib.util
from pathlib import Path

import pytest

from kdlab.errors import KdlabError
from kdlab.safety import looks_like_path

ROOT = Path(__file__).resolve().parents[1]


def load_common():
    spec = importlib.util.spec_from_file_location("kdlab_app_common_house", ROOT / "app" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("value,is_path", [
    ("data/../../x", True), ("../x", True), ("/etc/passwd", True), ("~/x", True), ("a/b/c", True),
    ("train.tsv", True), ("data/x.jsonl", True), ("folder\\x", True), ("models/ckpt.v2", True),
    ("imdb", False), ("stanfordnlp/imdb", False), ("minilm-l6", False), ("embedded", False)])
def test_one_path_rule(value, is_path):
    assert looks_like_path(value) is is_path


def test_dashboard_refuses_a_data_path_that_climbs_out_with_one_line():
    common = load_common()
    with pytest.raises(KdlabError, match="outside the allowed folders") as e:
        common.resolved_task("data/../../x")
    assert "\n" not in str(e.value)
    common.check_data("embedded")           # the embedded corpus and hub names are not paths
    common.check_data("stanfordnlp/imdb")


# what a page may not do itself: tokenize, or compute probabilities, a KL or a log-likelihood
BANNED_MODULES = ("transformers", "tokenizers")
BANNED_CALLS = {"softmax", "log_softmax", "sigmoid", "kl_div", "exp", "log", "logsumexp", "kd_kl",
                "convert_ids_to_tokens", "AutoTokenizer"}
TOKENIZER_NAMES = {"tok", "tokenizer", "ttok", "stok"}   # calling one, or one of its methods, is tokenizing


def app_files():
    files = sorted((ROOT / "app").rglob("*.py"))
    assert len(files) >= 10
    return files


def test_the_dashboard_imports_no_tokenizer_and_computes_no_softmax_kl_or_metric():
    bad = []
    for f in app_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                bad += [f"{f.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] in BANNED_MODULES:
                    bad.append(f"{f.name}: from {node.module}")
                bad += [f"{f.name}: imports {a.name}" for a in node.names if a.name in BANNED_CALLS]
            elif isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                receiver = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
                if name in BANNED_CALLS or name in TOKENIZER_NAMES or receiver in TOKENIZER_NAMES:
                    bad.append(f"{f.name}:{node.lineno}: {name}(...)")
    assert not bad, "the dashboard computes what an engine function should (kdlab.analysis.explain, kdlab.analysis.probs):\n" + \
        "\n".join(bad)


def test_explain_numbers_by_hand():
    import math

    import numpy as np

    from kdlab.analysis.explain import class_disagreements, config_diff, label_set_disagreements, temperature_terms
    from kdlab.analysis.probs import softened
    # teacher [0, ln 3] -> p = (1/4, 3/4) at T = 1; student [ln 3, 0] -> q = (3/4, 1/4)
    t = temperature_terms([0.0, math.log(3)], [math.log(3), 0.0], 1.0)
    kl = 0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25)
    assert t["kl"] == np.float64(t["kd_loss"]) and abs(t["kl"] - kl) < 1e-6
    t2 = temperature_terms([0.0, math.log(9)], [0.0, 0.0], 2.0)   # at T = 2 the teacher is (1/4, 3/4) again
    assert abs(t2["top_teacher"] - 0.75) < 1e-12 and abs(t2["top_teacher_T1"] - 0.9) < 1e-12
    assert abs(t2["kd_loss"] - 4 * t2["kl"]) < 1e-9 and abs(t2["entropy_student"] - math.log(2)) < 1e-12
    assert np.allclose(softened(np.array([[0.0, 0.0, math.log(2)]]), 1.0), [[0.25, 0.25, 0.5]])
    # a 3-class model scored on a 2-class set: classes 0 and 2 map to 0
    z = {"student": np.log([[0.5, 0.2, 0.3], [0.1, 0.8, 0.1]]), "teacher": np.log([[0.1, 0.7, 0.2], [0.2, 0.7, 0.1]])}
    cd = class_disagreements(z, [0, 1], label_map=[0, 1, 0])
    assert np.allclose(cd["probs"]["student"], [[0.8, 0.2], [0.2, 0.8]])
    assert cd["preds"]["student"].tolist() == [0, 1] and cd["preds"]["teacher"].tolist() == [1, 1]
    assert cd["disagree"].tolist() == [0] and cd["agreement"] == 0.5
    assert label_set_disagreements({"student": np.array([[1.0, -1.0], [1.0, 1.0]]),
                                    "teacher": np.array([[2.0, -3.0], [1.0, -1.0]])}).tolist() == [1]
    runs = [{"method": "kd", "kind": "distill", "config": {"name": "a", "train": {"lr": 1e-4, "seed": 0}}},
            {"method": "ce", "kind": "distill", "config": {"name": "b", "train": {"lr": 1e-4, "seed": 1}}}]
    assert config_diff(runs) == {"method": ["kd", "ce"], "train.seed": ["0", "1"]}


def test_architecture_names_every_module_and_docs_cite_no_outside_spec():
    arch = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    mods = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "kdlab").rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))
    assert len(mods) > 80
    missing = [m for m in mods if f"`{m}`" not in arch]
    assert not missing, f"add a row to docs/ARCHITECTURE.md's module table for {missing}"
    import re
    cited = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("kdlab/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
             if re.search(r"METHODS(\.md| spec)? §", p.read_text())]
    assert not cited, f"'METHODS §N' cites a spec outside the repository: point at docs/METHODS.md in {cited}"


HEAVY = ("torch", "transformers", "pandas", "numpy", "pyarrow", "scipy", "sklearn")


@pytest.mark.parametrize("preset", ["tiny", ""])
def test_the_dashboards_first_page_needs_no_torch(tmp_path, preset):
    # the Setup page renders from the config, the data and the store: torch and transformers load when a page needs
    # a model, pandas, numpy and pyarrow when a page shows a table (first page ready in a few seconds; BENCHMARKS.md)
    import os
    import subprocess
    import sys
    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file(sys.argv[1], "
            "default_timeout=120); at.run(); assert not at.exception, at.exception; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    env = dict(os.environ, KDLAB_APP_PRESET=preset, KDLAB_RUNS=str(tmp_path / "runs"))
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "app" / "main.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
