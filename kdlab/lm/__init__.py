"""Causal language models as a problem shape of kdlab (``kdlab distill --task lm``).

* ``kdlab.lm.adaptor``: LM runs as a task of the one training loop (``kdlab.engine.distill``): the bundle, the
  batches, the evaluation and the causal LM as a module of the loop. The objectives are registered methods
  (``kdlab.methods.lm``) over the losses of ``kdlab.kd.lm`` (forward KL with T², reverse KL, generalized
  JSD(beta), TVD in chunks of positions, next-token CE, the hidden-state MSE).
* ``kdlab.lm.models``: the tiny random Llama-style teacher built in code, students copied from teacher layers,
  teachers by name or folder (``smollm2-135m``: ``kdlab.lm.smollm``).
* ``kdlab.lm.data``: a prompt/completion or plain-text corpus (txt/jsonl) with an embedded default.
* ``kdlab.lm.metrics``: perplexity, teacher-student token KL, top-1 agreement.
* ``kdlab.lm.train``: an LM run (teacher, student, the loop, the stored run) and ``kdlab eval`` of one.
"""
