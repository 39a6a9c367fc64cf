#!/usr/bin/env bash
# Sets everything up, then runs the linters, the type checker and the whole test suite; without pytest
# arguments the provider's tests (tests/provider) and the driver's tests on the test matrix's Pythons
# and Sparks (scripts/matrix.sh) run at the same time, in the background, their output shown when the
# rest ended (SPARKPIPE_MATRIX=0 skips the matrix, SPARKPIPE_MATRIX=py39-spark35 runs one cell).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Python keeps the bytecode it compiles (in .venv and the cells' environments) even where the shell sets
# PYTHONDONTWRITEBYTECODE: the tests start hundreds of Python processes, which would otherwise each
# compile again what they import of Airflow's providers and the cloud SDKs.
unset PYTHONDONTWRITEBYTECODE
matrix_pid="" provider_pid=""
if [ $# -eq 0 ]; then
  mkdir -p build/test-artifacts
  if [ "${SPARKPIPE_MATRIX:-1}" != 0 ]; then
    matrix_log=build/test-artifacts/matrix.log
    echo "matrix: running beside the main suite; its output: $matrix_log (shown at the end)"
    bash scripts/matrix.sh test >"$matrix_log" 2>&1 &
    matrix_pid=$!
  fi
  # The provider's tests (Airflow processes, each task a spark-submit) run in a pytest process of their
  # own beside the rest: a test's time is mostly a child process starting or a server answering, so
  # the processes overlap on two cores. Two more files go with them, so that both processes end at about
  # the same time: OpenLineage's (it runs a DAG) and the class-data archive's (each of its runs is a
  # driver process of its own; neither needs the shared Spark session).
  beside=(tests/provider tests/connectors/test_openlineage.py tests/test_class_data.py)
  provider_log=build/test-artifacts/provider.log
  echo "provider tests: running beside the others; their output: $provider_log (shown at the end)"
  .venv/bin/pytest --durations=25 "${beside[@]}" >"$provider_log" 2>&1 &
  provider_pid=$!
  arguments=(--durations=40 "${beside[@]/#/--ignore=}")
  trap 'kill $matrix_pid $provider_pid 2>/dev/null || true' EXIT
else
  arguments=(--durations=40 "$@")
fi
# (the background tests have started: a failing linter stops them)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
status=0
started=$SECONDS
# the slowest tests are listed at the end, so that the suite's time can be kept in check
.venv/bin/pytest "${arguments[@]}" || status=$?
echo "main suite: exit $status after $((SECONDS - started)) s"
collect() { # collect <what> <pid> <log>: wait for a background run, show its output, keep the first failure
  local ended=0
  wait "$2" || ended=$?
  cat "$3"
  echo "$1: exit $ended after $((SECONDS - started)) s"
  [ "$status" -ne 0 ] || status=$ended
}
[ -z "$provider_pid" ] || collect "provider tests" "$provider_pid" "$provider_log"
[ -z "$matrix_pid" ] || collect matrix "$matrix_pid" "$matrix_log"
trap - EXIT
exit "$status"
