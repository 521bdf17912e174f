"""The deploy frontier of several runs' models in one figure (HTML): accuracy against CPU latency.

    python -m kdlab eval --run TEACHER_RUN --model all --json > teacher.json
    python -m kdlab eval --run STUDENT_RUN --model student --json > kd.json      # one file per student run
    python scripts/deploy_frontier.py teacher.json kd.json ... --split dev --out frontier.html

Each file's rows are `kdlab eval --model ... --json` output; a row is named by its model, prefixed with the file's
stem when the name repeats (two runs' "student"); the teacher is taken once. The figure is
``kdlab.analysis.viz.deploy_frontier`` (the Deploy page's); the models on the frontier are printed.
"""
import argparse
import json
from pathlib import Path

from kdlab.analysis.viz import deploy_frontier, frontier_models

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("files", nargs="+", help="`kdlab eval --run RUN --model ... --json` outputs")
p.add_argument("--split", default="dev", help="the split whose metric is the y axis (default dev)")
p.add_argument("--latency", default="ms_b1", choices=["ms_b1", "ms_b32"])
p.add_argument("--out", default="frontier.html")
a = p.parse_args()
rows, metric = {}, "accuracy"
for f in a.files:
    res = json.loads(Path(f).read_text())
    metric = res.get("metric", metric)
    for name, row in res["models"].items():
        if name == "teacher" and "teacher" in rows:
            continue
        key = name if name not in rows else f"{Path(f).stem}/{name}"
        rows[key] = row
fig = deploy_frontier(rows, a.split, metric, latency=a.latency)
fig.write_html(a.out, include_plotlyjs="cdn")
print(f"{len(rows)} models -> {a.out}; on the frontier: {', '.join(frontier_models(rows, a.split, a.latency))}")
