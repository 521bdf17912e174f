"""The GPU that ``scripts/gpu_check.sh`` measures on: its name, torch and CUDA versions, whether it computes bf16
natively, the precision ``--precision auto`` picks there, and the peak the bench's MFU uses.

    python scripts/gpu_info.py            # prints the lines; exit 1 with one line when there is no CUDA GPU
"""
from __future__ import annotations

import sys


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        print(f"gpu_check: no CUDA GPU is visible ({build}, torch {torch.__version__}): run this on a machine with "
              "an NVIDIA GPU, or pass --dry-run to see the commands", file=sys.stderr)
        return 1
    from kdlab.config import TrainConfig
    from kdlab.engine.distill import autocast_dtype, cuda_has_bf16, precision_name
    from kdlab.tools.bench import peak_tflops_of
    dev = torch.device("cuda", torch.cuda.current_device())
    name = torch.cuda.get_device_name(dev)
    props = torch.cuda.get_device_properties(dev)
    peak = peak_tflops_of(name)
    print(f"GPU: {name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2 ** 30:.0f} GiB, "
          f"{torch.cuda.device_count()} visible)")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(f"bf16 natively: {'yes' if cuda_has_bf16(dev) else 'no'}; --precision auto trains in "
          f"{precision_name(autocast_dtype(TrainConfig(precision='auto'), dev))}")
    print(f"peak for MFU: {f'{peak:g} TFLOP/s (datasheet, dense)' if peak else 'unknown: set PEAK_TFLOPS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
