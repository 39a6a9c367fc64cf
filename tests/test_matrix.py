"""The test matrix's cells (``tests/matrix/``): each has pinned requirements and a list of what it runs,
and every test file a cell runs, with the conftest files pytest loads for it, is linted for Python 3.9."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from .support import REPO

MATRIX = REPO / "tests" / "matrix"


def cells() -> list[str]:
    return sorted(p.stem for p in MATRIX.glob("*.tests"))


def run_files(cell: str) -> set[Path]:
    """The test files a cell's list names (node ids and options left aside), and their conftest files."""
    files: set[Path] = set()
    for line in (MATRIX / f"{cell}.tests").read_text().splitlines():
        arg = line.split("#", 1)[0].strip()
        if not arg or arg.startswith("-"):
            continue
        path = REPO / arg.split("::", 1)[0]
        assert path.is_file(), f"tests/matrix/{cell}.tests names {arg}, which does not exist"
        files.add(path)
        for folder in path.relative_to(REPO).parents:
            for helper in ("conftest.py", "__init__.py"):
                if (REPO / folder / helper).is_file():
                    files.add(REPO / folder / helper)
    return files


def imported_siblings(path: Path) -> set[Path]:
    """The test modules ``path`` imports relatively (``from .test_bad_input import values``)."""
    found = set()
    for name in re.findall(r"^from \.(\w+) import", path.read_text(), flags=re.MULTILINE):
        sibling = path.parent / f"{name}.py"
        if sibling.is_file():
            found.add(sibling)
    return found


def test_every_cell_is_pinned_and_names_its_python_and_spark() -> None:
    names = cells()
    assert {"py39-spark35", "py310-spark40"} <= set(names)
    script = (REPO / "scripts" / "matrix.sh").read_text()
    for cell in names:
        assert re.fullmatch(r"py3\d+-(spark\d+|nospark)", cell), cell
        pins = (MATRIX / f"{cell}.txt").read_text()
        assert f"{cell}.in" in pins and "--python-version" in pins  # made by scripts/matrix.sh compile
        spark = re.search(r"^pyspark==(\d+)\.(\d+)\.\d+", pins, flags=re.MULTILINE)
        if cell.endswith("nospark"):
            assert spark is None
        else:
            assert spark is not None and cell.endswith(f"spark{spark.group(1)}{spark.group(2)}"), cell
        assert cell in script  # in ALL_CELLS


def test_what_a_cell_runs_is_linted_for_python_3_9() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    targets = config["tool"]["ruff"]["per-file-target-version"]
    py39 = [pattern for pattern, version in targets.items() if version == "py39"]
    for cell in cells():
        files = run_files(cell)
        files |= {s for f in files for s in imported_siblings(f)}
        for path in sorted(files):
            relative = str(path.relative_to(REPO))
            assert any(fnmatch.fnmatch(relative, p) for p in py39), (
                f"tests/matrix/{cell}.tests runs {relative}: add it to per-file-target-version in pyproject.toml"
            )


def test_a_missing_interpreter_stops_the_setup_naming_it_and_how_to_install_it(tmp_path: Path) -> None:
    # A PATH with the few tools the script needs before it looks for the interpreter, and no Python.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "ls", "sort"):
        found = shutil.which(tool)
        assert found is not None, tool
        (tools / tool).symlink_to(found)
    env = {"PATH": str(tools), "PYENV_ROOT": str(tmp_path / "pyenv"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(shutil.which("bash")), "scripts/matrix.sh", "setup", "py39-spark35"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the cell py39-spark35 needs Python 3.9, which this machine does not have" in done.stderr
    assert f"{tmp_path}/pyenv/versions/3.9.*" in done.stderr and "pyenv install 3.9" in done.stderr
