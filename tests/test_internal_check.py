"""The internal-representation check (kdlab.analysis.internal_check): a student that copies every teacher layer has no gap;
another student's gap at a pair equals the losses computed directly on one batch."""
import torch

from kdlab.kd import losses
from kdlab.config import RunConfig, apply_preset
from kdlab.data.batching import make_loader
from kdlab.models.features import Need, features
from kdlab.analysis.internal_check import matched_gaps, uniform_pairs
from kdlab.models.core import build_student, set_attention, tiny_model
from kdlab.engine.pipeline import load_bundle


def test_matched_gaps():
    teacher, tok = tiny_model(2, seed=1)
    set_attention(teacher, True)
    dev = load_bundle(apply_preset(RunConfig(preset="tiny", max_train=16, max_eval=12))).dev
    copy = build_student(teacher, layers=4, init="first")
    same = matched_gaps(teacher, copy, tok, dev, max_examples=12, max_len=32)
    assert same["mean"]["attention_kl"] < 1e-6 and same["mean"]["cls_cosine"] < 1e-6
    assert uniform_pairs(2, 4) == [(1, 2), (2, 4)]
    other = build_student(teacher, layers=2, init="fresh", seed=3)
    got = matched_gaps(teacher, other, tok, dev, max_examples=12, batch_size=12, max_len=32)
    batch = next(iter(make_loader(dev, tok, batch_size=12, max_len=32)))
    teacher.eval(), other.eval()
    with torch.no_grad():
        ft, fs = (features(m, batch, Need(hidden=True, attentions=True)) for m in (teacher, other))
    want_kl = float(losses.attention_kl(fs.attentions[0], ft.attentions[1], batch["attention_mask"]))
    want_cos = float(losses.cls_cosine(fs.cls(1), ft.cls(2)))
    assert abs(got["s1-t2"]["attention_kl"] - want_kl) < 1e-5 and want_kl > 1e-5
    assert abs(got["s1-t2"]["cls_cosine"] - want_cos) < 1e-5
    assert abs(got["mean"]["cls_cosine"] - (got["s1-t2"]["cls_cosine"] + got["s2-t4"]["cls_cosine"]) / 2) < 1e-9
