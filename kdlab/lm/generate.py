"""Continuations of prompts by a causal LM (greedy for sequence-level KD, sampled for on-policy GKD)."""
from __future__ import annotations

import torch

from .data import Encoded


def prompt_of(e: Encoded, prompt_tokens: int) -> list:
    """The context a generation continues: the example's prompt, or its first ``prompt_tokens`` tokens for plain
    text (no prompt)."""
    return list(e.ids[:e.n_prompt]) if e.n_prompt else list(e.ids[:max(1, min(prompt_tokens, len(e.ids) - 1))])


@torch.no_grad()
def continue_prompts(model, prompts: list, *, pad_id: int, eos_id, max_new: int, max_len: int, sample: bool,
                     batch_size: int = 32, device="cpu", seed: int = 0) -> list:
    """[Encoded(prompt + continuation, len(prompt))]: the model's continuation of each prompt (left-padded batches),
    cut after the first eos and to ``max_len`` tokens in all."""
    was_training = model.training
    model.eval()
    out = []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        L = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), L), pad_id, dtype=torch.long)
        att = torch.zeros((len(chunk), L), dtype=torch.long)
        for k, p in enumerate(chunk):
            ids[k, L - len(p):] = torch.tensor(p)
            att[k, L - len(p):] = 1
        new = max(1, min(max_new, max_len - L))
        torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen)))
        kw = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0) if sample else dict(do_sample=False)
        res = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), max_new_tokens=new,
                             pad_token_id=pad_id, eos_token_id=eos_id, **kw)[:, L:].cpu().tolist()
        for p, cont in zip(chunk, res):
            if eos_id is not None and eos_id in cont:
                cont = cont[:cont.index(eos_id) + 1]
            else:
                cont = [t for t in cont if t != pad_id] or cont[:1]
            out.append(Encoded((list(p) + cont)[:max_len], len(p)))
    model.train(was_training)
    return out
