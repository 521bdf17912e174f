"""Resume of causal LM runs: a run stopped after a mid-epoch checkpoint (its cancel request, the same stop as Ctrl-C
or the dashboard's Cancel) is continued with `distill --resume` and ends with the same per-step losses, perplexity
and weights as the same run uninterrupted."""
import pytest
import torch
from safetensors.torch import load_file

from kdlab.cli import main
from kdlab.runs.store import Store

ARGS = ["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4", "--batch-size", "8",
        "--max-steps", "7", "--checkpoint-every", "3", "--seed", "3", "--quiet"]


def _final(store, rid):
    losses = {r["step"]: r["value"] for r in store.metrics(rid) if r["name"] == "loss"}
    steps = sorted(r["step"] for r in store.metrics(rid) if r["name"] == "loss")
    w = load_file(str(store.folder(rid) / "student" / "model.safetensors"))
    return losses, steps, store.final_evals(rid), w


@pytest.mark.parametrize("method", ["lm-fkl", "gkd"])
def test_stopped_lm_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys, method):
    runs = ["--runs", str(tmp_path), "--method", method]
    assert main([*ARGS, *runs, "--name", "straight"]) == 0
    store = Store(tmp_path)
    straight = next(r["id"] for r in store.runs(kind="student") if r["name"] == "straight")
    assert not (store.folder(straight) / "checkpoint").exists()   # a finished run drops its checkpoint

    real = Store.cancel_requested

    def stop_after_six(self, run_id):   # checked before each step: the run stops before step 7
        if self.run(run_id)["name"] == "stopped":
            return max((r["step"] for r in self.metrics(run_id)), default=0) >= 6
        return real(self, run_id)
    monkeypatch.setattr(Store, "cancel_requested", stop_after_six)
    assert main([*ARGS, *runs, "--name", "stopped"]) != 0
    monkeypatch.setattr(Store, "cancel_requested", real)
    stopped = next(r["id"] for r in store.runs(kind="student") if r["name"] == "stopped")
    assert store.run(stopped)["status"] == "cancelled"
    assert f"distill --resume {stopped}" in capsys.readouterr().err   # the CLI names the command that resumes it
    import json
    state = json.loads((store.folder(stopped) / "checkpoint" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["position"]["batch"]) == (6, 1, 2)   # mid-epoch: 4 steps an epoch

    assert main(["distill", "--resume", stopped, "--runs", str(tmp_path), "--quiet"]) == 0
    assert store.run(stopped)["status"] == "finished"
    loss_a, steps_a, ev_a, w_a = _final(store, straight)
    loss_b, steps_b, ev_b, w_b = _final(store, stopped)
    assert steps_a == steps_b == list(range(1, 8))   # no step lost or logged twice
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6)
    for split in ev_a:
        assert ev_b[split]["perplexity"] == pytest.approx(ev_a[split]["perplexity"], rel=1e-5)
    for k in w_a:
        assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k


def test_a_checkpoint_of_the_bare_model_still_resumes(tmp_path, monkeypatch):
    # LM runs checkpointed their student as the bare causal LM before they went through the one loop (whose student
    # module wraps it): such a checkpoint loads into the wrapper, weights and optimizer state alike
    import json
    from safetensors.torch import save_file
    runs = ["--runs", str(tmp_path), "--method", "lm-fkl"]
    assert main([*ARGS, *runs, "--name", "straight"]) == 0
    store = Store(tmp_path)
    real = Store.cancel_requested
    monkeypatch.setattr(Store, "cancel_requested", lambda self, rid: self.run(rid)["name"] == "bare" and max(
        (r["step"] for r in self.metrics(rid)), default=0) >= 3 or real(self, rid))
    assert main([*ARGS, *runs, "--name", "bare"]) != 0
    monkeypatch.setattr(Store, "cancel_requested", real)
    ids = {r["name"]: r["id"] for r in store.runs(kind="student")}
    ck = store.folder(ids["bare"]) / "checkpoint"
    tensors = load_file(str(ck / "train_state.safetensors"))
    bare = {("student." + k[len("student.model."):] if k.startswith("student.model.") else k): v
            for k, v in tensors.items()}
    assert "student.lm_head.weight" in bare and not any(k.startswith("student.model.lm_head") for k in bare)
    save_file(bare, str(ck / "train_state.safetensors"))
    state = json.loads((ck / "state.json").read_text())
    (ck / "state.json").write_text(json.dumps({**state, "method": "lm", "extra": {}}))
    assert main(["distill", "--resume", ids["bare"], "--runs", str(tmp_path), "--quiet"]) == 0
    loss_a, steps_a, ev_a, _ = _final(store, ids["straight"])
    loss_b, steps_b, ev_b, _ = _final(store, ids["bare"])
    assert steps_b == steps_a == list(range(1, 8)) and loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6)
    assert ev_b["dev"]["perplexity"] == pytest.approx(ev_a["dev"]["perplexity"], rel=1e-5)


def test_checkpoint_of_a_student_with_tied_embeddings_round_trips(tmp_path):
    """A causal LM whose output head shares the input embeddings (SmolLM2 does) checkpoints and loads back exactly,
    with its tie intact (safetensors refuses shared memory, so the tied weight is stored once per name)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from kdlab.methods.base import State
    from kdlab.runs.checkpoint import load_checkpoint, save_checkpoint

    class NoMethod(torch.nn.Module):
        name = "lm-ce"

        def extra_state(self):
            return {}

        def load_extra_state(self, state):
            pass

    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    opt.step()
    save_checkpoint(tmp_path / "ck", model, None, NoMethod(), State(step=1), opt=opt)
    torch.manual_seed(1)
    other = LlamaForCausalLM(cfg)
    opt2 = torch.optim.AdamW(other.parameters(), lr=1e-3)
    load_checkpoint(tmp_path / "ck", other, NoMethod(), opt2, None, State())
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    assert other.lm_head.weight.data_ptr() == other.model.embed_tokens.weight.data_ptr()
