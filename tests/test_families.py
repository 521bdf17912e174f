"""Model families (kdlab.models.families): tiny random models of every family built in code, no downloads.

For every family: the attention kdlab captures equals the model's own eager ``output_attentions`` in eval mode;
a student that copies all teacher layers reproduces the teacher's logits exactly; kd, pkd-skip, tinybert, minilm,
internal-all and mobilebert train 3 steps. One teacher per family is shared by its tests.
"""
from __future__ import annotations

import functools

import pytest
import torch

from kdlab.models import families
from kdlab.errors import KdlabError
from kdlab.models.features import features
from kdlab.records import Need

FAMILIES = ["bert", "roberta", "electra", "distilbert", "deberta-v2", "modernbert", "mpnet"]
METHODS = ["kd", "pkd-skip", "tinybert", "minilm", "internal-all", "mobilebert"]


@functools.lru_cache(maxsize=None)
def _teacher(arch):
    from kdlab.models.core import tiny_model
    return tiny_model(2, seed=0, arch=arch)


@functools.lru_cache(maxsize=None)
def _bundle():
    from kdlab.data.loaders import load_data
    return load_data(None, max_train=12, max_eval=4)


def _batch(tok):
    enc = tok(["a truly good movie , i loved it", "bad", "not great at all"], padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask")}


def test_the_seven_families_are_known():
    assert set(FAMILIES) <= set(families.names())


@pytest.mark.parametrize("arch", FAMILIES)
def test_captured_attention_equals_the_models_own_maps(arch):
    teacher, tok = _teacher(arch)
    model = teacher.eval()
    b = _batch(tok)
    with torch.no_grad():
        f = features(model, b, Need(hidden=True, qkv=True))
        fam = families.of(model)
        if fam.interface:
            model.set_attn_implementation("eager")   # the family's own eager attention, not kdlab's
        ref = model(**b, output_attentions=True)
    assert getattr(model.config, "_attn_implementation") == "eager"
    assert len(f.maps) == len(ref.attentions) == model.config.num_hidden_layers
    for got, want in zip(f.maps, ref.attentions):
        assert got["probs"].shape == want.shape
        assert torch.allclose(got["probs"], want, atol=1e-5), arch
    assert torch.allclose(f.logits, ref.logits, atol=1e-6)
    # the raw scores (relative-position / rotary terms included) give the same maps; ModernBERT's sliding-window
    # layers mask more than the padding, so only its global layers are checked this way
    types = getattr(model.config, "layer_types", None) or ["full_attention"] * len(f.maps)
    pad = (b["attention_mask"] == 0)[:, None, None, :]
    rows = b["attention_mask"].bool()[:, None, :, None].expand_as(f.maps[0]["probs"])   # real query rows
    for layer, kind in zip(f.maps, types):
        if kind == "full_attention":
            p = torch.softmax(layer["scores"].masked_fill(pad, float("-inf")), -1)
            assert torch.allclose(p[rows], layer["probs"][rows], atol=1e-5), arch


@pytest.mark.parametrize("arch", FAMILIES)
def test_copying_all_layers_reproduces_the_teacher(arch):
    from kdlab.models.core import build_student, student_from_teacher
    teacher, tok = _teacher(arch)
    teacher.eval()
    n = teacher.config.num_hidden_layers
    b = _batch(tok)
    with torch.no_grad():
        want = teacher(**b, output_hidden_states=True)   # a teacher that ran carries transformers' output hooks
    student = student_from_teacher(teacher, list(range(n))).eval()
    with torch.no_grad():
        got = student(**b, output_hidden_states=True)
    assert torch.equal(got.logits, want.logits), arch
    assert len(got.hidden_states) == n + 1
    half = build_student(teacher, layers=2)   # a copied 2-layer student holds the teacher's layers 1 and 3 (skip)
    assert half.config.num_hidden_layers == len(families.layers(half)) == 2
    t_layers, s_layers = families.layers(teacher), families.layers(half)
    for pos, i in enumerate([1, 3]):
        for (na, a), (nb, c) in zip(t_layers[i].state_dict().items(), s_layers[pos].state_dict().items()):
            assert na == nb and torch.equal(a, c)
    assert all(p.requires_grad for p in half.parameters())
    with torch.no_grad():
        assert len(half(**b, output_hidden_states=True).hidden_states) == 3


@pytest.mark.parametrize("arch", FAMILIES)
def test_methods_train_three_steps_on_every_family(arch):
    from kdlab.config import TrainConfig
    from kdlab.engine.distill import train
    from kdlab.models.core import build_student
    teacher, tok = _teacher(arch)
    cfg = TrainConfig(epochs=1, max_steps=3, batch_size=4, max_len=24, progress=False, eval_each_epoch=False,
                      checkpoint_each_epoch=False, device="cpu")
    for method in METHODS:
        student = build_student(teacher, layers=2)
        args = {"stage_steps": 1} if method == "mobilebert" else {}
        res = train(student, tok, _bundle(), method, teacher=teacher, cfg=cfg, method_args=args)
        assert res.status == "finished" and res.steps == 3, (arch, method, res.message)


def test_unknown_architecture_is_one_clear_line():
    from transformers import AlbertConfig, AlbertForSequenceClassification
    model = AlbertForSequenceClassification(AlbertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                         num_attention_heads=2, intermediate_size=32,
                                                         embedding_size=8))
    with pytest.raises(KdlabError, match=r"no adapter for the architecture 'albert'.*bert, roberta.*table\.py"):
        families.of(model)
    with pytest.raises(KdlabError, match="unknown model family 'gpt'"):
        families.get("gpt")


def test_arch_option_builds_the_tiny_teacher_of_the_family():
    from kdlab.cli import build_parser, config_from_args
    from kdlab.config import build_config
    a = build_parser().parse_args(["distill", "--preset", "tiny", "--arch", "deberta-v2", "--method", "kd"])
    assert config_from_args(a).teacher == "tiny-deberta-v2"
    a = build_parser().parse_args(["teacher", "--preset", "tiny", "--arch", "mpnet"])
    assert config_from_args(a).teacher == "tiny-mpnet"
    assert build_config(preset="tiny", arch="bert").teacher == "tiny"
    with pytest.raises(KdlabError, match="unknown model family 'gpt2'"):
        build_config(preset="tiny", arch="gpt2")
    with pytest.raises(KdlabError, match="drop --arch"):
        build_config(teacher="minilm-l6", arch="roberta")


def test_modernbert_student_starting_at_a_deeper_layer_reloads_unchanged(tmp_path):
    from kdlab.models.core import load_saved, student_from_teacher
    teacher, tok = _teacher("modernbert")
    student = student_from_teacher(teacher, [1, 3]).eval()   # layer 1 keeps its attention norm at position 0
    student.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    again, _ = load_saved(tmp_path)
    b = _batch(tok)
    with torch.no_grad():
        assert torch.allclose(again.eval()(**b).logits, student(**b).logits, atol=1e-6)


@pytest.mark.parametrize("arch", ["distilbert", "deberta-v2", "modernbert"])
def test_srrd_refuses_a_head_it_cannot_reproduce(arch):
    from kdlab.methods.srrd import teacher_head
    with pytest.raises(KdlabError, match="srrd needs"):
        teacher_head(_teacher(arch)[0])
