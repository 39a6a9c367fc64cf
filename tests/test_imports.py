"""The driver imports only the standard library, pyspark and PyYAML (anywhere in ``spark_job``, lazy imports
included). The provider's side of the rule, no pyspark and no cloud SDK at DAG parse, is checked by
running the parse in ``tests/provider/test_dag_parsing.py``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from .conftest import REPO


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
