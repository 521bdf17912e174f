#!/usr/bin/env bash
# The test command (README): the whole suite, in parallel on the available cores.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q -n "${KDLAB_TEST_WORKERS:-2}" --durations=15 tests "$@"
