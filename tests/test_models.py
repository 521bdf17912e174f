"""Teachers and students: loading, slicing copies the intended weights, fresh configs, errors."""
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.models.core import (ModelInfo, build_student, fresh_student, load_saved, load_teacher,
                          save_model, student_from_teacher, tiny_model)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(num_labels=2, seed=1)


def _layer_params(model, i):
    return {k: v for k, v in model.bert.encoder.layer[i].state_dict().items()}


def test_student_slicing_copies_the_intended_layers(tiny):
    teacher, _ = tiny
    student = student_from_teacher(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2
    for s_idx, t_idx in ((0, 0), (1, 3)):
        s, t = _layer_params(student, s_idx), _layer_params(teacher, t_idx)
        assert s.keys() == t.keys()
        for k in s:
            assert torch.equal(s[k], t[k]), k
    # and not the layers that were skipped
    assert not torch.equal(_layer_params(student, 1)["attention.self.query.weight"],
                           _layer_params(teacher, 1)["attention.self.query.weight"])
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    # a copy, not a shared tensor
    assert student.classifier.weight.data_ptr() != teacher.classifier.weight.data_ptr()


@pytest.mark.parametrize("init,expected", [("skip", [1, 3]), ("first", [0, 1]), ("last", [2, 3])])
def test_build_student_strategies(tiny, init, expected):
    teacher, _ = tiny
    student = build_student(teacher, layers=2, init=init)
    for s_idx, t_idx in enumerate(expected):
        assert torch.equal(_layer_params(student, s_idx)["output.dense.weight"],
                           _layer_params(teacher, t_idx)["output.dense.weight"])


def test_explicit_distilbert_style_list(tiny):
    teacher, _ = tiny
    student = build_student(teacher, init="explicit", layer_list=[0, 2, 3])
    assert student.config.num_hidden_layers == 3
    assert torch.equal(_layer_params(student, 1)["intermediate.dense.weight"],
                       _layer_params(teacher, 2)["intermediate.dense.weight"])


def test_fresh_smaller_student(tiny):
    teacher, _ = tiny
    s = fresh_student(teacher, layers=2, hidden=32, heads=4)
    info = ModelInfo.of(s)
    assert (info.layers, info.hidden, info.heads, info.vocab) == (2, 32, 4, teacher.config.vocab_size)
    out = s(input_ids=torch.tensor([[2, 10, 11, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long))
    assert out.logits.shape == (1, 2)


def test_student_errors(tiny):
    teacher, _ = tiny
    with pytest.raises(KdlabError, match="more layers"):
        build_student(teacher, layers=5)
    with pytest.raises(KdlabError, match="out of range"):
        student_from_teacher(teacher, [0, 7])
    with pytest.raises(KdlabError, match="divisible"):
        fresh_student(teacher, layers=2, hidden=30, heads=4)


def test_packaged_teacher_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_teacher("minilm-l6", num_labels=2)
    info = ModelInfo.of(model)
    assert (info.layers, info.hidden, info.heads) == (6, 384, 12)
    assert tok.tokenize("not bad at all") == ["not", "bad", "at", "all"]
    enc = tok(["a fine film"], return_tensors="pt")
    assert model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).logits.shape == (1, 2)


def test_save_and_load_round_trip(tmp_path, tiny):
    teacher, tok = tiny
    save_model(teacher, tok, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    m2, tok2 = load_saved(tmp_path / "m")
    x = torch.tensor([[2, 10, 11, 3]])
    teacher.eval()
    assert torch.allclose(teacher(input_ids=x).logits, m2(input_ids=x).logits, atol=1e-6)
    assert tok2.get_vocab() == tok.get_vocab()


def test_model_loading_errors(tmp_path, tiny):
    with pytest.raises(KdlabError, match="does not exist"):
        load_teacher(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdlabError, match="no config.json"):
        load_teacher(str(tmp_path / "empty"))
    teacher, tok = tiny
    save_model(teacher, tok, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(KdlabError, match="safetensors"):
        load_teacher(str(tmp_path / "m"))
    with pytest.raises(KdlabError, match="hub"):
        load_teacher("no-such-org/no-such-model-kdlab")


def test_different_tokenizers_are_refused(tiny):
    from kdlab.models.core import load_tokenizer
    from kdlab.models.teachers import check_same_tokenizer
    _, tok = tiny
    with pytest.raises(KdlabError, match="tokenize differently"):
        check_same_tokenizer([tok, load_tokenizer("minilm-l6")], ["tiny", "minilm-l6"])
