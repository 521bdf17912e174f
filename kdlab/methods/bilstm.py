"""Distilled BiLSTM (Tang et al. 2019, arXiv 1903.12136; docs/METHODS.md: bilstm): a BiLSTM (or CNN) student regresses the
transformer teacher's logits on a transfer set enlarged by augmentation.

* student: ``kdlab.models.bilstm`` (own embeddings over the teacher tokenizer's ids; ``arch`` bilstm | cnn;
  embed_dim 300, hidden 300 per direction, 1 layer; randomly initialised).
* loss: ``L = α·CE(y, z_S) + (1−α)·kd_mse(z_S, z_T)`` with ``kd_mse`` = squared error summed over classes,
  mean over the batch. Default ``α = 0`` (pure logit regression; the paper's α is unverified [U]): the
  augmented examples have no gold label, only the teacher's logits.
* transfer set: ``kdlab.data.augment`` adds ``n_samples`` (4; the paper: 20) samples per training example made by
  masking (p_mask 0.1), nearest-neighbour replacement in the teacher's word-embedding space (p_replace 0.1;
  stands in for POS-guided replacement) and n-gram sampling (p_ng 0.25, n in 1..ng_max=5). ``n_samples=0``
  turns augmentation off.

Hooks: ``make_student`` builds the BiLSTM student; ``augment_train`` enlarges ``bundle.train`` (called by
``kdlab.engine.pipeline.distill_run`` after the teacher is ready). Tip: a randomly initialised LSTM wants a larger
learning rate than a copied transformer (e.g. ``--lr 1e-3``).
"""
from __future__ import annotations

import dataclasses

from ..kd import losses
from ..errors import KdlabError
from .base import Method, Option, register

STUDENT_KEYS = ("arch", "embed_dim", "hidden", "layers", "fc_dim", "dropout")
AUGMENT_KEYS = ("n_samples", "p_mask", "p_replace", "p_ng", "ng_max")


@register
class BiLSTMKD(Method):
    """BiLSTM/CNN student, MSE on the teacher's logits, transfer set enlarged by augmentation."""
    name = "bilstm"
    summary = "BiLSTM/CNN student: L = a*CE + (1-a)*||z_T - z_S||^2 on an augmented transfer set (a = 0)"
    defaults = dict(alpha=0.0, arch="bilstm", embed_dim=300, hidden=300, layers=1, fc_dim=400, dropout=0.1,
                    n_samples=4, p_mask=0.1, p_replace=0.1, p_ng=0.25, ng_max=5)
    options = dict(
        alpha=Option("float", "weight of CE to the gold label; 1 - alpha goes to the logit regression", lo=0, hi=1),
        arch=Option("choice", "student architecture: a BiLSTM or a CNN over word embeddings"),
        embed_dim=Option("int", "word-embedding size of the student", lo=1),
        hidden=Option("int", "LSTM hidden size per direction (CNN: filters)", lo=1),
        layers=Option("int", "number of LSTM layers", lo=1),
        fc_dim=Option("int", "size of the hidden layer of the classifier", lo=1),
        dropout=Option("float", "dropout probability", lo=0, hi=1),
        n_samples=Option("int", "augmented examples per training example (0 = no augmentation)", lo=0),
        p_mask=Option("float", "probability to mask a token when augmenting", lo=0, hi=1),
        p_replace=Option("float", "probability to replace a token by a neighbour when augmenting", lo=0, hi=1),
        p_ng=Option("float", "probability to keep only an n-gram when augmenting", lo=0, hi=1),
        ng_max=Option("int", "longest n-gram kept by n-gram sampling", lo=1))
    weights = ("alpha",)
    choices = dict(arch=("bilstm", "cnn"))

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        if not 0.0 <= float(self.hp["alpha"]) <= 1.0:
            raise KdlabError(f"bilstm alpha (the hard-label weight) must be in [0, 1] (got {self.hp['alpha']})")

    @classmethod
    def cfg_options(cls, cfg) -> dict:
        return cls.resolve_options(dict(getattr(cfg, "method_args", None) or {}))

    @classmethod
    def make_student(cls, teacher, tokenizer, cfg):
        from ..models.bilstm import bilstm_student
        hp = cls.cfg_options(cfg)
        if teacher is None or tokenizer is None:
            raise KdlabError("the bilstm method needs a teacher and its tokenizer")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return bilstm_student(len(tokenizer), teacher.config.num_labels, pad_token_id=pad,
                              seed=cfg.train.seed, **{k: hp[k] for k in STUDENT_KEYS})

    @classmethod
    def augment_train(cls, bundle, tokenizer, teacher, cfg):
        from ..data.augment import augment_split
        hp = cls.cfg_options(cfg)
        if int(hp["n_samples"]) <= 0:
            return bundle
        train = augment_split(bundle.train, tokenizer, teacher, seed=cfg.train.seed, max_len=cfg.train.max_len,
                              n_samples=int(hp["n_samples"]), p_mask=float(hp["p_mask"]),
                              p_replace=float(hp["p_replace"]), p_ng=float(hp["p_ng"]), ng_max=int(hp["ng_max"]))
        return dataclasses.replace(bundle, train=train)

    def loss(self, s, t, batch, state):
        a = self.w("alpha", state)
        mse = losses.kd_mse(s.logits, t.logits)
        ce = self.hard_loss(s.logits, batch)
        total = a * ce + (1.0 - a) * mse
        return total, {"mse": mse.detach(), "ce": ce.detach()}
