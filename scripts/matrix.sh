#!/usr/bin/env bash
# The test matrix: the driver's tests on the Pythons and Sparks the clusters run, beside .venv.
#
#   bash scripts/matrix.sh setup [CELL...]    create or refresh .cache/matrix/<cell> (the setup script calls it)
#   bash scripts/matrix.sh test [CELL...]     run each cell's test files (scripts/test.sh calls it)
#   bash scripts/matrix.sh compile [CELL...]  re-pin tests/matrix/<cell>.txt from tests/matrix/<cell>.in
#
# A cell is named py<python>-spark<spark> (py39-spark35: Python 3.9, pyspark 3.5.x). Its pinned
# requirements are tests/matrix/<cell>.txt, the test files it runs tests/matrix/<cell>.tests (pytest
# arguments, one a line: files, node ids, --deselect=<node id>), and its
# interpreter comes from pyenv ($(pyenv root)/versions/<x.y>.*) or PATH (python<x.y>): uv cannot
# download interpreters here. SPARKPIPE_MATRIX=0 skips the matrix; SPARKPIPE_MATRIX=py39-spark35 runs
# only that cell.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_CELLS=(py39-spark35 py310-spark40 py313-nospark)

python_version() { # py39-spark35 -> 3.9, py310-spark40 -> 3.10
  local digits=${1%%-*}
  digits=${digits#py}
  echo "${digits:0:1}.${digits:1}"
}

find_python() { # the newest interpreter of that minor version pyenv or PATH has
  local version=$1 root found=""
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
  else
    root=${PYENV_ROOT:-$HOME/.pyenv}
  fi
  for candidate in $(ls -d "$root"/versions/"$version".* 2>/dev/null | sort -V); do
    [[ $candidate =~ /$version\.[0-9]+$ ]] && [ -x "$candidate/bin/python$version" ] && found="$candidate/bin/python$version"
  done
  if [ -z "$found" ] && command -v "python$version" >/dev/null 2>&1; then
    found=$(command -v "python$version")
  fi
  echo "$found"
}

cells_of() { # the cells named on the command line, else SPARKPIPE_MATRIX's, else all
  if [ $# -gt 0 ]; then
    echo "$@"
  elif [ -n "${SPARKPIPE_MATRIX:-}" ] && [ "${SPARKPIPE_MATRIX}" != 1 ]; then
    echo "${SPARKPIPE_MATRIX//,/ }"
  else
    echo "${ALL_CELLS[@]}"
  fi
}

check_cell() {
  if [ ! -f "tests/matrix/$1.txt" ] || [ ! -f "tests/matrix/$1.tests" ]; then
    echo "matrix: unknown cell '$1' (cells: ${ALL_CELLS[*]}; each has tests/matrix/<cell>.txt and .tests)" >&2
    exit 2
  fi
}

setup_cell() {
  local cell=$1 version python env stamp
  check_cell "$cell"
  version=$(python_version "$cell")
  python=$(find_python "$version")
  if [ -z "$python" ]; then
    echo "matrix: the cell $cell needs Python $version, which this machine does not have" \
      "(looked in $(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")/versions/$version.* and for python$version on PATH)." \
      "Install it with 'pyenv install $version' (or your system's python$version package) and run" \
      "scripts/bootstrap.sh again; SPARKPIPE_MATRIX=0 skips the matrix." >&2
    exit 1
  fi
  env=.cache/matrix/$cell
  stamp="$python $PWD $(sha256sum "tests/matrix/$cell.txt" | cut -c1-16) bytecode"
  if [ -x "$env/bin/python" ] && [ "$(cat "$env/.sparkpipe-cell" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  echo "matrix: creating $env (Python $("$python" -c 'import platform; print(platform.python_version())'), tests/matrix/$cell.txt)"
  rm -rf "$env"
  uv venv --quiet --python "$python" "$env"
  # compiled once here: every test's Python processes (drivers, Spark's workers) then load bytecode
  uv pip sync --quiet --compile-bytecode --python "$env/bin/python" "tests/matrix/$cell.txt"
  # The repository on the cell's path, as an editable install puts it (the package itself, which
  # needs Airflow's Python, is not installed): subprocesses of the tests import spark_job too.
  "$env/bin/python" -c 'import site, sys; open(site.getsitepackages()[0] + "/_sparkpipe_repository.pth", "w").write(sys.argv[1] + "\n")' "$PWD"
  echo "$stamp" >"$env/.sparkpipe-cell"
}

test_cell() {
  local cell=$1 env files started
  check_cell "$cell"
  env=.cache/matrix/$cell
  if [ ! -x "$env/bin/python" ]; then
    echo "matrix: $env does not exist: run scripts/bootstrap.sh (or scripts/matrix.sh setup $cell)" >&2
    exit 1
  fi
  mapfile -t files < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "tests/matrix/$cell.tests" | grep -v '^$')
  echo "matrix: $cell: $("$env/bin/python" -c '
import importlib.util, platform
spark = importlib.util.find_spec("pyspark")
print("Python", platform.python_version(), "+ pyspark", __import__("pyspark").__version__ if spark else "(none)")')"
  started=$SECONDS
  # The driver compiled for the cell's Python: its tests start many driver processes, each importing it.
  "$env/bin/python" -m compileall -q spark_job sparkpipe_pytest >/dev/null
  # Nothing of .venv: the cell's own pyspark and Spark. The pytest plugin is named here, where the
  # package's entry point would register it (the tests' own pytest runs inherit it).
  env -u PYTHONPATH -u VIRTUAL_ENV -u SPARK_HOME -u SPARK_REMOTE -u PYSPARK_PYTHON -u PYSPARK_DRIVER_PYTHON \
    PYTEST_PLUGINS=sparkpipe_pytest.plugin \
    "$env/bin/python" -m pytest -p no:cacheprovider -q --durations=15 "${files[@]}" || {
    echo "matrix: $cell failed after $((SECONDS - started)) s"
    return 1
  }
  echo "matrix: $cell passed in $((SECONDS - started)) s"
}

command=${1:-}
shift || true
if [ "${SPARKPIPE_MATRIX:-1}" = 0 ] && [ $# -eq 0 ]; then
  echo "matrix: SPARKPIPE_MATRIX=0: skipped"
  exit 0
fi
case $command in
  setup)
    for cell in $(cells_of "$@"); do setup_cell "$cell"; done
    ;;
  test)
    # The cells run at the same time, each in a process of its own (a cell's time is mostly JVMs
    # starting and servers answering, which overlap on two cores); each one's output is kept in
    # build/test-artifacts/matrix-<cell>.log and shown, in order, once it ended.
    mkdir -p build/test-artifacts
    cells=() pids=() failed=()
    for cell in $(cells_of "$@"); do
      check_cell "$cell"
      test_cell "$cell" >"build/test-artifacts/matrix-$cell.log" 2>&1 &
      cells+=("$cell")
      pids+=($!)
    done
    trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
    for i in "${!cells[@]}"; do
      wait "${pids[$i]}" || failed+=("${cells[$i]}")
      cat "build/test-artifacts/matrix-${cells[$i]}.log"
    done
    trap - EXIT
    if [ ${#failed[@]} -gt 0 ]; then
      echo "matrix: failed: ${failed[*]}" >&2
      exit 1
    fi
    ;;
  compile)
    for cell in $(cells_of "$@"); do
      [ -f "tests/matrix/$cell.in" ] || { echo "matrix: no tests/matrix/$cell.in" >&2; exit 2; }
      uv pip compile --quiet --python-version "$(python_version "$cell")" \
        "tests/matrix/$cell.in" -o "tests/matrix/$cell.txt"
    done
    ;;
  *)
    echo "usage: scripts/matrix.sh setup|test|compile [CELL...]" >&2
    exit 2
    ;;
esac
