"""The provider's structure: no import circle, runtimes are data naming their hooks, one registry agreeing
with the provider info, and a runtime of another package (the worked example of docs/runtimes/custom.md)
registered by an entry point and run end to end."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sparkpipe.get_provider_info import (
    BUILTIN_RUNTIME_KINDS,
    get_provider_info,
    runtime_kinds_installed,
)
from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook, hook_class_of, hook_for
from airflow_provider_sparkpipe.runs import PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes import runtime_from_dict, runtime_kinds, runtimes
from tests.support import REPO, SparkConnectServer

PACKAGE = REPO / "airflow_provider_sparkpipe"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the provider modules it imports, anywhere in it (top level, functions, TYPE_CHECKING)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import mod`` imports the module pkg.mod when there is one, else names of pkg.
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_provider_imports_no_circle() -> None:
    graph = import_graph()
    assert len(graph) > 20 and graph["airflow_provider_sparkpipe.hooks.emr"]  # the drawing is not empty
    assert cycles(graph) == []


def test_the_circle_finder_finds_circles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtimes_are_data_that_never_import_hooks_or_cloud_sdks() -> None:
    graph = import_graph()
    runtime_modules = [m for m in graph if m.startswith("airflow_provider_sparkpipe.runtimes")]
    assert len(runtime_modules) >= 6
    for module in runtime_modules:
        assert not {m for m in graph[module] if ".hooks" in m or ".operators" in m}, module
        source = (REPO / (module.replace(".", "/") + ".py")).read_text() if not module.endswith("runtimes") else ""
        assert not re.search(r"^\s*(from|import) (boto3|botocore|google|kubernetes|grpc)\b", source, re.M), module


def test_every_registered_runtime_names_a_hook_and_the_provider_info_agrees() -> None:
    kinds = runtime_kinds()
    assert kinds == sorted(BUILTIN_RUNTIME_KINDS)
    hook_modules = set()
    for kind, cls in runtimes.items():
        hook_cls = hook_class_of(cls)
        assert issubclass(hook_cls, SparkPipelineHook) and hook_cls is not SparkPipelineHook, kind
        assert cls.hook_class == f"{hook_cls.__module__}.{hook_cls.__qualname__}"
        hook_modules.add(hook_cls.__module__)
    info = get_provider_info()
    (provider_hooks,) = info["hooks"]
    assert set(provider_hooks["python-modules"]) == {*hook_modules, "airflow_provider_sparkpipe.hooks.base"}
    form_kinds = info["connection-types"][0]["conn-fields"]["runtime"]["schema"]["enum"]
    assert sorted(k for k in form_kinds if k is not None) == kinds


def test_a_bad_hook_class_is_a_clear_error() -> None:
    from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
    from airflow_provider_sparkpipe.runtimes import LocalSpark

    class Broken(LocalSpark):
        hook_class = "airflow_provider_sparkpipe.hooks.local.NoSuchHook"

    class NotAHook(LocalSpark):
        hook_class = "airflow_provider_sparkpipe.runtimes.local.LocalSpark"

    with pytest.raises(SparkRuntimeError, match=r"cannot import its hook_class '[\w.]+\.NoSuchHook'"):
        hook_for(Broken())
    with pytest.raises(SparkRuntimeError, match="is not a SparkPipelineHook"):
        hook_for(NotAHook())


# The worked example of docs/runtimes/custom.md, installed as a package with an entry point. ----------


def doc_files() -> dict[str, str]:
    """The example's files: the fenced python blocks whose first line names a file."""
    text = (REPO / "docs" / "runtimes" / "custom.md").read_text()
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first, _, rest = block.partition("\n")
        if first.startswith("# ") and first.endswith(".py"):
            files[first[2:]] = rest
    entry = re.search(r'\[project\.entry-points\."sparkpipe\.runtimes"\]\n(.+?)\n```', text, re.S)
    assert entry is not None, "the entry point of the example is missing from the docs"
    files["entry_points.txt"] = "[sparkpipe.runtimes]\n" + textwrap.dedent(entry.group(1)).replace('"', "") + "\n"
    return files


@pytest.fixture
def installed_example(tmp_path: Path) -> Iterator[Path]:
    files = doc_files()
    assert set(files) == {"sparkpipe_connect/runtime.py", "sparkpipe_connect/hook.py", "entry_points.txt"}
    site = tmp_path / "site"
    for name, text in files.items():
        if name == "entry_points.txt":
            continue
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    (site / "sparkpipe_connect" / "__init__.py").write_text("")
    dist = site / "sparkpipe_connect-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sparkpipe-connect\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(files["entry_points.txt"])
    sys.path.insert(0, str(site))
    runtimes.reload_plugins()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("sparkpipe_connect")]:
            del sys.modules[name]
        runtimes.reload_plugins()
        assert "spark_connect" not in runtime_kinds()


def test_the_documented_runtime_registers_by_entry_point_and_runs_a_pipeline(
    installed_example: Path, spark_connect_server: SparkConnectServer, tmp_path: Path
) -> None:
    assert "spark_connect" in runtime_kinds() and "spark_connect" in runtime_kinds_installed()
    # A connection's extras name it; the operator's and the trigger's hook_for finds its hook.
    runtime = runtime_from_dict(
        {"runtime": "spark_connect", "remote": spark_connect_server.url, "work_dir": str(tmp_path / "work")}
    )
    hook = hook_for(runtime)
    assert type(hook).__name__ == "SparkConnectHook" and hook.runtime is runtime
    with pytest.raises(Exception, match="remote must be a Spark Connect URL"):
        runtime_from_dict({"runtime": "spark_connect", "remote": "http://x"})

    out = tmp_path / "out"
    document: dict[str, Any] = {
        "app_name": "connect example",
        "sequences": [
            {
                "name": "numbers",
                "query": "SELECT id, id * 2 AS twice FROM range(25)",
                "target": {"type": "parquet", "path": str(out / "numbers"), "mode": "overwrite", "atomic": False},
            }
        ],
    }
    submission = PipelineSubmission(document=document, app_name="connect example", task_key="dag__numbers__run__-1")
    run = hook.submit(submission)
    assert hook.wait(run, poll_interval=0.2) == RunState.SUCCEEDED
    metrics = hook.fetch_metrics(run)
    assert metrics is not None and metrics["status"] == "succeeded", metrics
    assert metrics["sequences"]["numbers"]["rows_written"] == 25
    # The common staging layout under the runtime's work dir.
    run_dir = tmp_path / "work" / "runs" / submission.run_key
    assert (run_dir / "config.json").stat().st_mode & 0o077 == 0  # only the owner reads the config
    assert (run_dir / "metrics.json").is_file()
    assert len(list((tmp_path / "work" / "bundles").glob("*/sparkpipe-*.zip"))) == 1
