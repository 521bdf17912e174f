"""The ``Family`` record (one model family's adapter) and the registry the built-in table fills."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Family:
    name: str                      # the --arch name (bert, roberta, ...)
    model_types: tuple             # config.model_type values this adapter serves
    config_class: str              # transformers class names (the tiny random model is built from them)
    model_class: str
    layers: str                    # attribute path from the base model to the layer ModuleList
    pooler: bool = False           # a pooler (dense + tanh on [CLS]) between the encoder and the classifier
    token_types: bool = True       # the model takes token_type_ids (segment embeddings)
    interface: bool = True         # attention runs through transformers' attention interface
    hook: Callable | None = None   # capture(model, recorder) -> handles, for families without the interface
    tiny: dict = field(default_factory=dict)   # config overrides of the tiny random model
    config_keys: dict = field(default_factory=dict)  # kdlab name -> this family's config name (e.g. intermediate)
    per_layer: tuple = ()          # config fields that hold one value per layer (sliced when copying layers)
    reset_per_layer: Callable | None = None    # config -> None: recompute per-layer fields for a fresh depth
    after_load: Callable | None = None         # (model, state dict) -> None: restore what from_pretrained drops

    def key(self, name: str) -> str:
        return self.config_keys.get(name, name)


FAMILIES: dict[str, Family] = {}


def register(f: Family) -> Family:
    FAMILIES[f.name] = f
    return f
