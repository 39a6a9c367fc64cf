"""What each managed Spark service runs, version by version, and what the sparkpipe driver supports.

The driver runs on Spark 3.5.x and every 4.x, on Python 3.9 to 3.13. The services name their
versions their own way (Dataproc images ``2.2``, Serverless runtimes ``2.3``, EMR release labels
``emr-7.13.0``); :data:`DATAPROC_IMAGES`, :data:`DATAPROC_SERVERLESS_RUNTIMES` and :data:`EMR_RELEASES`
say which Spark and Pythons each version line carries, from the services' release notes. The runtimes
check their version settings against them when a DAG is parsed, and their hooks check what a cluster
or application actually runs before they submit.

A version is looked up by its line: the newest line of the table at or below it. A version newer
than the table knows belongs to the newest line (``emr-7.20.0`` is an EMR 7 release: Spark 3.5), so a
service's next release is accepted without a sparkpipe upgrade; a version below every line the
table knows, or one that does not read as a version of that service, is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DRIVER_SPARK = (3, 5)
"""The oldest Spark line the driver runs on; every later one (4.x) too."""
DRIVER_PYTHON = ((3, 9), (3, 13))
"""The oldest and the newest Python the driver runs on."""
SUPPORTED = "Spark 3.5.x or 4.x with Python 3.9 to 3.13"
"""The supported range, as error messages and docs say it."""

_SPARK_VERSION = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:[-+.][0-9A-Za-z.+-]*)?$")
_PYTHON_VERSION = re.compile(r"^(?P<major>3)\.(?P<minor>\d+)$")


def _pair(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "AEIOU" else "a ") + noun


def python_supported(python: str) -> bool:
    """Whether the driver runs on this Python (``"3.11"``)."""
    return DRIVER_PYTHON[0] <= _pair(python) <= DRIVER_PYTHON[1]


@dataclass(frozen=True)
class VersionLine:
    """A run of a service's versions, from ``since`` up to the next line, that carries one Spark line.

    Attributes:
        since: the first version of the line, ``(major, minor)``.
        spark: the Spark of the line's newest documented version (``"3.5.6"``).
        pythons: the Pythons the line installs, oldest first.
        python: the one the driver runs on by default (where the service offers several, the newest
            supported one every version of the line has).
        newest: the newest version of the line the table was written from, as the service spells it.
    """

    since: tuple[int, int]
    spark: str
    pythons: tuple[str, ...]
    python: str
    newest: str

    @property
    def spark_line(self) -> tuple[int, int]:
        return _pair(self.spark)

    @property
    def supported(self) -> bool:
        """Whether the driver runs here: a supported Spark and at least one supported Python."""
        return self.spark_line >= DRIVER_SPARK and any(python_supported(p) for p in self.pythons)

    def describe(self) -> str:
        return f"Spark {'.'.join(map(str, self.spark_line))}, Python {', '.join(self.pythons)}"


@dataclass(frozen=True)
class VersionTable:
    """One service's versions: how they are spelt and which Spark and Pythons each line runs.

    Attributes:
        service: the service's name for its versions, for messages (``"Dataproc image"``).
        pattern: a version of this service; groups ``major`` and ``minor``.
        example: a supported version, as the service spells it (for messages and docs).
        lines: the version lines, oldest first.
        source: the release notes the figures come from.
    """

    service: str
    pattern: re.Pattern[str]
    example: str
    lines: tuple[VersionLine, ...]
    source: str

    def parse(self, setting: str, version: object) -> tuple[int, int]:
        """``(major, minor)`` of ``version``, or a ``ValueError`` naming ``setting`` when it does not read."""
        if not isinstance(version, str):
            # A number would lose its meaning (2.10 reads as 2.1): versions are text, quoted in JSON.
            given = repr(version) if version is None else f"the {type(version).__name__} {version!r}"
            raise ValueError(
                f"{setting} must be a string such as {self.example!r} (quoted in JSON), not {given} "
                f"(the sparkpipe driver needs {SUPPORTED}: use {self.supported_versions()})"
            )
        match = self.pattern.match(version)
        if match is None:
            raise ValueError(
                f"{setting} {version!r} is not {_a(self.service)} version such as {self.example!r} "
                f"(the sparkpipe driver needs {SUPPORTED}: use {self.supported_versions()})"
            )
        return int(match.group("major")), int(match.group("minor"))

    def line_of(self, setting: str, version: object) -> VersionLine | None:
        """The line ``version`` belongs to (the newest one at or below it), ``None`` below every line."""
        key = self.parse(setting, version)
        return next((line for line in reversed(self.lines) if line.since <= key), None)

    def check(self, setting: str, version: object, *, where: str = "") -> VersionLine:
        """The line of ``version`` when the driver runs on it, else a ``ValueError`` naming the setting,
        what the version runs and the supported range."""
        line = self.line_of(setting, version)
        subject = where or f"{setting} {version!r}"
        if line is None:
            oldest = self.lines[0]
            raise ValueError(
                f"{subject} is older than every {self.service} sparkpipe knows (the oldest is "
                f"{'.'.join(map(str, oldest.since))}, {oldest.describe()}); the sparkpipe driver needs "
                f"{SUPPORTED}: use {self.supported_versions()}"
            )
        if not line.supported:
            raise ValueError(
                f"{subject} runs {line.describe()}; the sparkpipe driver needs {SUPPORTED}: use "
                f"{self.supported_versions()}"
            )
        return line

    def supported_versions(self) -> str:
        """The supported lines in words: ``a supported EMR release, e.g. emr-7.13.0 (Spark 3.5, ...) or ...``."""
        named = [f"{line.newest} ({line.describe()})" for line in self.lines if line.supported]
        listed = ", ".join(named[:-1]) + f" or {named[-1]}" if len(named) > 1 else named[0]
        return f"{_a('supported ' + self.service)}, e.g. {listed}"


def check_spark_version(setting: str, version: object) -> tuple[int, int]:
    """``(major, minor)`` of a Spark version (``"4.1.2"``) the driver runs on, else a ``ValueError``."""
    match = _SPARK_VERSION.match(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"{setting} {version!r} is not a Spark version such as '4.1.2'; the driver needs {SUPPORTED}")
    key = int(match.group("major")), int(match.group("minor"))
    if key < DRIVER_SPARK:
        raise ValueError(f"{setting} {version!r} is older than the sparkpipe driver supports: it needs {SUPPORTED}")
    return key


def check_python(setting: str, python: object, line: VersionLine | None = None, *, where: str = "") -> str:
    """A Python version (``"3.11"``) the driver runs on and, given a version line, one that line installs."""
    if not isinstance(python, str):
        raise ValueError(
            f"{setting} must be a string such as '3.11' (quoted in JSON) or the path of an interpreter, "
            f"not the {type(python).__name__} {python!r} (the sparkpipe driver needs {SUPPORTED})"
        )
    if not _PYTHON_VERSION.match(python):
        raise ValueError(
            f"{setting} must be a Python version such as '3.11' or the path of an interpreter, not {python!r} "
            f"(the sparkpipe driver needs {SUPPORTED})"
        )
    if not python_supported(python):
        raise ValueError(f"{setting} {python!r}: the sparkpipe driver needs {SUPPORTED}")
    if line is not None and python not in line.pythons:
        raise ValueError(
            f"{setting} {python!r}: {where or 'the release'} installs Python {', '.join(line.pythons)} only; "
            f"choose one of them or leave {setting} unset (the sparkpipe driver needs {SUPPORTED})"
        )
    return python


# The tables. Sources: the services' release notes and version lists, as of the newest version named
# in each line (Dataproc and Serverless for Apache Spark: the image and runtime version lists and
# their component pages; EMR: the Spark release history, the 7.x application versions table and the
# emr-spark-8.0.0 release notes of the EMR Release Guide, the same releases on EMR on EKS and EMR
# Serverless).

DATAPROC_IMAGES = VersionTable(
    service="Dataproc image",
    pattern=re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:-[a-z]+\d*)*$"),
    example="2.3",
    lines=(
        VersionLine((1, 0), "2.4.8", ("3.7",), "3.7", "1.5"),
        VersionLine((2, 0), "3.1.3", ("3.8",), "3.8", "2.0"),
        VersionLine((2, 1), "3.3.2", ("3.10",), "3.10", "2.1"),
        VersionLine((2, 2), "3.5.3", ("3.11",), "3.11", "2.2"),
        VersionLine((2, 3), "3.5.3", ("3.11",), "3.11", "2.3"),
        VersionLine((3, 0), "4.0.0", ("3.11",), "3.11", "3.0"),
    ),
    source="Dataproc image version list and release notes (image 3.0: Spark 4.0.0, Python 3.11)",
)
"""Dataproc on Compute Engine images (``2.2``, ``2.2-debian12``, ``2.2.53-ubuntu22``)."""

DATAPROC_SERVERLESS_RUNTIMES = VersionTable(
    service="Serverless for Apache Spark runtime",
    pattern=re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:-[0-9A-Za-z.]+)?$"),
    example="2.3",
    lines=(
        VersionLine((1, 0), "3.2.1", ("3.9",), "3.9", "1.0"),
        VersionLine((1, 1), "3.3.4", ("3.10",), "3.10", "1.1"),
        VersionLine((1, 2), "3.5.1", ("3.12",), "3.12", "1.2"),
        VersionLine((2, 0), "3.3.2", ("3.10",), "3.10", "2.0"),
        VersionLine((2, 1), "3.4.0", ("3.11",), "3.11", "2.1"),
        VersionLine((2, 2), "3.5.1", ("3.12",), "3.12", "2.2"),
        VersionLine((2, 3), "3.5.3", ("3.11",), "3.11", "2.3"),
        VersionLine((3, 0), "4.0.0", ("3.12",), "3.12", "3.0"),
    ),
    source="Serverless for Apache Spark runtime versions and the runtime 1.1, 1.2, 2.2 and 3.0 component pages",
)
"""Dataproc Serverless (Serverless for Apache Spark) runtime versions (``2.3``, ``1.1.86``)."""

EMR_RELEASES = VersionTable(
    service="EMR release",
    pattern=re.compile(r"^emr-(?:spark-)?(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?$"),
    example="emr-7.13.0",
    lines=(
        VersionLine((5, 0), "2.4.8", ("3.7",), "3.7", "emr-5.36.2"),
        VersionLine((6, 0), "3.4.1", ("3.7",), "3.7", "emr-6.15.0"),
        VersionLine((7, 0), "3.5.0", ("3.9",), "3.9", "emr-7.0.0"),
        VersionLine((7, 1), "3.5.6", ("3.9", "3.11"), "3.11", "emr-7.13.0"),
        VersionLine((8, 0), "4.0.2", ("3.11", "3.12", "3.13"), "3.11", "emr-spark-8.0.0"),
    ),
    source="EMR Release Guide: Spark release history, application versions in EMR 7.x, emr-spark-8.0.0",
)
"""EMR release labels of EMR on EC2, EMR Serverless and EMR on EKS (``emr-7.13.0``, ``emr-7.13.0-latest``,
``emr-7.13.0-20260421``, ``emr-spark-8.0.0``); 7.1 and later install Python 3.9 (the system's default)
and 3.11, emr-spark-8 Pythons 3.11 to 3.13."""
