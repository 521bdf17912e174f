"""Teacher-output cache: cached features equal live ones under re-padding and shuffling; the key changes
with teacher weights, data, tokenizer settings; the size cap; auto mode only when exact."""
import torch

from kdlab.speed.cache import TeacherCache, should_cache, teacher_identity
from kdlab.data.batching import make_loader
from kdlab.data.loaders import load_data
from kdlab.models.features import Need, features
from kdlab.methods.basic import HiddenKD, KD
from kdlab.models.core import freeze, tiny_model


def _setup():
    teacher, tok = tiny_model(2, seed=0)
    freeze(teacher)
    bundle = load_data(None, max_train=24, max_eval=8)
    return teacher, tok, bundle


def test_cached_equals_live_across_shuffles_and_padding():
    teacher, tok, bundle = _setup()
    need = Need(hidden=True, attentions=False)
    cache = TeacherCache("k")
    with torch.inference_mode():
        for b in make_loader(bundle.train, tok, batch_size=8, max_len=32, shuffle=True, seed=1):
            cache.put(b, features(teacher, b, need), need)
        assert len(cache) == 24
        for b in make_loader(bundle.train, tok, batch_size=5, max_len=32, shuffle=True, seed=2):
            live, got = features(teacher, b, need), cache.get(b, need)
            assert got is not None
            assert torch.allclose(got.logits, live.logits, atol=1e-5)
            m = b["attention_mask"].bool()
            for hl, hc in zip(live.hidden, got.hidden):
                assert torch.allclose(hl[m], hc[m], atol=1e-5)
    assert cache.hits == 5 and cache.misses == 0
    assert cache.get(b, Need(attentions=True)) is None   # attentions were never cached


def test_identity_changes_with_teacher_data_and_max_len():
    teacher, tok, bundle = _setup()
    base = teacher_identity(teacher, tok, bundle.train, bundle.identity, 32)
    assert base == teacher_identity(teacher, tok, bundle.train, bundle.identity, 32)
    assert base != teacher_identity(teacher, tok, bundle.train, bundle.identity, 48)
    assert base != teacher_identity(teacher, tok, bundle.dev, bundle.identity, 32)
    with torch.no_grad():
        next(teacher.parameters()).add_(1e-3)
    assert base != teacher_identity(teacher, tok, bundle.train, bundle.identity, 32)


def test_size_cap_and_auto_rules():
    teacher, tok, bundle = _setup()
    need = Need(hidden=True)
    cache = TeacherCache("k", max_mb=0.05)
    with torch.inference_mode():
        for b in make_loader(bundle.train, tok, batch_size=8, max_len=32):
            cache.put(b, features(teacher, b, need), need)
    assert cache.full and 0 < len(cache) < 24 and cache.bytes <= 0.05 * 2 ** 20
    kd = KD.__new__(KD)
    torch.nn.Module.__init__(kd)
    kd.hp, kd.trains_teacher = {}, False
    assert should_cache("auto", teacher=teacher, method=kd, need=need)[0]
    assert not should_cache("auto", teacher=teacher, method=kd, need=need, dtype="fp16")[0]
    assert should_cache("on", teacher=teacher, method=kd, need=need, dtype="fp16")[0]
    assert not should_cache("off", teacher=teacher, method=kd, need=need)[0]
    assert not should_cache("auto", teacher=teacher, method=kd, need=Need(qkv=True))[0]
    teacher.train()
    assert not should_cache("auto", teacher=teacher, method=kd, need=need)[0]


def test_training_with_cache_matches_live(tmp_path):
    from kdlab.speed import cache as cache_mod
    from kdlab.config import TrainConfig
    from kdlab.engine.distill import train
    from kdlab.models.core import build_student
    results = {}
    for mode in ("off", "on"):
        cache_mod.clear()
        teacher, tok = tiny_model(2, seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        bundle = load_data(None, max_train=16, max_eval=8)
        student = build_student(teacher, layers=2)
        cfg = TrainConfig(epochs=2, batch_size=8, max_len=32, lr=1e-3, progress=False, eval_each_epoch=False,
                          teacher_cache=mode, device="cpu")
        train(student, tok, bundle, "hidden", teacher=teacher, cfg=cfg)
        results[mode] = {k: v.clone() for k, v in student.state_dict().items()}
        if mode == "on":
            st = cache_mod._SHARED["cache"].stats()
            assert st["entries"] == 16 and st["hits"] == 2 and st["misses"] == 2
    for k in results["off"]:
        assert torch.allclose(results["off"][k], results["on"][k], atol=1e-4), k
