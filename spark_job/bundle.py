"""The driver as a spark-submit application: an entry file plus a content-hashed ``--py-files`` zip.

The zip holds ``spark_job`` and PyYAML (pure Python, without its C extension), the driver's only
dependency beside pyspark, so a bare Spark cluster needs nothing installed. Identical sources give an identical zip
and digest, so runtimes upload each version once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

BUNDLED_PACKAGES = ("spark_job", "yaml")
ENTRY_FILE = "sparkpipe_main.py"
ENTRY_SOURCE = '''"""spark-submit entry point of sparkpipe: python files come from the --py-files bundle."""

import sys

from spark_job.cli import main

if __name__ == "__main__":
    sys.exit(main())
'''
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    """A built driver bundle.

    Attributes:
        main_file: the entry file given to spark-submit as the application.
        py_files: the zip given as ``--py-files``; its name carries the digest.
        digest: hex digest of the zip's content.
    """

    main_file: Path
    py_files: Path
    digest: str


def _package_files(name: str) -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot bundle {name}: it is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files.append((f"{name}/{path.relative_to(root).as_posix()}", path))
    for path in sorted(root.rglob("py.typed")):
        files.append((f"{name}/{path.relative_to(root).as_posix()}", path))
    return files


def bundle_bytes() -> bytes:
    """The zip's content, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for package in BUNDLED_PACKAGES:
            for arcname, path in _package_files(package):
                info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build_bundle(out_dir: str | Path) -> Bundle:
    """Write ``sparkpipe_main.py`` and ``sparkpipe-<digest>.zip`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = bundle_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    py_files = out / f"sparkpipe-{digest}.zip"
    if not py_files.exists() or py_files.read_bytes() != data:
        _write_atomically(py_files, data)
    main_file = out / ENTRY_FILE
    if not main_file.exists() or main_file.read_bytes() != ENTRY_SOURCE.encode():
        _write_atomically(main_file, ENTRY_SOURCE.encode())
    return Bundle(main_file=main_file, py_files=py_files, digest=digest)


def _write_atomically(path: Path, data: bytes) -> None:
    """Concurrent builders in one folder (tasks sharing a work dir) each rename a whole file into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
