"""Time from `streamlit run app/main.py` to the dashboard's first page (Setup) ready in headless Chromium: the page
served, its title drawn, its data line shown and the script run finished. Runs a BEFORE tree (a checkout of an
older commit, e.g. `git archive OLD | tar -x -C /tmp/before`) and this tree alternately, N times each, on a fresh
run store each time, and prints the medians (BENCHMARKS.md, *Dashboard: time to the first page*).

    python scripts/first_page_time.py N default|tiny BEFORE_DIR
"""
import os, socket, subprocess, sys, tempfile, time, statistics
from pathlib import Path
ROOTS = {"before": Path(sys.argv[3]), "after": Path(__file__).resolve().parents[1]}
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3
mode = sys.argv[2] if len(sys.argv) > 2 else "tiny"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
from playwright.sync_api import sync_playwright

def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

out = []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    for k in range(2 * N):
        which = "before" if k % 2 == 0 else "after"
        ROOT = ROOTS[which]
        runs = Path(tempfile.mkdtemp(prefix="ttfp-"))
        env = dict(os.environ, KDLAB_RUNS=str(runs), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", KDLAB_THREADS="1", PYTHONPATH=str(ROOT))
        if mode == "tiny":
            env["KDLAB_APP_PRESET"] = "tiny"
        pt = port()
        url = f"http://127.0.0.1:{pt}"
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
                                 "--server.port", str(pt), "--server.address", "127.0.0.1", "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                stdout=open(runs / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        pg = browser.new_page()
        while True:
            try:
                pg.goto(url, timeout=2000); break
            except Exception:
                time.sleep(0.05)
        t_conn = time.time() - t0
        pg.wait_for_selector("h1:has-text('Setup')", timeout=120000)
        t_title = time.time() - t0
        pg.wait_for_selector("[data-testid='stAlertContentSuccess']", timeout=120000)
        t_data = time.time() - t0
        # the run finished: no running-status widget
        pg.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120000)
        t_done = time.time() - t0
        out.append((which, t_conn, t_title, t_data, t_done))
        print(f"run {k} {which}: page served {t_conn:.1f}s, title {t_title:.1f}s, data line {t_data:.1f}s, script done {t_done:.1f}s", flush=True)
        pg.close()
        os.killpg(proc.pid, 15); proc.wait(timeout=20)
    browser.close()
for which in ROOTS:
    med = [statistics.median(x[i] for x in out if x[0] == which) for i in range(1, 5)]
    print(f"{which}: median over {N} ({mode}): served {med[0]:.1f}s, title {med[1]:.1f}s, data {med[2]:.1f}s, done {med[3]:.1f}s")
print("load", os.getloadavg())
