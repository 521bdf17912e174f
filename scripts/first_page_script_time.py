"""The dashboard's first page (Setup) as a script run in-process (streamlit.testing.v1.AppTest), without the
server's own start: a BEFORE tree and this tree alternately, N times each, each in a fresh process on a fresh run
store with the default (non-tiny) Setup; prints each run's seconds, the heavy modules the page imported, and the
medians (BENCHMARKS.md, *Dashboard: time to the first page*).

    python scripts/first_page_script_time.py N BEFORE_DIR
"""
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

N, BEFORE = int(sys.argv[1]), sys.argv[2]
AFTER = str(Path(__file__).resolve().parents[1])
CODE = ("import sys, time; from streamlit.testing.v1 import AppTest; at = AppTest.from_file(sys.argv[1], "
        "default_timeout=300); t = time.perf_counter(); at.run(); dt = time.perf_counter() - t; "
        "assert not at.exception, at.exception; "
        "print(dt, sorted(m for m in ('pandas', 'numpy', 'pyarrow', 'torch', 'transformers') if m in sys.modules))")
res = {"before": [], "after": []}
for k in range(2 * N):
    which, root = ("before", BEFORE) if k % 2 == 0 else ("after", AFTER)
    env = dict(os.environ, PYTHONPATH=root, KDLAB_RUNS=tempfile.mkdtemp(prefix="ttfp-"), KDLAB_THREADS="1",
               OMP_NUM_THREADS="1")
    env.pop("KDLAB_APP_PRESET", None)
    out = subprocess.run([sys.executable, "-c", CODE, os.path.join(root, "app", "main.py")], env=env, cwd=root,
                         capture_output=True, text=True)
    line = out.stdout.strip().splitlines()[-1]
    res[which].append(float(line.split()[0]))
    print(which, line, flush=True)
for which, v in res.items():
    print(f"{which}: median {statistics.median(v):.2f} s over {len(v)} ({', '.join(f'{x:.2f}' for x in v)})")
print("load", os.getloadavg())
