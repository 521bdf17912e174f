"""Deployment: compress a stored run's model (vocabulary pruning, int8, ONNX; each optional, they compose) and
evaluate every artifact through one path.

  vocab.py      prune the vocabulary to what a corpus produces (embedding rows + WordPiece tokenizer rewritten)
  int8.py       int8 dynamic quantization of the linear layers (torch), saved in safetensors
  onnx.py       ONNX export, onnxruntime inference, int8 of the graph (onnxruntime)
  artifacts.py  ``compress_run``: the steps in order, the folder next to the run, the lineage; ``load_artifact``
  report.py     ``eval_models``: accuracy in and out of domain, MB, parameters, latency at batch 1 and 32
"""
