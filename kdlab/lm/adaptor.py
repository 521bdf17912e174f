"""Causal language models as a task of the one training loop (``kdlab.engine.distill.train``): their batches, their
models' outputs and their metrics. The losses are methods (``kdlab.methods.lm``).

* ``LMBundle`` is what the loop reads as its data: ``train`` the encoded training examples (``kdlab.lm.data``),
  the evaluation splits ``dev`` (the in-domain held-out split) and every other domain by name, ``identity`` and
  ``adaptor``, the loop's task hooks; ``eval_teacher`` is the live teacher the evaluation compares the student with
  (None when the two vocabularies differ).
* ``LMAdaptor``: a batch is ``--batch-size`` examples, right-padded (``kdlab.lm.batches``: ``input_ids``,
  ``attention_mask``, ``target_mask`` and ``idx``), in an order drawn from the epoch's seed; its evaluation is
  perplexity per split, with the teacher token KL, top-1 agreement and tokens per second (``kdlab.lm.metrics``),
  and it keeps each example's summed NLL and scored tokens in ``predictions.npz`` for a study's token-weighted
  paired bootstrap (``kdlab.lm.study``).
* ``CausalLM``: a transformers causal LM as a model of the loop: ``kd_features`` (next-token logits [B, L, V] and,
  when a hidden-state term asks, the raw decoder-layer outputs), ``on_policy`` (gkd: some of a batch's sequences
  continued by the model itself), ``save_pretrained`` (the inner model's: checkpoints and saved runs are ordinary
  causal LM folders). As a teacher it is never in the per-example cache (its outputs are [L, V] per example).
"""
from __future__ import annotations

import contextlib
import copy
import os

import numpy as np
import torch
from torch import nn

from ..records import Features
from ..tasks import get_task
from .batches import batches, collate
from .data import Encoded, Row, encode
from .generate import continue_prompts, prompt_of
from .metrics import evaluate_lm

TASK = "lm"


# ---------------------------------------------------------------------------------------------- models
@contextlib.contextmanager
def layer_outputs(model):
    """The outputs of the model's decoder layers in order, captured by forward hooks during the block (raw layer
    outputs: transformers' last ``hidden_states`` entry is after the final norm, so it is not used)."""
    from .models import _layers
    outs: list = []

    def keep(_module, _inputs, out):
        outs.append(out[0] if isinstance(out, tuple) else out)
    hooks = [layer.register_forward_hook(keep) for layer in _layers(model)]
    try:
        yield outs
    finally:
        for h in hooks:
            h.remove()


