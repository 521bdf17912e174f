"""Data layer: the embedded synthetic corpus, loaders for user data, tokenising and batching."""

from kdlab.data.batching import TextDataset, collate, encode_split, make_loader
from kdlab.data.loaders import DataBundle, Split, load_data

__all__ = ["DataBundle", "Split", "load_data", "TextDataset", "encode_split", "collate",
           "make_loader", "generate"]


def __getattr__(name):
    # lazy, so that `python -m kdlab.data.synth` does not import synth twice
    if name == "generate":
        from kdlab.data.synth import generate
        return generate
    raise AttributeError(name)
