"""The students with logits and nothing inside to match (the BiLSTM/CNN and static students) share one
``kd_features`` for the training loop."""
from __future__ import annotations

from ..errors import KdlabError
from ..records import Features


class LogitsOnly:
    """A mixin for students that have logits and nothing inside to match (the BiLSTM/CNN and static students):
    their ``kd_features`` for the training loop, refusing a method that asks for hidden states or attention maps.
    ``KIND`` names the student and ``METHODS`` the methods that suit it, in that refusal."""
    KIND = "this student"
    METHODS = "kd, kd-mse"

    def kd_features(self, batch: dict, need=None) -> Features:
        if need is not None and (need.hidden or need.attentions or need.qkv):
            raise KdlabError(f"the {self.KIND} has no hidden states or attention maps: use a logit-level method "
                             f"({self.METHODS})")
        out = self(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return Features(logits=out.logits, mask=batch["attention_mask"], heads=0)
