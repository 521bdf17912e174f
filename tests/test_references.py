"""The published reference table: lookup by task and teacher backbone, and the weak-teacher warning."""
from kdlab.analysis import references as R
from kdlab.runs.store import Store


def test_lookup_task_aliases_and_backbone_order():
    rows = R.lookup("sst-2", ["minilm-l6", "bert-base"])
    assert [(r.backbone, r.value) for r in rows] == [("minilm-l6", 91.5), ("bert-base", 92.7), ("bert-base", 93.2)]
    assert {r.split for r in rows} == {"dev"}
    assert [r.value for r in R.lookup("sts-b", ["distilbert"])] == [86.9]
    assert R.lookup("rte", ["bert-tiny"])[0].split == "test"
    assert R.lookup("mrpc", ["bert-mini"])[0].metric == "f1"
    assert R.lookup("stsb", ["minilm-l6"]) == []          # MiniLM's table has no STS-B: the cell is left out
    assert all(r.source for r in R.ROWS)


def test_task_key_sentiment_only_for_sst2_data():
    assert R.task_key("sentiment", "../shared/data/sst2") == "sst2"
    assert R.task_key("sentiment", None) is None            # the embedded synthetic corpus
    assert R.task_key("sts-b") == "stsb" and R.task_key("mnli") == "mnli" and R.task_key("wnli") is None


def test_backbone_of_names_and_shapes():
    assert R.backbone_of("minilm-l6") == "minilm-l6"
    assert R.backbone_of("microsoft/MiniLM-L12-H384-uncased") == "minilm-l12"
    assert R.backbone_of("distilbert-base-uncased") == "distilbert"
    assert R.backbone_of("google/bert_uncased_L-4_H-256_A-4") == "bert-mini"
    assert R.backbone_of("huawei-noah/TinyBERT_General_4L_312D") == "tinybert4"
    assert R.backbone_of("/some/folder", {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384}) == "minilm-l6"
    assert R.backbone_of("mpnet-base") is None


def test_weak_teacher_threshold():
    # MiniLM-L6 on SST-2 dev: 91.5. 0.830 is 8.5 points below -> warning; 0.886 is 2.9 below -> none
    w = R.weak_teacher("sst2", "minilm-l6", 0.830, "accuracy")
    assert w and "83.0" in w and "8.5 points below" in w and "91.5" in w
    assert R.weak_teacher("sst2", "minilm-l6", 0.886, "accuracy") is None
    assert R.weak_teacher("rte", "minilm-l6", 0.563, "accuracy").count("12.5 points") == 1   # 68.8 - 56.3
    assert R.weak_teacher("sst2", None, 0.5) is None and R.weak_teacher("stsb", "minilm-l6", 0.2) is None
    # a test-only backbone is held to its test figure; MRPC in MiniLM's table does not say which metric
    assert "81.1" in R.weak_teacher("mrpc", "bert-tiny", 0.70, "f1")
    assert "does not say which metric" in R.weak_teacher("mrpc", "minilm-l6", 0.80, "f1")


def test_block_and_for_run_from_a_store(tmp_path):
    store = Store(tmp_path)
    spec = {"name": "sentiment", "metrics": ["accuracy", "macro_f1"]}
    tid = store.create_run("teacher", "ce", {"teacher": "minilm-l6", "data": "../shared/data/sst2",
                                             "task_spec": spec}, name="teacher")
    store.log_eval(tid, 0, 0, "dev", "in-domain", {"accuracy": 0.83, "macro_f1": 0.82})
    sid = store.create_run("student", "kd", {"teacher_run": tid, "task_spec": spec}, name="s", parent=tid)
    lines = R.for_run(store, sid)
    assert lines[0].startswith("published reference rows (sst2")
    assert any("MiniLM-L6xH384" in ln and "91.5" in ln for ln in lines)
    assert lines[-1].startswith("WARNING: weak teacher: 83.0")
    assert R.block("sentiment", "minilm-l6", 0.9, data="embedded") == []


def test_split_warning_for_pages():
    text, warn = R.split_warning(R.block("sst2", "minilm-l6", 0.83, "accuracy"))
    assert warn.startswith("WARNING: weak teacher") and "WARNING" not in text and "91.5" in text
    assert R.split_warning([]) == ("", None)
