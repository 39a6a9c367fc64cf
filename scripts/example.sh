#!/usr/bin/env bash
# Sets everything up, then runs the example pipeline (examples/pipeline.yaml) on a local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/sparkpipe validate --config examples/pipeline.yaml
.venv/bin/sparkpipe run --config examples/pipeline.yaml --master 'local[2]' \
  --metrics-out build/example-output/_metrics.json "$@"
echo "example: outputs under build/example-output/, metrics in build/example-output/_metrics.json"
