#!/usr/bin/env bash
# Sets everything up, then runs the linters, the type checker and the whole test suite; without pytest
# arguments the driver's tests on the test matrix's Pythons and Sparks (scripts/matrix.sh) run at the
# same time, in the background, their output shown when the main suite ended (SPARKPIPE_MATRIX=0 skips
# the matrix, SPARKPIPE_MATRIX=py39-spark35 runs one cell).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
matrix_pid=""
if [ $# -eq 0 ] && [ "${SPARKPIPE_MATRIX:-1}" != 0 ]; then
  mkdir -p build/test-artifacts
  matrix_log=build/test-artifacts/matrix.log
  echo "matrix: running beside the main suite; its output: $matrix_log (shown at the end)"
  bash scripts/matrix.sh test >"$matrix_log" 2>&1 &
  matrix_pid=$!
  trap 'kill "$matrix_pid" 2>/dev/null || true' EXIT
fi
status=0
started=$SECONDS
# the slowest tests are listed at the end, so that the suite's time can be kept in check
.venv/bin/pytest --durations=40 "$@" || status=$?
echo "main suite: exit $status after $((SECONDS - started)) s"
if [ -n "$matrix_pid" ]; then
  matrix_status=0
  wait "$matrix_pid" || matrix_status=$?
  trap - EXIT
  cat "$matrix_log"
  echo "matrix: exit $matrix_status after $((SECONDS - started)) s"
  [ "$status" -ne 0 ] || status=$matrix_status
fi
exit "$status"
