"""The bench's GPU pieces, checked on CPU: the synthetic BERT teacher (12x768 is BERT-base), model FLOPs against
a hand count, the datasheet peaks, the mixed-precision variants (fp16 with its gradient scaler runs on CPU
too) and the GPU block of BENCHMARKS.md beside the CPU one."""
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.tools.bench import forward_flops, peak_tflops_of, run_bench, synthetic_teacher, write_markdown


def test_synthetic_teacher_is_bert_base_and_flops_match_a_hand_count():
    with torch.device("meta"):   # shapes only: no 110M random numbers drawn
        model, tok = synthetic_teacher("12x768")
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (12, 768, 12, 3072)
    assert sum(p.numel() for p in model.parameters()) == 109_483_778   # bert-base-uncased + a 2-class head
    assert max(tok.get_vocab().values()) < c.vocab_size
    # a 2x64 BERT: per layer q/k/v/o 4(h^2 + h), FFN 2 * 4h^2 + 4h + h, two LayerNorms 4h = 12h^2 + 13h;
    # pooler h^2 + h, classifier 2h + 2, embedding LayerNorm 2h (the three embedding tables do no multiply)
    small, _ = synthetic_teacher("2x64")
    h, L, seq, batch = 64, 2, 16, 4
    n = L * (12 * h * h + 13 * h) + h * h + h + 2 * h + 2 + 2 * h
    assert n == 104_386
    assert forward_flops(small, batch, seq) == (2 * n + 4 * L * h * seq) * batch * seq == 13_885_696
    for bad in ("12", "12x700", "0x768", "axb"):
        with pytest.raises(KdlabError, match="LAYERSxHIDDEN"):
            synthetic_teacher(bad)


def test_datasheet_peaks():
    assert peak_tflops_of("NVIDIA H100 80GB HBM3") == 989 and peak_tflops_of("NVIDIA H100 PCIe") == 756
    assert peak_tflops_of("NVIDIA A100-SXM4-40GB") == 312 and peak_tflops_of("Tesla T4") == 65
    assert peak_tflops_of("NVIDIA L40S") == 362 and peak_tflops_of("NVIDIA L4") == 121
    assert peak_tflops_of("NVIDIA A10G") is None and peak_tflops_of("Some GPU") is None


def test_fp16_variants_and_the_gpu_block(tmp_path):
    res = run_bench(teacher_config="2x64", student_layers=1, batch=4, seq=16, steps=2, epochs=2, rounds=1,
                    textbrewer=False, precision="fp16", log=lambda *a: None)
    t = res["seconds_per_step"]
    assert {"plain_fp16", "kd_live_fp16", "kd_fill_fp16", "kd_cached_fp16"} <= set(t), res
    assert {"kd_cached_fp16/plain_fp16", "kd_live_fp16/plain_fp16"} <= set(res["ratios"])
    assert res["settings"]["precision"] == "fp16 (fp16 autocast, gradient scaler)"
    assert res["settings"]["teacher"] == "random BERT 2x64"
    f = res["model_flops"]   # a live teacher adds its forward; a cached one does not
    assert f["kd_cached_fp16"] == f["plain"] < f["kd_live"] == f["kd_fill_fp16"]
    assert "mfu" not in res   # CPU: no peak

    md = tmp_path / "B.md"
    write_markdown(res, md, command="cpu run")
    cpu_block = md.read_text()
    assert "<!-- bench:start -->" in cpu_block and "| kd_cached/plain |" in cpu_block and "<= 1.10" in cpu_block
    gpu = dict(res, settings=dict(res["settings"], device="cuda"), mfu={k: 0.25 for k in t},
               mfu_note="over a 989 TFLOP/s dense peak")
    write_markdown(gpu, md, command="gpu run")
    text = md.read_text()
    assert text.startswith(cpu_block.rstrip())   # the CPU record stays as it was
    block = text.split("<!-- bench-gpu:start -->")[1].split("<!-- bench-gpu:end -->")[0]
    assert "Command: `gpu run`" in block and "| plain_fp16 |" in block and "25.0% |" in block
    assert "<= 1.10" not in block and "MFU: over a 989 TFLOP/s dense peak." in block
    write_markdown(gpu, md, command="gpu again")   # replaces its own block only
    assert md.read_text().count("bench-gpu:start") == 1 and "gpu again" in md.read_text()
