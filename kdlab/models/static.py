"""The static-embedding student (``kdlab distill --student static``): a token table, mean-pooled, a linear head.

The table is built from the teacher's own contextual embeddings of its vocabulary, as Model2Vec does
(Tulkens & van Dongen 2024, model2vec 0.3's ``distill``): each token id ``t`` is fed to the teacher's encoder alone
(``[CLS] t [SEP]``, or the tokenizer's own special tokens), its last hidden states are mean-pooled over those
positions, the vocabulary's vectors are reduced with PCA (``sklearn.decomposition.PCA``) to ``dim`` components, and
row ``t`` is multiplied by ``log(1 + t)`` (Zipf weighting: token ids stand for frequency ranks, as in Model2Vec, so
frequent tokens weigh less in the sentence mean). The ``model2vec`` package (0.10.0 on PyPI) was not used: its
``distill`` extra pins ``transformers<5.4`` (kdlab runs transformers 5.x) and adds ``skeletoken``; the recipe is
these few lines with scikit-learn.

The student averages the table rows of a sentence's real tokens (padding never read; the special tokens count like
any token) and applies dropout and one ``Linear(dim, C)``. Trained like any student: by logit KD from the teacher
(``--method kd``) or from the labels alone (``--method ce``, its baseline). It is a ``transformers.PreTrainedModel``
(``model_type = "kdlab-static"``) registered with the Auto classes, so it saves in safetensors, reloads through
``kdlab.models.core.load_saved``, evaluates with ``kdlab eval`` and exports to ONNX. It reads one text: a sentence-pair
task gets one clear line.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import KdlabError
from .logits_only import LogitsOnly

NAME = "static"
DIM = 256


class StaticConfig(PretrainedConfig):
    model_type = "kdlab-static"

    def __init__(self, vocab_size: int = 30522, dim: int = DIM, dropout: float = 0.1, pad_token_id: int = 0,
                 **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.dim = dim
        self.hidden_size = dim
        self.num_hidden_layers = 0      # what kdlab's ModelInfo / size reports read
        self.num_attention_heads = 0
        self.dropout = dropout


class StaticForSequenceClassification(LogitsOnly, PreTrainedModel):
    KIND = "static student"
    METHODS = "kd, kd-mse, or ce"
    config_class = StaticConfig
    base_model_prefix = "static"
    main_input_name = "input_ids"
    _supports_sdpa = True   # no attention: kdlab's set_attention is a no-op
    # the optimiser gives this model LR_SCALE x --lr (kdlab.engine.distill.param_groups): a token table and a linear
    # head learn at about 1e-2 where a transformer student learns at 1e-4 (on the tiny preset's 50 steps, dev
    # accuracy 0.64 at 5e-4, 0.72 at 5e-3, 0.77 at 5e-2)
    lr_scale = 100.0

    def __init__(self, config: StaticConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(self, input_ids, attention_mask=None):
        """Mean of the table rows of the real tokens ``[B, dim]``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        m = attention_mask.unsqueeze(-1).to(self.embeddings.weight.dtype)
        return (self.embeddings(input_ids) * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        logits = self.classifier(self.dropout(self.encode(input_ids, attention_mask)))
        return SequenceClassifierOutput(logits=logits)


AutoConfig.register(StaticConfig.model_type, StaticConfig, exist_ok=True)
AutoModelForSequenceClassification.register(StaticConfig, StaticForSequenceClassification, exist_ok=True)


def is_static(name) -> bool:
    return str(name or "") == NAME


def check(cfg, method_cls, task) -> None:
    """One line, before any teacher is fine-tuned, for what the static student cannot do."""
    if task is not None and task.pair:
        raise KdlabError(f"the static student mean-pools one text; the task '{task.name}' is a sentence pair: use a "
                         "transformer student for it")
    if cfg.teacher_logits or cfg.teachers:
        raise KdlabError("the static student's table is built from one teacher model: give --teacher (not "
                         "--teacher-logits or an ensemble)")
    if cfg.student_hidden or cfg.student_layer_list:
        raise KdlabError("--student static is the whole student: drop --student-hidden / --student-layer-list")
    if method_cls.defines("make_student") or method_cls.chain:
        raise KdlabError(f"method '{method_cls.name}' builds its own student: drop --student static")


def _token_inputs(tokenizer, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each id alone between the tokenizer's special tokens (those it puts around an empty text), padded:
    (input_ids, attention_mask)."""
    empty = list(tokenizer("", add_special_tokens=True)["input_ids"])
    opening = {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}
    cut = 1 if empty and empty[0] in opening else 0
    seqs = [empty[:cut] + [i] + empty[cut:] for i in ids]
    n = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    x = torch.full((len(seqs), n), pad, dtype=torch.long)
    m = torch.zeros((len(seqs), n), dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, :len(s)] = torch.tensor(s)
        m[r, :len(s)] = 1
    return x, m


@torch.no_grad()
def token_vectors(teacher, tokenizer, *, batch: int = 512) -> np.ndarray:
    """[V, hidden]: the teacher encoder's last hidden states for each vocabulary id alone, mean-pooled."""
    from . import families
    enc = families.base(teacher)
    enc.eval()
    out = []
    n = len(tokenizer)
    for i in range(0, n, batch):
        x, m = _token_inputs(tokenizer, list(range(i, min(n, i + batch))))
        dev = next(enc.parameters()).device
        h = enc(input_ids=x.to(dev), attention_mask=m.to(dev)).last_hidden_state.float().cpu()
        mf = m.unsqueeze(-1).to(h.dtype)
        out.append(((h * mf).sum(1) / mf.sum(1)).numpy())
    return np.concatenate(out)


def zipf_weights(n: int) -> np.ndarray:
    """log(1 + rank) with rank = the token id (0-based), Model2Vec's Zipf weighting."""
    return np.log1p(np.arange(n, dtype=np.float64))


def build_table(vectors: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """PCA of the token vectors to ``dim`` components, each row weighted by ``zipf_weights``."""
    from sklearn.decomposition import PCA
    dim = int(min(dim, vectors.shape[0], vectors.shape[1]))
    reduced = PCA(n_components=dim, random_state=seed).fit_transform(vectors.astype(np.float64))
    return (reduced * zipf_weights(len(vectors))[:, None]).astype(np.float32)


def build_student(teacher, tokenizer, num_labels: int, *, dim: int = DIM, seed: int = 0, log=print):
    """A static student whose table comes from ``teacher`` (its encoder; a fine-tuned teacher's task-tuned states)."""
    import time
    from . import families
    if not families.known(teacher):
        raise KdlabError(f"the static student's table is read from a transformer teacher; {type(teacher).__name__} "
                         "is not one kdlab knows")
    t0 = time.time()
    table = build_table(token_vectors(teacher, tokenizer), dim, seed=seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    config = StaticConfig(vocab_size=table.shape[0], dim=table.shape[1], pad_token_id=pad, num_labels=num_labels)
    torch.manual_seed(seed)
    model = StaticForSequenceClassification(config)
    with torch.no_grad():
        model.embeddings.weight.copy_(torch.from_numpy(table))
    for key in ("problem_type", "id2label", "label2id"):
        if getattr(teacher.config, key, None) is not None:
            setattr(model.config, key, getattr(teacher.config, key))
    log(f"static student: {table.shape[0]} x {table.shape[1]} token table from the teacher ({time.time() - t0:.0f} s)")
    return model
