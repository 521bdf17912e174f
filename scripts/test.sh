#!/usr/bin/env bash
# The test command (README): the whole suite, in parallel on the available cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# Fine-tuned test teachers are shared by all test files (keyed by model, data and settings).
export KDLAB_TEACHERS="${KDLAB_TEACHERS:-$(mktemp -d -t kdlab-teachers-XXXX)}"
exec python -m pytest -q -n "${KDLAB_TEST_WORKERS:-2}" --dist loadfile --timeout 900 --durations=25 tests "$@"
