"""The wide benchmark pipeline (``benchmarks/wide.yaml``) as a Spark Declarative Pipelines project.

Writes a pipeline project (``spark-pipeline.yml`` and one SQL file: the two sources as temporary
views, each step as a materialized view with the SQL of wide.yaml verbatim) and runs it with the
installed pyspark's ``spark-pipelines run``. The materialized views are parquet tables in the
warehouse, which is ``--out-dir``: each output lands at ``<out-dir>/<name>``, where compare.py
reads the other sides' outputs. ``spark-pipelines`` starts its own Spark Connect server on
``local[*]`` (it refuses a master of its own); on the benchmark machine that is ``local[2]``.

    python benchmarks/sdp_wide.py --data-dir DIR --out-dir DIR
    python benchmarks/compare.py --config benchmarks/wide.yaml --handwritten benchmarks/sdp_wide.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The twin's SQL and settings: the same as the handwritten program's (compare.py checks them).
_spec = importlib.util.spec_from_file_location("_handwritten_wide", HERE / "handwritten_wide.py")
assert _spec is not None and _spec.loader is not None
_handwritten = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_handwritten)
SQL: dict[str, str] = dict(_handwritten.SQL)
SPARK_CONF: dict[str, str] = dict(_handwritten.SPARK_CONF)


def project(root: Path, data_dir: str) -> Path:
    """Write the pipeline project under ``root``; return its spec file."""
    (root / "transformations").mkdir(parents=True)
    conf = "".join(f'  {key}: "{value}"\n' for key, value in SPARK_CONF.items())
    spec = root / "spark-pipeline.yml"
    spec.write_text(
        f"name: sparkpipe_bench_wide_sdp\nstorage: file://{root}/storage\nconfiguration:\n{conf}"
        "libraries:\n  - glob:\n      include: transformations/**\n"
    )
    statements = [
        f"CREATE TEMPORARY VIEW events AS SELECT * FROM parquet.`{data_dir}/events`",
        f"CREATE TEMPORARY VIEW users AS SELECT * FROM parquet.`{data_dir}/users`",
        *(f"CREATE MATERIALIZED VIEW {name} AS {query}" for name, query in SQL.items()),
    ]
    (root / "transformations" / "wide.sql").write_text(";\n\n".join(statements) + ";\n")
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory holding events/ and users/")
    parser.add_argument("--out-dir", required=True, help="the warehouse: each output is <out-dir>/<name>")
    parser.add_argument("--master", default="local[*]", help="ignored: spark-pipelines runs on local[*]")
    args = parser.parse_args(argv)

    import pyspark

    spark_home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable}
    cli = Path(sys.executable).parent / "spark-pipelines"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sparkpipe-sdp-") as tmp:
        spec = project(Path(tmp), args.data_dir.rstrip("/"))
        settings = [f"spark.sql.warehouse.dir={args.out_dir}", "spark.ui.showConsoleProgress=false"]
        done = subprocess.run(
            [str(cli), *(a for s in settings for a in ("--conf", s)), "run", "--spec", str(spec)],
            env=env,
            check=False,
        )
    print(f"sdp: done in {time.perf_counter() - t0:.1f}s (exit {done.returncode})", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
