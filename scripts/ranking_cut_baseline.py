"""The pretrained bi-encoder cut to N layers by the skip mapping (``--set keep_layers=N``), with no training, over a
BEIR folder's test queries: the starting point of the 3- and 2-layer ranking students (mean pooling, cosine,
documents at 128 tokens and queries at 32, as the students are trained and evaluated).

    python scripts/ranking_cut_baseline.py ../shared/data/retrieval/scifact --layers 6 3 2
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def main(argv=None) -> int:
    from kdlab.errors import KdlabError
    from kdlab.models.core import count_params
    from kdlab.ranking.adaptor import eval_bi
    from kdlab.ranking.data import load_beir
    from kdlab.ranking.models import BiEncoder, keep_layers, query_latency, sentence_encoder
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a BEIR folder")
    ap.add_argument("--model", default="minilm-l6", help="the pretrained bi-encoder (default minilm-l6)")
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 2])
    ap.add_argument("--doc-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        data = load_beir(a.data, splits=("test",))
        for n in a.layers:
            enc, tok = sentence_encoder(a.model)
            bi = BiEncoder(keep_layers(enc, n), tok, pooling="mean", score="cosine", query_len=32, doc_len=a.doc_len)
            ev, doc_emb = eval_bi(bi, data, split="test")
            qs = [data.queries[q] for q in data.split_queries("test")[:16]]
            print(json.dumps({"model": a.model, "layers": n, "training": "none", **{k: round(v, 4) for k, v in ev.items()},
                              "params": count_params(bi.encoder),
                              "ms_per_query": round(query_latency(bi=bi, doc_emb=doc_emb, queries=qs), 2)}))
    except KdlabError as e:
        print(f"ranking_cut_baseline: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
