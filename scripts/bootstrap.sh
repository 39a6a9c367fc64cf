#!/usr/bin/env bash
# Installs what sparkpipe needs on a Debian machine with Python 3.11 (root, or sudo-less root shell):
# Java 17, the PostgreSQL server and its JDBC driver, the MariaDB server, Maven, Chromium and npm (Debian
# packages), playwright-core for the browser test (tests/provider/browser, locked by its package-lock.json), uv,
# the project's environment in .venv (locked by uv.lock), the test matrix's environments in .cache/matrix
# (scripts/matrix.sh; SPARKPIPE_MATRIX=0 skips them) and the connector jars (scripts/connectors.sh).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || packages+=(postgresql)
[ -f /usr/share/java/postgresql.jar ] || packages+=(libpostgresql-jdbc-java)
[ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server)
command -v mvn >/dev/null 2>&1 || packages+=(maven)
# The deployment test looks at Airflow's UI in Chromium, driven by playwright-core (tests/provider/browser).
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ ${#packages[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi

echo "bootstrap: syncing .venv from uv.lock"
uv sync --locked --python 3.11 --all-extras --quiet
# pyspark, Airflow and pandas compiled to bytecode as an install would: with PYTHONDONTWRITEBYTECODE set, or a
# read-only environment, every Python process (a driver, an Airflow task, Spark's Python workers) would
# otherwise compile them from source on each start (about 2.5 s for Airflow, 1.4 s for pyspark and pandas).
# So are the repository's own packages (the tests and benchmarks start hundreds of driver and Airflow
# processes, each importing them; a file changed later is compiled again in memory). The rest of the
# environment, about 35,000 modules of the cloud providers' SDKs that few processes import, is compiled
# when first imported: compiling all of it took 90 CPU-seconds, and scripts/test.sh lets Python keep
# what it compiles. What an Airflow task and a driver import from other packages (numpy, pydantic,
# SQLAlchemy, ...: about a thousand modules) is compiled by importing it once, with an Airflow home of
# its own, removed after.
.venv/bin/python -m compileall -q -j 0 spark_job airflow_provider_sparkpipe sparkpipe_pytest \
  .venv/lib/python3.11/site-packages/{pyspark,airflow,pandas} >/dev/null
probe_home=$(mktemp -d)
AIRFLOW_HOME=$probe_home .venv/bin/python -c 'import sys; sys.dont_write_bytecode = False
import airflow.sdk, airflow.models, pyspark.sql, pandas, yaml' >/dev/null || { rm -rf "$probe_home"; exit 1; }
rm -rf "$probe_home"

browser=tests/provider/browser
want=$(node -p "require('./$browser/package.json').dependencies['playwright-core']")
have=$(node -p "require('./$browser/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "bootstrap: installing playwright-core $want in $browser (npm ci)"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

bash scripts/matrix.sh setup
bash scripts/connectors.sh
