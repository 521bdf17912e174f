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
