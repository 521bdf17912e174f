"""The benchmark runs end to end on a tiny setting (TextBrewer included) and writes BENCHMARKS.md."""
import json
import statistics

from kdlab.cli import main


def test_bench_tiny(tmp_path, capsys):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nintro kept\n")
    assert main(["bench", "--preset", "tiny", "--student-layers", "2", "--batch", "4", "--seq", "16", "--steps", "2",
                 "--epochs", "2", "--write", str(md), "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    t = res["seconds_per_step"]
    assert {"plain", "kd_live", "kd_cached", "textbrewer"} <= set(t), res.get("textbrewer_error")
    assert {"plain_padded", "kd_live_padded"} <= set(t)   # on CPU the buckets are on, and measured against off
    assert res["settings"]["length_buckets"] == "auto (on)" and res["settings"]["real_tokens"].endswith("%")
    assert all(v > 0 for v in t.values())
    rounds = res["rounds_seconds_per_step"]
    assert all(len(v) == res["settings"]["rounds"] for v in rounds.values())
    assert all(abs(statistics.median(v) - t[k]) < 1e-12 for k, v in rounds.items())
    live = sorted(a / b for a, b in zip(rounds["kd_live"], rounds["plain"]))   # paired within each round
    assert abs(res["ratios"]["kd_live/plain"] - statistics.median(live)) < 1e-9
    assert res["ratio_ranges"]["kd_live/plain"] == [live[0], live[-1]]
    # grad-share logging on vs off, paired per round; the loop's default pays it one step in 50
    shares = sorted(a / b for a, b in zip(rounds["kd_live_shares"], rounds["kd_live"]))
    assert abs(res["ratios"]["kd_live_shares/kd_live"] - statistics.median(shares)) < 1e-9
    assert abs(res["ratios"]["grad_shares_every_50/kd_live"] - (1 + (statistics.median(shares) - 1) / 50)) < 1e-9
    assert len(res["kdlab_epochs_s"]) == 2 == len(res["textbrewer_epochs_s"])
    text = md.read_text()
    assert "intro kept" in text and "| kd_cached |" in text and "<!-- bench:end -->" in text
