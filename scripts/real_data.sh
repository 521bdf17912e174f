#!/usr/bin/env bash
# The real-data tables of docs/RESULTS.md and docs/deploy.md, measured on a 2-core CPU: RTE -> SciTail and MRPC -> PAWS-QQP (teacher, student
# alone, kd, pkd-skip), the narrow-student study on SST-2 -> IMDB/Yelp, and the SST-2 deploy table.
# Usage: bash scripts/real_data.sh [OUT]   (OUT default /tmp/kdlab-real; ../shared/data must exist)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
OUT=${1:-/tmp/kdlab-real}
mkdir -p "$OUT"
python -m kdlab demo --data $D/glue/RTE --ood $D/ood_pairs/scitail_test.tsv --max-len 128 \
  --teacher-epochs 3 --epochs 1 --max-eval 1000 --seed 0 --also pkd-skip --runs "$OUT/runs" --no-progress \
  | tee "$OUT/rte.txt"
python -m kdlab demo --data $D/glue/MRPC --ood $D/ood_pairs/paws_qqp_dev_and_test.tsv --max-len 128 \
  --max-train 2000 --teacher-epochs 2 --epochs 1 --seed 0 --also pkd-skip --runs "$OUT/runs" --no-progress \
  | tee "$OUT/mrpc.txt"
python scripts/narrow_study.py --runs "$OUT/narrow" --max-train 3000 --max-eval 300 | tee "$OUT/narrow.txt"
RUN=$(python -c "
from kdlab.runs.store import Store
s = Store('$OUT/narrow')
print(next(r['id'] for r in s.runs(kind='student') if r['name'] == 'narrow full width (384) seed 0'))")
for spec in "--prune-vocab --name pruned" "--quantize int8 --name int8" "--prune-vocab --quantize int8 --name pruned-int8" \
            "--onnx --name onnx" "--prune-vocab --quantize int8 --onnx --name pruned-int8-onnx"; do
  python -m kdlab compress --runs "$OUT/narrow" --run "$RUN" $spec --quiet
done
python -m kdlab eval --runs "$OUT/narrow" --run "$RUN" --model all --quiet | tee "$OUT/deploy.txt"
