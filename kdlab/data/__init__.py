"""Data layer: the embedded synthetic corpus, loaders for user data, tokenising and batching.

The names below load with their module on first use, so that reading data (``kdlab.data.loaders``) does not
import torch (``kdlab.data.batching``): the dashboard's first page reads data only."""

_FROM = {"TextDataset": "batching", "collate": "batching", "encode_split": "batching", "make_loader": "batching",
         "DataBundle": "loaders", "Split": "loaders", "load_data": "loaders", "generate": "synth"}

__all__ = ["DataBundle", "Split", "load_data", "TextDataset", "encode_split", "collate",
           "make_loader", "generate"]


def __getattr__(name):
    # lazy (also so that `python -m kdlab.data.synth` does not import synth twice)
    if name in _FROM:
        import importlib
        return getattr(importlib.import_module(f"kdlab.data.{_FROM[name]}"), name)
    raise AttributeError(name)
