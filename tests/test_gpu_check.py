"""scripts/gpu_check.sh: --dry-run prints the GPU measurements' commands (without a GPU); a real run on a machine
without a CUDA GPU stops with one clear line."""
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
METHODS = "ce,kd,pkd-skip,pkd-last,rail-kd-l,internal-all,tinybert"


def _run(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env), cwd="/")


def _commands(out: str) -> list[list[str]]:
    return [line[2:].split() for line in out.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_the_full_commands():
    r = _run("--dry-run", "--data", "/data/shared")
    assert r.returncode == 0, r.stderr
    info, bench, study, study_json = _commands(r.stdout)
    assert info == ["python", "scripts/gpu_info.py"]
    assert bench[:3] == ["python", "-m", "kdlab"] and bench[3] == "bench"
    b = " ".join(bench)
    for part in ("--teacher-config 12x768", "--student-layers 6", "--device cuda", "--precision auto",
                 "--write BENCHMARKS.md"):
        assert part in b, part
    s = " ".join(study)
    for part in (f"--name sst2-gpu-full --methods {METHODS} --seeds 3", "--teacher-epochs 3 --epochs 3",
                 "--data /data/shared/sst2", "--ood /data/shared/ood/imdb.tsv /data/shared/ood/yelp.tsv",
                 "--max-len 128 --device cuda --runs runs-gpu"):
        assert part in s, part
    assert "--max-train" not in s   # the whole train set
    assert study_json == study + ["--json"]
    assert "gpu-check/study.txt" in r.stdout and "gpu-check/study.json" in r.stdout


def test_quick_dry_run_is_the_smoke_version():
    r = _run("--dry-run", "--quick", "--skip-bench")
    assert r.returncode == 0, r.stderr
    cmds = _commands(r.stdout)
    assert len(cmds) == 3 and "bench" not in cmds[1]
    s = " ".join(cmds[1])
    assert "--methods ce,kd --seeds 2 --max-train 2000 --teacher-epochs 1 --epochs 1" in s
    assert "--name sst2-gpu-quick" in s and "--data ../shared/data/sst2" in s


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_one_clear_line():
    r = _run("--quick", PYTHONPATH=str(ROOT))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA GPU is visible"), r.stderr
    assert "--dry-run" in lines[0] and r.stdout == ""
    assert not (ROOT / "gpu-check-quick").exists()


def test_unknown_option_is_refused():
    r = _run("--bogus")
    assert r.returncode == 2 and r.stderr.strip() == "gpu_check: unknown option '--bogus' (see --help)"
