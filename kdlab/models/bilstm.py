"""Small non-transformer students for logit distillation (Distilled BiLSTM, Tang et al. 2019; docs/METHODS.md: bilstm).

``BiLSTMForSequenceClassification`` has its own word embeddings over the *teacher tokenizer's ids* (so the
teacher's batches are shared as they are) and one of two encoders:

* ``arch="bilstm"``: a bidirectional LSTM (``num_layers`` layers, ``hidden_size`` per direction) over the real
  tokens (packed, so padding is never read); the last forward and the last backward states are concatenated,
  then ``Linear(2h, fc) -> ReLU -> Linear(fc, C)`` (the paper's classifier; fc = 400 is our choice [U]).
* ``arch="cnn"``: a Kim-style CNN (filters of widths 3, 4, 5, ``cnn_filters`` each, ReLU), max-pooled over real
  tokens only, then the same classifier.

It is a ``transformers.PreTrainedModel`` with its own config (``model_type = "kdlab-bilstm"``) registered with
``AutoConfig`` / ``AutoModelForSequenceClassification`` at import, so ``save_pretrained`` (safetensors) and
``kdlab.models.core.load_saved`` work. ``forward(input_ids, attention_mask)`` returns an output with ``.logits``
(for ``kdlab.analysis.evaluate``), and ``kd_features(batch, need)`` gives the engine's ``Features`` record (logits and
mask; no hidden states, so only logit-level methods can use it).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import KdlabError
from .logits_only import LogitsOnly


class BiLSTMConfig(PretrainedConfig):
    model_type = "kdlab-bilstm"

    def __init__(self, vocab_size: int = 30522, embed_dim: int = 300, hidden_size: int = 300, num_layers: int = 1,
                 arch: str = "bilstm", fc_dim: int = 400, cnn_filters: int = 100, cnn_widths=(3, 4, 5),
                 dropout: float = 0.1, pad_token_id: int = 0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_hidden_layers = num_layers      # what kdlab's ModelInfo / size reports read
        self.num_attention_heads = 0
        self.arch = arch
        self.fc_dim = fc_dim
        self.cnn_filters = cnn_filters
        self.cnn_widths = list(cnn_widths)
        self.dropout = dropout


def check_config(arch: str, embed_dim: int, hidden: int, layers: int):
    if arch not in ("bilstm", "cnn"):
        raise KdlabError(f"unknown BiLSTM-student arch '{arch}': use bilstm or cnn")
    for name, v in (("embed_dim", embed_dim), ("hidden", hidden), ("layers", layers)):
        if int(v) < 1:
            raise KdlabError(f"the BiLSTM student's {name} must be at least 1 (got {v})")


class BiLSTMForSequenceClassification(LogitsOnly, PreTrainedModel):
    KIND = "BiLSTM/CNN student"
    METHODS = "bilstm, kd, kd-mse"
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"
    _supports_sdpa = True  # no attention at all: lets kdlab's set_attention be a no-op

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        check_config(config.arch, config.embed_dim, config.hidden_size, config.num_layers)
        self.embeddings = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        if config.arch == "bilstm":
            self.lstm = nn.LSTM(config.embed_dim, config.hidden_size, num_layers=config.num_layers,
                                batch_first=True, bidirectional=True)
            feat = 2 * config.hidden_size
        else:
            self.convs = nn.ModuleList(nn.Conv1d(config.embed_dim, config.cnn_filters, w, padding=w - 1)
                                       for w in config.cnn_widths)
            feat = config.cnn_filters * len(config.cnn_widths)
        self.fc = nn.Linear(feat, config.fc_dim)
        self.classifier = nn.Linear(config.fc_dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence vector ``[B, feat]`` from the real tokens only."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.dropout(self.embeddings(input_ids))
        lengths = attention_mask.long().sum(dim=1).clamp_min(1)
        if self.config.arch == "bilstm":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)                    # h [layers*2, B, hidden]
            return torch.cat([h[-2], h[-1]], dim=-1)        # last layer: forward, backward
        m = attention_mask.unsqueeze(1).to(x.dtype)         # [B, 1, L]
        xt = (x.transpose(1, 2) * m)                        # [B, E, L]
        pooled = []
        for conv in self.convs:
            w = conv.kernel_size[0]
            c = torch.relu(conv(xt))[:, :, : xt.shape[-1] + w - 1]   # [B, F, L + w - 1]
            # output position p covers inputs p-w+1..p: valid when it touches at least one real token
            valid = torch.nn.functional.max_pool1d(nn.functional.pad(m, (w - 1, w - 1)), w, stride=1) > 0
            c = c.masked_fill(~valid, float("-inf"))
            pooled.append(c.max(dim=-1).values)
        return torch.cat(pooled, dim=-1)

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        feat = self.encode(input_ids, attention_mask)
        logits = self.classifier(self.dropout(torch.relu(self.fc(self.dropout(feat)))))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)


def bilstm_student(vocab_size: int, num_labels: int, *, pad_token_id: int = 0, arch: str = "bilstm",
                   embed_dim: int = 300, hidden: int = 300, layers: int = 1, fc_dim: int = 400,
                   dropout: float = 0.1, seed: int = 0) -> BiLSTMForSequenceClassification:
    check_config(arch, embed_dim, hidden, layers)
    config = BiLSTMConfig(vocab_size=vocab_size, embed_dim=int(embed_dim), hidden_size=int(hidden),
                          num_layers=int(layers), arch=arch, fc_dim=int(fc_dim), dropout=float(dropout),
                          pad_token_id=pad_token_id, num_labels=num_labels)
    torch.manual_seed(seed)
    return BiLSTMForSequenceClassification(config)
