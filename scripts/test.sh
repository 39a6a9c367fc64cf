#!/usr/bin/env bash
# Sets everything up, then runs the linters, the type checker and the whole test suite, then the
# driver's tests on the test matrix's Pythons and Sparks (scripts/matrix.sh; only when no pytest
# arguments are given; SPARKPIPE_MATRIX=0 skips it, SPARKPIPE_MATRIX=py39-spark35 runs one cell).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
if [ $# -eq 0 ]; then
  bash scripts/matrix.sh test
fi