class CausalLM(nn.Module):
    """A causal LM (``model``, its ``tokenizer``, the run's context ``max_len``) as the loop's student or teacher;
    ``copied_from``: the 0-based teacher layers a student was copied from (the W of the hidden-state term)."""
    uncached = True

    def __init__(self, model, tokenizer, max_len: int, copied_from=None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        self.copied_from = list(copied_from) if copied_from else None

    @property
    def config(self):
        return self.model.config

    def forward(self, *args, **kw):
        return self.model(*args, **kw)

    def save_pretrained(self, folder, **kw):
        return self.model.save_pretrained(folder, **kw)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also the inner model's own state dict: the checkpoint of an LM run written before LM runs went through
        the one loop (its student was the bare model), so such a run can still be resumed."""
        if set(state_dict) == set(self.model.state_dict()):
            return self.model.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def kd_features(self, batch: dict, need) -> Features:
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = None
        if need.hidden:
            with layer_outputs(self.model) as outs:
                out = self.model(**args, output_hidden_states=True)
            hidden = [out.hidden_states[0], *outs]
        else:
            out = self.model(**args)
        return Features(logits=out.logits, mask=batch["attention_mask"], hidden=hidden,
                        heads=int(getattr(self.config, "num_attention_heads", 0) or 0))

    @property
    def ids(self) -> dict:
        pad = self.tokenizer.pad_token_id
        return {"pad": 0 if pad is None else pad, "eos": self.tokenizer.eos_token_id}

    def continuations(self, examples, *, gen_len: int, prompt_tokens: int, sample: bool, seed: int) -> list:
        """[Encoded]: each example's prompt (``prompt_of``) continued by this model (greedy, or sampled)."""
        return continue_prompts(self.model, [prompt_of(e, prompt_tokens) for e in examples], pad_id=self.ids["pad"],
                                eos_id=self.ids["eos"], max_new=gen_len, max_len=self.max_len, sample=sample,
                                device=next(self.parameters()).device, seed=seed)

    def on_policy(self, batch: dict, rows, *, max_new: int, prompt_tokens: int, seed: int) -> dict:
        """The batch with its sequences ``rows`` replaced by this model's sampled continuation of their prompt
        (the others as they are), padded again; ``idx`` kept."""
        ids, att, tgt = batch["input_ids"], batch["attention_mask"], batch["target_mask"]
        examples = []
        for i in range(ids.shape[0]):
            n = int(att[i].sum())
            first = int(torch.nonzero(tgt[i])[0]) + 1 if tgt[i].any() else 1
            examples.append(Encoded(ids[i, :n].tolist(), first if first > 1 else 0))
        gen = self.continuations([examples[i] for i in rows], gen_len=max_new, prompt_tokens=prompt_tokens,
                                 sample=True, seed=seed)
        for i, g in zip(rows, gen):
            examples[i] = g
        out = {k: v.to(ids.device) for k, v in collate(examples, self.ids["pad"]).items()}
        if "idx" in batch:
            out["idx"] = batch["idx"]
        return out


# ---------------------------------------------------------------------------------------------- data
def split_name(domain: str) -> str:
    """The evaluation split of a corpus domain: ``dev`` in domain, else the domain's name."""
    return "dev" if domain == "in-domain" else domain


class LMBundle:
    """The loop's data for an LM run (see the module docstring): ``corpus`` (``kdlab.lm.data.LMCorpus``) encoded
    with ``tokenizer`` to ``max_len`` tokens; ``log``: the run's log (what ``continued_by`` reports)."""

    def __init__(self, corpus, tokenizer, max_len: int, *, identity: str, eval_batch: int = 32, eval_teacher=None,
                 log=print):
        self.corpus, self.tokenizer, self.max_len = corpus, tokenizer, int(max_len)
        self.train = encode(corpus.train, tokenizer, max_len, what="the training corpus")
        self.splits = {split_name(d): encode(rows, tokenizer, max_len, what=f"the {d} evaluation set")
                       for d, rows in corpus.eval_splits().items()}
        self.task = get_task(TASK)
        self.identity = identity
        self.eval_batch = int(eval_batch)
        self.eval_teacher = eval_teacher
        self.log = log
        self.adaptor = LMAdaptor(self)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def num_labels(self) -> int:
        return len(self.tokenizer)   # next-token prediction: a class per token

    def eval_splits(self) -> dict:
        return dict(self.splits)

    def continued_by(self, teacher: CausalLM, *, gen_len: int, prompt_tokens: int, seed: int) -> "LMBundle":
        """This bundle with the training examples replaced by ``teacher``'s greedy continuations of their prompts
        (sequence-level KD), decoded and encoded again when the student tokenizes differently."""
        t_tok = teacher.tokenizer
        same = t_tok is self.tokenizer
        t_train = self.train if same else encode(self.corpus.train, t_tok, self.max_len, what="the training corpus")
        self.log(f"seq-kd: the teacher continues {len(t_train)} prompts (greedy, up to {gen_len} tokens)")
        gen = teacher.continuations(t_train, gen_len=gen_len, prompt_tokens=prompt_tokens, sample=False, seed=seed)
        if not same:
            rows = [Row(t_tok.decode(g.ids[:g.n_prompt], skip_special_tokens=True),
                        " " + t_tok.decode(g.ids[g.n_prompt:], skip_special_tokens=True)) for g in gen]
            gen = encode(rows, self.tokenizer, self.max_len, what="the teacher's continuations")
        out = copy.copy(self)
        out.train = gen
        out.adaptor = LMAdaptor(out)
        return out


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_splits(model, splits: dict, pad_id: int, *, teacher=None, batch_size: int = 32, device="cpu"):
    """({split: {perplexity, tokens, tokens_per_s, and with ``teacher`` teacher_perplexity, token_kl,
    top1_agreement, teacher_tokens_per_s}}, {split: (each example's summed NLL, its scored tokens)})."""
    evals, outputs = {}, {}
    for split, examples in splits.items():
        m = evaluate_lm(model, examples, pad_id, teacher=teacher, batch_size=batch_size, device=device,
                        per_example=True)
        outputs[split] = (m.pop("example_nll"), m.pop("example_tokens"))
        evals[split] = m
    return evals, outputs


def save_predictions(path, outputs: dict):
    """Per split ``<split>/nll`` (each example's summed next-token NLL) and ``<split>/labels`` (its scored
    tokens: the same examples in every run of a study), written atomically."""
    arrays = {}
    for split, (nll, tokens) in outputs.items():
        arrays[f"{split}/nll"] = np.asarray(nll, dtype=np.float64)
        arrays[f"{split}/labels"] = np.asarray(tokens, dtype=np.int64)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


class LMAdaptor:
    """The loop's task hooks for causal LMs (``kdlab.engine.distill.Adaptor`` is the classification one)."""

    def __init__(self, bundle: LMBundle):
        self.bundle = bundle

    def batch_rows(self, cfg) -> int:
        return cfg.batch_size

    def loader(self, loop, seed: int):
        """The epoch's padded batches (with ``idx``), in an order drawn from ``seed``."""
        b = self.bundle
        order = np.random.default_rng(seed).permutation(len(b.train))
        yield from batches(b.train, b.pad_id, loop.cfg.batch_size, order)

    def teacher_outputs(self, loop):
        return None   # the evaluation runs the teacher itself (token KL, top-1 agreement)

    def evaluate(self, loop):
        b = self.bundle
        model = getattr(loop.student, "model", loop.student)
        return evaluate_splits(model, b.splits, b.pad_id, teacher=b.eval_teacher, batch_size=b.eval_batch,
                               device=loop.device)

    def save_predictions(self, path, loop, outputs):
        save_predictions(path, outputs)
