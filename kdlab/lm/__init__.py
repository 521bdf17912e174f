"""Causal language models as a problem shape of kdlab (``kdlab distill --task lm``).

* ``kdlab.lm.losses``: token-level objectives over the full vocabulary (forward KL with T², reverse KL,
  generalized JSD(beta), TVD), computed in chunks of positions, with padding and prompt masks.
* ``kdlab.lm.models``: the tiny random Llama-style teacher built in code, students copied from teacher layers,
  teachers by name or folder (``smollm2-135m``: ``kdlab.lm.smollm``).
* ``kdlab.lm.data``: a prompt/completion or plain-text corpus (txt/jsonl) with an embedded default.
* ``kdlab.lm.metrics``: perplexity, teacher-student token KL, top-1 agreement.
* ``kdlab.lm.train``: the LM training loop and evaluation, stored in the run store like every run.
"""
