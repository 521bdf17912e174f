"""Length buckets: the plan is the cheapest split (checked by brute force), bucketed features equal the padded
forward at real positions (zeros at padding), gradients match, and the loop turns buckets off where a loss
reads padding."""
import itertools

import pytest
import torch

from kdlab.speed import buckets
from kdlab.speed.cache import should_cache
from kdlab.config import TrainConfig
from kdlab.data.batching import make_loader
from kdlab.data.loaders import load_data
from kdlab.errors import KdlabError
from kdlab.models.features import Need, features
from kdlab.methods.base import Context, State
from kdlab.methods.basic import HiddenKD
from kdlab.models.core import ModelInfo, build_student, freeze, tiny_model


def _cost(groups, lengths, overhead):
    return sum(len(rows) * n for rows, n in groups) + overhead * len(groups)


def _brute(lengths, overhead, k):
    ls = sorted(lengths, reverse=True)
    best = float("inf")
    B = len(ls)
    for g in range(1, min(k, B) + 1):
        for cuts in itertools.combinations(range(1, B), g - 1):
            bounds = (0,) + cuts + (B,)
            c = sum((bounds[i + 1] - bounds[i]) * ls[bounds[i]] + overhead for i in range(g))
            best = min(best, c)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_plan_is_the_cheapest_split_and_covers_every_row(seed):
    g = torch.Generator().manual_seed(seed)
    B = int(torch.randint(1, 9, (1,), generator=g))
    lengths = torch.randint(1, 40, (B,), generator=g).tolist()
    overhead, k = float(torch.randint(0, 60, (1,), generator=g)), 1 + seed % 4
    groups = buckets.plan(lengths, overhead=overhead, max_groups=k)
    rows = sorted(r for rs, _ in groups for r in rs)
    assert rows == list(range(B))
    assert len(groups) <= k
    assert all(n == max(lengths[r] for r in rs) for rs, n in groups)
    assert _cost(groups, lengths, overhead) == pytest.approx(_brute(lengths, overhead, k))


def test_plan_keeps_equal_lengths_together_and_splits_long_and_short():
    assert buckets.plan([7] * 10) == [(list(range(10)), 7)]
    groups = buckets.plan([60, 5, 6, 61, 4, 5, 5, 6], overhead=10)
    assert sorted(map(sorted, (rs for rs, _ in groups))) == [[0, 3], [1, 2, 4, 5, 6, 7]]


def test_right_padded():
    assert buckets.right_padded(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert not buckets.right_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))   # left padding
    assert not buckets.right_padded(torch.tensor([[1, 0, 1]]))


def test_enabled_modes():
    assert buckets.enabled("auto", "cpu") and buckets.enabled("on", "cpu") and not buckets.enabled("off", "cpu")
    assert not buckets.enabled("auto", "cuda")
    with pytest.raises(KdlabError, match="length-buckets"):
        TrainConfig(length_buckets="sometimes").validate()


def _batch(tok, n=6, max_len=32):
    bundle = load_data(None, max_train=24, max_eval=8)
    b = next(iter(make_loader(bundle.train, tok, batch_size=n, max_len=max_len, shuffle=True, seed=3)))
    L = b["input_ids"].shape[1]
    pad = 7   # extra padding columns, as a loader padding to a fixed length would give
    b["input_ids"] = torch.cat([b["input_ids"], torch.zeros(n, pad, dtype=torch.long)], 1)
    b["attention_mask"] = torch.cat([b["attention_mask"], torch.zeros(n, pad, dtype=torch.long)], 1)
    assert b["input_ids"].shape[1] == L + pad
    return b


def test_bucketed_features_equal_the_padded_forward_at_real_positions():
    teacher, tok = tiny_model(2, seed=0)
    freeze(teacher)
    b = _batch(tok)
    need = Need(hidden=True, attentions=True, qkv=True)
    with torch.inference_mode():
        full = features(teacher, b, need)
        got = features(teacher, b, need, bucketed=True)
    m = b["attention_mask"].bool()
    longest = int(m.sum(1).max())
    assert got.logits.shape == full.logits.shape and torch.allclose(got.logits, full.logits, atol=1e-5)
    assert len(got.hidden) == len(full.hidden)
    for a, c in zip(full.hidden, got.hidden):
        assert a.shape == c.shape
        assert torch.allclose(a[m], c[m], atol=1e-5)
        assert c[:, longest:].abs().max() == 0   # never computed: past every row, zeros
    q = m[:, None, :, None] & m[:, None, None, :]
    for a, c in zip(full.attentions, got.attentions):
        assert a.shape == c.shape
        assert torch.allclose(a.expand_as(c)[q.expand_as(c)], c[q.expand_as(c)], atol=1e-5)
    assert got.mask is b["attention_mask"]
    assert len(got.qkv) == len(full.qkv) == teacher.config.num_hidden_layers
    for a3, c3 in zip(full.qkv, got.qkv):
        for a, c in zip(a3, c3):
            assert a.shape == c.shape and torch.allclose(a[m], c[m], atol=1e-5)
    # attention maps rebuilt from the re-padded q/k equal the padded forward's at real (query, key) pairs
    from kdlab.kd import attention
    for a3, c3 in zip(full.qkv, got.qkv):
        s_full = attention.scores(a3[0], a3[1], full.heads, b["attention_mask"])
        s_got = attention.scores(c3[0], c3[1], got.heads, b["attention_mask"])
        assert torch.allclose(s_full[q.expand_as(s_full)], s_got[q.expand_as(s_got)], atol=1e-4)


