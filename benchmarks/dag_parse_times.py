"""How long each example DAG file takes to parse, each time in a fresh interpreter (as a dag-processor does).

    python benchmarks/dag_parse_times.py            # every file of dags_examples/, 5 runs each
    python benchmarks/dag_parse_times.py --runs 9 dags_examples/example_sparkpipe_jdbc.py

Each run starts a new Python process that imports Airflow (not timed), then times ``DagBag`` loading
the one file plus serializing its DAGs, and counts the modules the parse imported and the heavy ones
among them (pyspark, boto3, grpc, google.cloud ...). Prints one line per file with the median, the
fastest and slowest run; exits 1 when a file fails to parse or imports a heavy module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pyspark", "py4j", "google.cloud", "googleapiclient", "grpc", "boto3", "botocore", "kubernetes")

PARSE = """
import json, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
before = set(sys.modules)
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
for dag in bag.dags.values():
    DagSerialization.to_dict(dag)
seconds = time.perf_counter() - start
new = set(sys.modules) - before
heavy = sorted({m for m in new if m.startswith(tuple(json.loads(sys.argv[2])))})
print("PARSE " + json.dumps({"seconds": seconds, "modules": len(new), "heavy": heavy,
                             "dags": len(bag.dags), "errors": [str(e) for e in bag.import_errors.values()]}))
"""


def parse_once(dag_file: Path, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(dag_file), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PARSE ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"{dag_file}: the parse process failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(line[len("PARSE ") :])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="DAG files (default: every dags_examples/*.py)")
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per file (default 5)")
    args = parser.parse_args(argv)
    files = args.files or sorted((REPO / "dags_examples").glob("*.py"))
    home = tempfile.mkdtemp(prefix="sparkpipe-parse-bench-")
    env = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    status = 0
    print(f"{'file':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'modules':>8}  heavy")
    for dag_file in files:
        runs = [parse_once(dag_file, env) for _ in range(args.runs)]
        seconds = [float(str(r["seconds"])) for r in runs]
        heavy = sorted({m for r in runs for m in r["heavy"]})  # type: ignore[attr-defined]
        errors = [e for r in runs for e in r["errors"]]  # type: ignore[attr-defined]
        modules = statistics.median(int(str(r["modules"])) for r in runs)
        print(
            f"{dag_file.name:<36} {statistics.median(seconds):>9.2f} {min(seconds):>7.2f} {max(seconds):>7.2f} "
            f"{modules:>8.0f}  {', '.join(sorted({m.split('.')[0] for m in heavy})) or '-'}"
        )
        if heavy or errors:
            status = 1
            for error in errors[:1]:
                print(f"  import error: {error}")
    return status


if __name__ == "__main__":
    sys.exit(main())
