"""Mixed precision: which autocast dtype ``--precision`` picks (a GPU without bf16 gets fp16), and fp16's
gradient scaler on CPU (torch's CPU autocast runs fp16 and ``GradScaler("cpu")`` exists): a step with inf
gradients is skipped (weights, AdamW's step count and the schedule unchanged), the scale is checkpointed and a
resumed fp16 run ends exactly where an uninterrupted one does, the teacher cache works under fp16, and the run
records the precision it used."""
import json
import shutil

import pytest
import torch

from kdlab.engine import distill
from kdlab.cli import main
from kdlab.config import TrainConfig
from kdlab.data.batching import make_loader
from kdlab.data.loaders import load_data
from kdlab.engine.distill import autocast_dtype, forward_backward, make_scaler, optimizer_step, setup, train
from kdlab.errors import KdlabError
from kdlab.models.core import build_student, tiny_model
from kdlab.speed import cache as cache_mod
from kdlab.runs.store import Store

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _fake_gpu(monkeypatch, bf16: bool):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return bf16 or including_emulation   # a T4: bf16 only emulated
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return calls


@pytest.mark.parametrize("bf16, want", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_picks_bf16_or_fp16_on_cuda(monkeypatch, bf16, want):
    calls = _fake_gpu(monkeypatch, bf16)
    cuda = torch.device("cuda")
    assert autocast_dtype(TrainConfig(precision="auto"), cuda) is want
    assert calls == [False]   # emulated bf16 (a T4 runs it, slowly) does not count
    # explicit choices are taken as given, on any device; auto on CPU is fp32 (no autocast)
    for dev in (cuda, torch.device("cpu")):
        assert autocast_dtype(TrainConfig(precision="bf16"), dev) is torch.bfloat16
        assert autocast_dtype(TrainConfig(precision="fp16"), dev) is torch.float16
        assert autocast_dtype(TrainConfig(precision="fp32"), dev) is None
    assert autocast_dtype(TrainConfig(precision="auto"), torch.device("cpu")) is None
    assert len(calls) == 1
    # only fp16 trains with a gradient scaler
    assert isinstance(make_scaler(torch.float16, torch.device("cpu")), torch.amp.GradScaler)
    assert make_scaler(torch.bfloat16, cuda) is None and make_scaler(None, cuda) is None
    assert distill.precision_name(want) == ("bf16" if bf16 else "fp16")


def test_precision_setting_is_checked():
    for p in ("auto", "fp32", "bf16", "fp16"):
        TrainConfig(precision=p).validate()
    with pytest.raises(KdlabError, match="precision must be auto, fp32, bf16 or fp16"):
        TrainConfig(precision="fp8").validate()


def _loop(precision: str, method: str = "ce", n: int = 16, **cfg):
    teacher, tok = tiny_model(2, seed=0, **NO_DROPOUT)
    student = build_student(teacher, layers=2)
    bundle = load_data(None, max_train=n, max_eval=8)
    c = TrainConfig(epochs=1, batch_size=8, max_len=32, lr=1e-3, warmup=0.0, progress=False,
                    eval_each_epoch=False, device="cpu", precision=precision, **cfg)
    loop = setup(student, tok, bundle, method, teacher=teacher if method != "ce" else None, cfg=c)
    batch = next(iter(make_loader(bundle.train, tok, batch_size=8, max_len=32, shuffle=False)))
    return loop, batch


def test_fp32_and_bf16_have_no_scaler():
    for p, amp in (("fp32", None), ("auto", None), ("bf16", torch.bfloat16)):
        loop, _ = _loop(p)
        assert loop.amp is amp and loop.scaler is None


def test_fp16_step_unscales_and_skips_inf_steps():
    loop, batch = _loop("fp16")
    scaler, params = loop.scaler, [p for p in loop.student.parameters() if p.requires_grad]
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.get_scale() == 2.0 ** 16

    # the backward is scaled by 2^16: divided back, the gradients are the fp32 backward's to fp16's precision, while
    # an unscaled fp16 backward loses the small ones (attention query/key weights) to underflow
    forward_backward(loop, batch)
    scaled = [p.grad / 2 ** 16 for p in params]

    def reference(fp16: bool):
        loop.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            s = distill.features(loop.student, batch, loop.method.need(loop.state)[0])
            loop.method.loss(s, None, batch, loop.state)[0].backward()
        return [p.grad.clone() for p in params]
    fp32, unscaled = reference(False), reference(True)

    def worst(gs):   # the largest relative error of a parameter's gradient (key biases have none: skipped)
        return max(float((g - r).norm() / r.norm()) for g, r in zip(gs, fp32) if r.norm() > 1e-9)
    assert worst(scaled) < 2e-3 and worst(unscaled) > 2e-2
    loop.opt.zero_grad(set_to_none=True)

    # a good step: weights move, AdamW and the schedule count it
    forward_backward(loop, batch)
    before = [p.detach().clone() for p in params]
    assert optimizer_step(loop) is True
    assert any(not torch.equal(b, p) for b, p in zip(before, params))
    adam_step = float(loop.opt.state[params[0]]["step"])
    assert adam_step == 1.0 and loop.sched.last_epoch == 1 and loop.state.step == 1 and loop.skipped_steps == 0

    # an inf gradient (the scale was too large): the step is skipped and the scale halves
    forward_backward(loop, batch)
    params[0].grad[0, 0] = float("inf")
    before = [p.detach().clone() for p in params]
    lr = loop.sched.get_last_lr()[0]
    assert optimizer_step(loop) is False
    assert all(torch.equal(b, p) for b, p in zip(before, params))
    assert float(loop.opt.state[params[0]]["step"]) == adam_step
    assert loop.sched.last_epoch == 1 and loop.sched.get_last_lr()[0] == lr
    assert scaler.get_scale() == 2.0 ** 15
    assert loop.state.step == 2 and loop.skipped_steps == 1   # batches consumed still advance
    assert all(p.grad is None for p in params)   # the skipped step's gradients are dropped


def _tiny_run(tmp_path, name, *, resume=None, keep_at=None, cache="off"):
    """A 2-epoch fp16 run of ``hidden`` KD (4 steps an epoch, a checkpoint every 2 steps); ``keep_at``: (step,
    folder) copies the checkpoint written at that step."""
    teacher, tok = tiny_model(2, seed=0, **NO_DROPOUT)
    student = build_student(teacher, layers=2)
    bundle = load_data(None, max_train=16, max_eval=8)
    cfg = TrainConfig(epochs=2, batch_size=4, max_len=32, lr=1e-3, progress=False, eval_each_epoch=False,
                      device="cpu", precision="fp16", checkpoint_every=2, teacher_cache=cache)
    store = Store(tmp_path / "runs")
    run_id = store.create_run("student", "hidden", {}, name=name)

    def on_step(state, row):
        if keep_at and state.step == keep_at[0]:
            shutil.copytree(store.folder(run_id) / "checkpoint", keep_at[1])
    cache_mod.clear()
    res = train(student, tok, bundle, "hidden", teacher=teacher, cfg=cfg, store=store, run_id=run_id,
                resume=resume, on_step=on_step)
    return res, student, store, run_id


def test_fp16_scaler_is_checkpointed_and_resume_is_exact(tmp_path, monkeypatch, capsys):
    # a scale at the edge of overflow that doubles after every 2 good steps: this run skips steps 1, 2 and 6 and
    # takes 7 and 8 at the scale it checkpointed at step 6 (2^18); a resume that forgot it would restart at 2^20,
    # skip step 7 and end elsewhere
    monkeypatch.setattr(distill, "make_scaler", lambda amp, dev: torch.amp.GradScaler(
        dev.type, init_scale=2.0 ** 20, growth_interval=2) if amp == torch.float16 else None)
    saved = tmp_path / "at-step-6"
    res, straight, store, rid = _tiny_run(tmp_path, "straight", keep_at=(6, saved))   # step 6: epoch 2
    assert res.steps == 8 and res.status == "finished"
    plan = store.artifact(rid, "plan")
    assert plan["precision"] == "fp16" and plan["device"] == "cpu"
    capsys.readouterr()
    assert main(["runs", "--runs", str(store.root)]) == 0
    assert "  precision: fp16 autocast on cpu" in capsys.readouterr().out
    assert main(["runs", "--runs", str(store.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["precision"] == "fp16"
    m = store.metrics_frame(rid)
    skipped = m.set_index("step")["skipped_steps"]
    assert skipped[6] > skipped[5] and skipped[8] == skipped[6]   # step 6 skipped, 7 and 8 taken

    sc = json.loads((saved / "state.json").read_text())["scaler"]
    assert set(sc) == {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
    assert sc["scale"] == m[m.step == 6]["grad_scale"].iloc[0] < 2.0 ** 20
    res2, resumed, _, _ = _tiny_run(tmp_path, "resumed", resume=saved)
    assert res2.steps == 8
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_fp16_with_teacher_cache_matches_live(tmp_path):
    res_live, live, _, _ = _tiny_run(tmp_path, "live", cache="off")
    res_cached, cached, _, _ = _tiny_run(tmp_path, "cached", cache="on")
    st = cache_mod._SHARED["cache"].stats()
    assert st["entries"] == 16 and st["hits"] == 4   # epoch 2 read the teacher from the cache
    for (k, a), b in zip(live.state_dict().items(), cached.state_dict().values()):
        assert torch.isfinite(b).all() and torch.allclose(a, b, atol=1e-3), k
