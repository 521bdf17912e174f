"""The records every layer shares: what a loss needs from a model (``Need``), what a forward pass gives
(``Features``) and a model's shape (``ModelInfo``). A leaf module: it imports nothing from kdlab."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Need:
    hidden: bool = False
    attentions: bool = False
    qkv: bool = False

    def __or__(self, other: "Need") -> "Need":
        return Need(self.hidden or other.hidden, self.attentions or other.attentions, self.qkv or other.qkv)


@dataclass
class Features:
    logits: torch.Tensor                       # [B, C]
    mask: torch.Tensor                         # [B, L] 1 = real token
    hidden: list[torch.Tensor] | None = None   # N+1 x [B, L, d]; hidden[0] = embeddings
    attentions: list[torch.Tensor] | None = None  # N x [B, h, L, L] probabilities
    qkv: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None  # N x (q, k, v) [B, L, d]
    heads: int = 0
    extra: dict = field(default_factory=dict)
    maps: list[dict] | None = None             # N x {"probs", "scores"} [B, h, L, L]: what each layer's attention
                                               # computed before dropout (scores without the padding mask; may be None)

    def cls(self, layer: int) -> torch.Tensor:
        return self.hidden[layer][:, 0]

    def detach(self) -> "Features":
        d = lambda t: None if t is None else [x.detach() for x in t]
        qkv = None if self.qkv is None else [tuple(x.detach() for x in t) for t in self.qkv]
        return Features(self.logits.detach(), self.mask, d(self.hidden), d(self.attentions), qkv, self.heads,
                        dict(self.extra), map_tensors(self.maps, lambda x: x.detach()))


def map_tensors(maps, fn):
    """``maps`` (a Features' per-layer attention records) with ``fn`` applied to every tensor."""
    if maps is None:
        return None
    return [{k: None if v is None else fn(v) for k, v in m.items()} for m in maps]


@dataclass
class ModelInfo:
    """What the rest of the engine needs to know about a model's shape."""
    layers: int
    hidden: int
    heads: int
    vocab: int

    @staticmethod
    def of(model) -> "ModelInfo":
        c = model.config
        return ModelInfo(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.vocab_size)