def test_left_padded_batches_run_as_they_are():
    teacher, tok = tiny_model(2, seed=0)
    freeze(teacher)
    b = _batch(tok)
    b = {k: (v.flip(1) if k in ("input_ids", "attention_mask") else v) for k, v in b.items()}
    assert buckets.run(lambda s: features(teacher, s, Need()), b) is None


def test_student_gradients_match_the_padded_step():
    teacher, tok = tiny_model(2, seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    freeze(teacher)
    b = _batch(tok)
    grads = []
    for bk in (False, True):
        torch.manual_seed(0)
        student = build_student(teacher, layers=2).train()
        ctx = Context(teacher=ModelInfo.of(teacher), student=ModelInfo.of(student), num_labels=2)
        method = HiddenKD(ctx)
        st = State()
        s_need, t_need = method.need(st)
        with torch.inference_mode():
            tf = features(teacher, b, t_need, bk)
        tf = type(tf)(tf.logits.clone(), tf.mask, [h.clone() for h in tf.hidden], None, None, tf.heads)
        loss, _ = method.loss(features(student, b, s_need, bk), tf, b, st)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4), n


def test_a_method_reading_padding_gets_neither_buckets_nor_cache():
    from kdlab.methods.tinybert import TinyBERT
    teacher, _ = tiny_model(2, seed=0)
    student = build_student(teacher, layers=2)
    ctx = Context(teacher=ModelInfo.of(teacher), student=ModelInfo.of(student), num_labels=2)
    ref = TinyBERT(ctx, mask_padding=False)
    assert ref.uses_padding and not TinyBERT(ctx).uses_padding
    use, why = should_cache("on", teacher=freeze(teacher), method=ref, need=Need(hidden=True))
    assert not use and "padded" in why


def test_evaluation_logits_are_the_same_with_and_without_buckets():
    from kdlab.analysis.evaluate import predict
    teacher, tok = tiny_model(2, seed=0)
    bundle = load_data(None, max_train=8, max_eval=40)
    split = bundle.dev
    on = predict(teacher, split, tok, batch_size=16, max_len=32, length_buckets="on")
    off = predict(teacher, split, tok, batch_size=16, max_len=32, length_buckets="off")
    assert on.shape == off.shape == (len(split.labels), 2)
    assert abs(on - off).max() < 1e-5


def test_freed_memory_is_reused_across_training_steps():
    """With kdlab.speed.alloc on, a training step with a MiniLM-sized word-embedding table (30,522 x 384: a 47 MB
    dense gradient each step) reuses freed memory instead of page-faulting fresh pages. Fresh processes, as a
    run starts; a random model built in code."""
    import json
    import os
    import platform
    import subprocess
    import sys
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = (
        "import json, resource, torch\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "from kdlab.speed import alloc\n"
        "from kdlab.engine.distill import make_optimizer\n"
        "on = alloc.keep_freed_memory()\n"
        "torch.manual_seed(0); torch.set_num_threads(1)\n"
        "m = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=1,\n"
        "    num_attention_heads=12, intermediate_size=1536, num_labels=2))\n"
        "opt = make_optimizer([{'params': list(m.parameters()), 'weight_decay': 0.0}], 1e-5)\n"
        "ids = torch.randint(0, 30522, (8, 16)); y = torch.zeros(8, dtype=torch.long)\n"
        "fl = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "def step():\n"
        "    m(input_ids=ids, labels=y).loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)\n"
        "step(); step()\n"
        "b = fl()\n"
        "for _ in range(3): step()\n"
        "print(json.dumps([on, (fl() - b) / 3]))\n")
    out = {}
    for keep in ("1", "0"):
        env = {**os.environ, "KDLAB_KEEP_MEMORY": keep}
        for _ in range(2):   # the fewer faults of two runs: another process on the machine can add faults to one
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
            got = json.loads(r.stdout.strip().splitlines()[-1])
            out[keep] = got if keep not in out or got[1] < out[keep][1] else out[keep]
    pages = 30522 * 384 * 4 // 4096   # the embedding gradient's pages
    assert out["0"][0] is False and out["0"][1] > 0.9 * pages, out   # off: its pages fault every step
    assert out["1"][0] is True and out["1"][1] < pages / 4, out      # on: the freed block is reused
