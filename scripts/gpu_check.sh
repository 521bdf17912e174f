#!/usr/bin/env bash
# The GPU measurements in one command, on a machine with an NVIDIA GPU:
#   1. the GPU, torch/CUDA versions, bf16 support and the precision --precision auto picks (scripts/gpu_info.py);
#   2. `kdlab bench`: a random 12-layer, 768-wide BERT teacher to a 6-layer student, plain vs KD steps in fp32 and
#      in mixed precision (bf16, or fp16 with a gradient scaler where the GPU has no bf16), with model-FLOPs
#      utilisation; the figures go into BENCHMARKS.md's GPU block (bench-gpu markers);
#   3. the SST-2 -> IMDB / Yelp study at full size (the whole train set, 7 methods, 3 seeds, 3 epochs); its
#      table and JSON are saved under OUT, with a ready-to-paste section for docs/RESULTS.md.
#
# Usage: bash scripts/gpu_check.sh [--quick] [--dry-run] [--data DIR] [--out DIR] [--skip-bench] [--skip-study]
#   --quick      a smoke run of a few minutes: a short bench written to OUT (BENCHMARKS.md untouched) and a study of
#                ce,kd x 2 seeds on 2,000 sentences, 1 epoch
#   --dry-run    print the commands and exit (works without a GPU)
#   --data DIR   the shared data folder with sst2/ and ood/ (default ../shared/data, or $KDLAB_DATA)
#   --out DIR    where outputs go (default gpu-check/, or gpu-check-quick/ with --quick)
#   PEAK_TFLOPS=N  the GPU's dense bf16/fp16 peak for MFU, where the bench does not know the GPU
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 DRY=0 BENCH=1 STUDY=1 DATA=${KDLAB_DATA:-../shared/data} OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    --skip-bench) BENCH=0 ;;
    --skip-study) STUDY=0 ;;
    --data) DATA=${2:?--data needs a folder}; shift ;;
    --out) OUT=${2:?--out needs a folder}; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || { [ $QUICK = 1 ] && OUT=gpu-check-quick || OUT=gpu-check; }
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # kdlab from this checkout

if [ $QUICK = 1 ]; then
  NAME=sst2-gpu-quick
  BENCH_ARGS=(--steps 5 --epochs 2 --rounds 1 --write "$OUT/BENCHMARKS-quick.md")
  STUDY_ARGS=(--methods ce,kd --seeds 2 --max-train 2000 --teacher-epochs 1 --epochs 1)
else
  NAME=sst2-gpu-full
  BENCH_ARGS=(--steps 20 --epochs 3 --rounds 3 --write BENCHMARKS.md)
  STUDY_ARGS=(--methods ce,kd,pkd-skip,pkd-last,rail-kd-l,internal-all,tinybert --seeds 3 --teacher-epochs 3 --epochs 3)
fi
BENCH_CMD=("$PY" -m kdlab bench --teacher-config 12x768 --student-layers 6 --batch 32 --seq 128 --device cuda
           --precision auto --length-buckets off "${BENCH_ARGS[@]}")
[ -n "${PEAK_TFLOPS:-}" ] && BENCH_CMD+=(--peak-tflops "$PEAK_TFLOPS")
STUDY_CMD=("$PY" -m kdlab study --name "$NAME" "${STUDY_ARGS[@]}" --data "$DATA/sst2"
           --ood "$DATA/ood/imdb.tsv" "$DATA/ood/yelp.tsv" --max-len 128 --device cuda --runs runs-gpu)

show() {   # a command as one line to copy (arguments quoted only where the shell needs it)
  local out="+" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then out+=" $arg"; else out+=" $(printf '%q' "$arg")"; fi
  done
  echo "$out"
}

if [ $DRY = 1 ]; then
  echo "gpu_check (dry run$([ $QUICK = 1 ] && echo ', quick')): outputs would go to $OUT/"
  show "$PY" scripts/gpu_info.py
  [ $BENCH = 1 ] && { show "${BENCH_CMD[@]}"; echo "  (JSON to $OUT/bench.json)"; }
  if [ $STUDY = 1 ]; then
    show "${STUDY_CMD[@]}"; echo "  (table to $OUT/study.txt)"
    show "${STUDY_CMD[@]}" --json; echo "  (JSON to $OUT/study.json; no new runs: the study is stored)"
  fi
  exit 0
fi

"$PY" scripts/gpu_info.py > /tmp/kdlab-gpu-info.$$ || exit 1   # one line on stderr when there is no GPU
mkdir -p "$OUT"
mv /tmp/kdlab-gpu-info.$$ "$OUT/gpu.txt"
cat "$OUT/gpu.txt"
: > "$OUT/commands.txt"

if [ $BENCH = 1 ]; then
  echo "== bench (about $([ $QUICK = 1 ] && echo 1 || echo 3) min)"
  show "${BENCH_CMD[@]}" | tee -a "$OUT/commands.txt"
  start=$SECONDS
  "${BENCH_CMD[@]}" > "$OUT/bench.json"
  "$PY" - "$OUT/bench.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"bench on {r.get('gpu', '?')}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r["seconds_per_step"].items()))
print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in r["ratios"].items()))
if r.get("mfu"):
    print("MFU: " + ", ".join(f"{k} {v:.1%}" for k, v in r["mfu"].items()))
print(r.get("mfu_note", ""))
EOF
  echo "bench: $((SECONDS - start)) s; figures in ${BENCH_ARGS[-1]} (between the bench-gpu markers)"
fi

if [ $STUDY = 1 ]; then
  for f in "$DATA/sst2/train.tsv" "$DATA/sst2/dev.tsv" "$DATA/ood/imdb.tsv" "$DATA/ood/yelp.tsv"; do
    [ -f "$f" ] || { echo "gpu_check: the study needs $f: give the data folder with --data DIR" >&2; exit 1; }
  done
  echo "== study $NAME (resumable: running this script again continues it)"
  show "${STUDY_CMD[@]}" | tee -a "$OUT/commands.txt"
  start=$SECONDS
  "${STUDY_CMD[@]}" | tee "$OUT/study.txt"
  wall=$((SECONDS - start))
  "${STUDY_CMD[@]}" --json > "$OUT/study.json"
  {
    echo "## SST-2 → IMDB / Yelp on a GPU ($([ $QUICK = 1 ] && echo 'quick smoke run' || echo 'full size'))"
    echo
    echo "**GPU.** Measured on $(head -1 "$OUT/gpu.txt" | sed 's/^GPU: //'); $(sed -n 2p "$OUT/gpu.txt");"
    echo "$(sed -n 3p "$OUT/gpu.txt"). Wall clock $((wall / 60)) min $((wall % 60)) s (a rerun of a finished study is"
    echo "not a measurement). Produced by \`bash scripts/gpu_check.sh$([ $QUICK = 1 ] && echo ' --quick')\`:"
    echo
    echo '```bash'
    echo "${STUDY_CMD[*]}" | sed "s#^$PY #python #"
    echo '```'
    echo
    echo '```'
    cat "$OUT/study.txt"
    echo '```'
  } > "$OUT/RESULTS-gpu.md"
fi

echo
echo "gpu_check: done; outputs in $OUT/"
[ $BENCH = 1 ] && echo "  bench: $OUT/bench.json; BENCHMARKS.md's bench-gpu block$([ $QUICK = 1 ] && echo " (quick: $OUT/BENCHMARKS-quick.md)")"
[ $STUDY = 1 ] && echo "  study: $OUT/study.txt, $OUT/study.json; paste $OUT/RESULTS-gpu.md into docs/RESULTS.md as its GPU section"
exit 0
