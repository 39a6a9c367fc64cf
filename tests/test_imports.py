"""The driver imports only the standard library, pyspark and PyYAML (anywhere in ``spark_job``, lazy imports
included). The provider's side of the rule, no pyspark and no cloud SDK at DAG parse, is checked by
running the parse in ``tests/provider/test_dag_parsing.py``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .support import REPO


def imports(path: Path) -> set[str]:
    """The top-level package of every import in a file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_driver_imports_only_the_standard_library_pyspark_and_yaml() -> None:
    allowed = set(sys.stdlib_module_names) | {"spark_job", "pyspark", "py4j", "yaml"}
    bad = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "spark_job").rglob("*.py"))
        for name in imports(path)
        if name not in allowed
    }
    assert not bad


def test_nothing_in_the_config_package_imports_pyspark() -> None:
    """The provider validates configs with ``spark_job.config`` where no Spark is installed: no module of
    the folder imports pyspark (lazily neither), and importing all of them loads none."""
    folder = REPO / "spark_job" / "config"
    bad = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted(folder.rglob("*.py"))
        for name in imports(path)
        if name in ("pyspark", "py4j")
    }
    assert not bad
    modules = sorted(f"spark_job.config.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
