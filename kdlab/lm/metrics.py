"""LM evaluation: perplexity of the scored (completion) tokens, teacher-student token KL and top-1 agreement,
tokens per second."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .batches import batches


@torch.no_grad()
def evaluate_lm(student, examples, pad_id: int, *, teacher=None, batch_size: int = 32, device="cpu",
                per_example: bool = False) -> dict:
    """{perplexity, tokens, tokens_per_s} of ``student`` on the encoded ``examples``; with ``teacher`` also
    ``teacher_perplexity``, ``token_kl`` (forward KL(teacher || student) per scored token, nats) and
    ``top1_agreement`` (the share of scored positions where both predict the same next token).
    ``per_example``: also ``example_nll`` and ``example_tokens`` (numpy arrays in the order of ``examples``: each
    example's summed next-token NLL and its number of scored tokens; perplexity = exp(sum nll / sum tokens))."""
    student.eval()
    if teacher is not None:
        teacher.eval()
    nll = t_nll = kl = agree = 0.0
    n, seconds, t_seconds = 0, 0.0, 0.0
    ex_nll, ex_tok = [], []
    for b in batches(examples, pad_id, batch_size):
        b = {k: v.to(device) for k, v in b.items()}
        t0 = time.perf_counter()
        s_logits = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
        seconds += time.perf_counter() - t0
        m = b["target_mask"].bool()
        tgt = b["input_ids"][:, 1:]
        ls = F.log_softmax(s_logits[m], -1)
        tok_nll = -ls.gather(1, tgt[m][:, None])[:, 0]
        nll += tok_nll.sum().item()
        n += int(m.sum())
        if per_example:   # each row's scored tokens, summed per row
            rows = m.nonzero()[:, 0]
            ex_nll.append(torch.zeros(m.shape[0], dtype=torch.float64, device=rows.device)
                          .index_add_(0, rows, tok_nll.double()).cpu())
            ex_tok.append(m.sum(1).cpu())
        if teacher is not None:
            t0 = time.perf_counter()
            t_logits = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            t_seconds += time.perf_counter() - t0
            lt = F.log_softmax(t_logits[m], -1)
            t_nll += -lt.gather(1, tgt[m][:, None]).sum().item()
            kl += (lt.exp() * (lt - ls)).sum().item()
            agree += (lt.argmax(-1) == ls.argmax(-1)).sum().item()
    tokens = sum(len(e.ids) for e in examples)
    out = {"perplexity": math.exp(nll / max(n, 1)), "tokens": n,
           "tokens_per_s": tokens / seconds if seconds else float("nan")}
    if per_example:
        out["example_nll"] = torch.cat(ex_nll).numpy() if ex_nll else np.zeros(0)
        out["example_tokens"] = torch.cat(ex_tok).numpy().astype(np.int64) if ex_tok else np.zeros(0, np.int64)
    if teacher is not None:
        out.update(teacher_perplexity=math.exp(t_nll / max(n, 1)), token_kl=kl / max(n, 1),
                   top1_agreement=agree / max(n, 1),
                   teacher_tokens_per_s=tokens / t_seconds if t_seconds else float("nan"))
    return out
