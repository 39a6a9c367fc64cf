#!/usr/bin/env bash
# Caches the connector jars pinned in spark_job/config/connectors.py (hadoop-aws and its AWS SDK, the GCS
# connector, spark-avro, JDBC drivers, Delta, Iceberg, openlineage-spark, ...) under
# .cache/jars/spark-<version>/, fetched from Maven Central with Maven, for the pyspark of .venv and of
# each test-matrix cell (tests/matrix/*.txt), or for the Spark versions given. The tests then need no
# network. Safe to run again: a version whose jars are all cached is skipped.
#
#   bash scripts/connectors.sh              # .venv's pyspark and the matrix cells'
#   bash scripts/connectors.sh 3.5.3 4.0.1  # these Spark versions
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mvn >/dev/null 2>&1; then
  echo "connectors: Maven (mvn) is missing: apt-get install maven, or run scripts/bootstrap.sh" >&2
  exit 1
fi

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  if [ -x .venv/bin/python ]; then
    versions+=("$(.venv/bin/python -c 'from importlib.metadata import version; print(version("pyspark"))')")
  fi
  for pins in tests/matrix/*.txt; do
    [ -f "$pins" ] || continue
    versions+=($(sed -n 's/^pyspark==\([0-9][0-9a-z.+-]*\).*/\1/p' "$pins"))
  done
fi
if [ ${#versions[@]} -eq 0 ]; then
  echo "connectors: no pyspark in .venv and no matrix pins: name the Spark versions" >&2
  exit 1
fi

# The table is pure standard library: any python3 reads it.
table() { PYTHONPATH=. python3 - "$@" <<'EOF'
import sys
from xml.sax.saxutils import escape

from spark_job.config.connectors import connectors

what, version = sys.argv[1], sys.argv[2]
jars = {}
for found in connectors(version).values():
    for artifact in found.artifacts if found else ():
        jars[artifact.file_name] = artifact
if what == "files":
    print("\n".join(sorted(jars)))
else:  # a pom whose dependencies are exactly these jars: nothing transitive is resolved
    deps = "".join(
        f"<dependency><groupId>{escape(a.group)}</groupId><artifactId>{escape(a.name)}</artifactId>"
        f"<version>{escape(a.version)}</version>"
        + (f"<classifier>{escape(a.classifier)}</classifier>" if a.classifier else "")
        + "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
        "</dependency>"
        for a in jars.values()
    )
    print(
        '<project><modelVersion>4.0.0</modelVersion>'
        f"<groupId>sparkpipe</groupId><artifactId>connector-jars</artifactId><version>{escape(version)}</version>"
        f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>"
    )
EOF
}

seen=" "
for version in "${versions[@]}"; do
  case "$seen" in *" $version "*) continue ;; esac
  seen+="$version "
  dir=.cache/jars/spark-$version
  wanted=$(table files "$version")
  missing=0
  while read -r jar; do
    [ -f "$dir/$jar" ] || missing=$((missing + 1))
  done <<<"$wanted"
  for cached in "$dir"/*.jar; do # jars the table no longer names (an earlier pin)
    [ -f "$cached" ] && ! grep -qxF "$(basename "$cached")" <<<"$wanted" && rm -f "$cached"
  done
  if [ "$missing" -eq 0 ]; then
    continue
  fi
  echo "connectors: fetching $missing connector jars for Spark $version into $dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  table pom "$version" >"$work/pom.xml"
  start=$SECONDS
  if ! mvn -q -B -C -f "$work/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$work/jars" -DexcludeTransitive=true >"$work/mvn.log" 2>&1; then
    grep -E "ERROR|Could not" "$work/mvn.log" | head -20 >&2
    echo "connectors: Maven could not fetch the jars for Spark $version (log above)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  for jar in "$work"/jars/*.jar; do
    mv -f "$jar" "$dir/"
  done
  echo "connectors: Spark $version: $(du -sh "$dir" | cut -f1) in $((SECONDS - start)) s"
  rm -rf "$work"
  trap - EXIT
done
