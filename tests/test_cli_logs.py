"""``sparkpipe run`` in a terminal: what a person reads on stderr, from a real run in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from .support import REPO

SPARK_LINE = re.compile(r"^\d\d:\d\d:\d\d (ERROR|WARN|INFO|DEBUG) ")


def test_a_run_prints_spark_warnings_only_and_says_what_happened(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "app_name": "logs",
                "sequences": [
                    {
                        "name": "fine",
                        "query": "SELECT id FROM range(1234)",
                        "target": {"type": "parquet", "path": str(out / "fine")},
                    },
                    {
                        "name": "broken",
                        "query": "SELECT CAST(raise_error('boom in broken') AS STRING) AS x FROM range(3)",
                        "target": {"type": "parquet", "path": str(out / "broken")},
                    },
                    {
                        "name": "reads_broken",
                        "query": "SELECT * FROM broken",
                        "target": {"type": "parquet", "path": str(out / "rb")},
                    },
                ],
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(config), "--master", "local[1]"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    err = proc.stderr
    assert proc.returncode == 1, err[-3000:]
    lines = err.splitlines()
    # Spark's lines: WARN and above only, none of the notices every run printed, no progress bars
    assert [line for line in lines if SPARK_LINE.match(line) and " INFO " in line[:15]] == []
    for noise in ("FutureWarning", "incubator modules", "NativeCodeLoader", "default log4j profile", "[Stage "):
        assert noise not in err
    # Java stack traces are cut to a few lines
    traces = re.findall(r"(?:^\tat .*\n)+", err, flags=re.M)
    assert max((block.count("\n") for block in traces), default=0) <= 8
    # the summary says what happened to each sequence, never "None"
    summary = lines[lines.index(next(line for line in lines if line.startswith("sparkpipe: logs failed in"))) :]
    assert re.match(r"^  fine +succeeded, 1,234 rows in \d+\.\d s$", summary[1]), summary
    assert re.match(r"^  broken +failed after \d+\.\d s: .*boom in broken", summary[2]), summary
    assert re.match(r"^  reads_broken +skipped: reads broken, which failed$", summary[3]), summary
    assert "sparkpipe: not run: reads_broken" in summary
    assert "sparkpipe: sequence reads_broken skipped: it reads broken, which failed" in lines
    assert not any("None" in line for line in lines if line.startswith(("sparkpipe", "  ")))
