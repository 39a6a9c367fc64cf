"""The jars Spark needs beside pyspark to reach S3, GCS, Avro, JDBC databases, Delta, Iceberg and
OpenLineage: one table per Spark release line, read by the setup script (which fetches the jars with
Maven) and by messages that tell a user what to add.

Each connector is pinned to the release built for that Spark line: ``hadoop-aws`` of the Hadoop that
line's pyspark ships (with the AWS SDK it was built with), Spark's own ``spark-avro`` and
``spark-connect`` modules at the Spark version itself, Delta and Iceberg releases built against that
Spark. ``None`` says that no release of the connector exists on Maven Central for that Spark
(checked with ``mvn dependency:get``). The lines 3.5, 4.0 and 4.3 are the ones the tests run; 4.1
and 4.2 are pinned from their projects' poms (the Spark and Hadoop versions they were built with).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SPARK_VERSION = "{spark}"
"""Placeholder of an artifact version: Spark's own modules are released with every Spark version."""


@dataclass(frozen=True)
class Artifact:
    """One jar on Maven Central.

    Attributes:
        group: the Maven group id, e.g. ``org.apache.hadoop``.
        name: the artifact id, e.g. ``hadoop-aws``.
        version: the pinned version (:data:`SPARK_VERSION` for Spark's own modules, see :func:`connector`).
        classifier: a jar published beside the main one (the GCS connector's ``shaded``), else empty.
    """

    group: str
    name: str
    version: str
    classifier: str = ""

    @property
    def coordinate(self) -> str:
        """``group:name:version[:classifier]``."""
        tail = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.name}:{self.version}{tail}"

    @property
    def file_name(self) -> str:
        """The jar's file name, as Maven stores and copies it."""
        tail = f"-{self.classifier}" if self.classifier else ""
        return f"{self.name}-{self.version}{tail}.jar"


@dataclass(frozen=True)
class Connector:
    """What one connector needs on the driver and executors.

    Attributes:
        name: the table's key (``s3``, ``gcs``, ``avro``, ``mariadb``, ...).
        what: what the connector gives, for messages.
        artifacts: the jars, the connector's own first: ``spark.jars`` needs all of them (it resolves
            nothing), ``spark.jars.packages`` only the first (its dependencies come along).
        settings: Spark properties the connector needs on this line whatever the pipeline (the GCS
            connector's filesystem classes, and on Hadoop 3.5 sizes its defaults give with units).
    """

    name: str
    what: str
    artifacts: tuple[Artifact, ...]
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str | None:
        """The ``spark.jars.packages`` entry, or None when the jar has a classifier (packages cannot
        name one: give the jar with ``spark.jars``)."""
        main = self.artifacts[0]
        return None if main.classifier else main.coordinate

    def how_to_add(self) -> str:
        """One sentence a message can end with."""
        if self.package:
            found = f"add {self.package} to spark.jars.packages (or its jars to spark.jars)"
        else:
            found = f"add {self.artifacts[0].file_name} ({self.artifacts[0].coordinate}) to spark.jars"
        if self.settings:
            found += " and set " + ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return found


@dataclass(frozen=True)
class SparkLine:
    """One Spark release line (a minor version) and the connectors built for it.

    Attributes:
        minor: ``3.5``, ``4.0``, ...
        scala: the Scala version of that line's pyspark (``_2.12``/``_2.13`` artifacts).
        hadoop: the Hadoop version of that line's pyspark jars (``hadoop-client-api-<hadoop>.jar``).
        connectors: connector name -> what to add, or None when nothing is published for this line.
        unpublished: connector name -> Spark versions of this line whose own module of that name is
            not on Maven Central (e.g. ``spark-avro`` of Spark 4.3.0).
    """

    minor: str
    scala: str
    hadoop: str
    connectors: Mapping[str, Connector | None]
    unpublished: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _jar(coordinate: str) -> Artifact:
    group, name, version, *classifier = coordinate.split(":")
    return Artifact(group, name, version, classifier[0] if classifier else "")


def _connector(name: str, what: str, *coordinates: str, settings: Mapping[str, str] | None = None) -> Connector:
    return Connector(name, what, tuple(_jar(c) for c in coordinates), dict(settings or {}))


GCS_SETTINGS = {
    # A filesystem in a jar of spark.jars is not found by Hadoop's lookup of the gs scheme (that jar is
    # not on the JVM's class path when Hadoop lists its filesystems): name the classes.
    "spark.hadoop.fs.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFS",
}
"""What the GCS connector needs given through ``spark.jars`` (Dataproc's images configure it themselves)."""

HADOOP_35_GCS_SETTINGS = {
    **GCS_SETTINGS,
    # Hadoop 3.5's core-default.xml maps gs:// to its own hadoop-gcp module and gives sizes with units
    # ("64m") that the Cloud Storage connector reads as plain numbers: give those in bytes.
    "spark.hadoop.fs.gs.block.size": str(64 << 20),
    "spark.hadoop.fs.gs.rewrite.max.chunk.size": str(512 << 20),
    "spark.hadoop.fs.gs.outputstream.buffer.size": str(8 << 20),
    "spark.hadoop.fs.gs.inputstream.inplace.seek.limit": str(8 << 20),
    "spark.hadoop.fs.gs.inputstream.min.range.request.size": str(2 << 20),
}
"""What the GCS connector needs on the lines whose pyspark ships Hadoop 3.5 (Spark 4.2 and later)."""


_JDBC = {
    "postgresql": _connector("postgresql", "the PostgreSQL JDBC driver", "org.postgresql:postgresql:42.7.8"),
    "mariadb": _connector(
        "mariadb", "MariaDB Connector/J (MariaDB and MySQL)", "org.mariadb.jdbc:mariadb-java-client:3.5.11"
    ),
    "mysql": _connector("mysql", "MySQL Connector/J", "com.mysql:mysql-connector-j:9.5.0"),
}


def _line(
    minor: str,
    scala: str,
    hadoop: str,
    aws: tuple[str, ...],
    gcs: str,
    delta: tuple[str, ...] | None,
    iceberg: str | None,
    openlineage: str,
    connect: bool = False,
    unpublished: Mapping[str, tuple[str, ...]] | None = None,
) -> SparkLine:
    gcs_settings = HADOOP_35_GCS_SETTINGS if hadoop.startswith("3.5.") else GCS_SETTINGS
    connectors: dict[str, Connector | None] = {
        "s3": _connector("s3", f"s3a:// paths (hadoop-aws {hadoop} and its AWS SDK)", *aws),
        "gcs": _connector("gcs", "gs:// paths (the Cloud Storage connector, shaded)", gcs, settings=gcs_settings),
        "avro": _connector("avro", "the avro format", f"org.apache.spark:spark-avro_{scala}:{SPARK_VERSION}"),
        **_JDBC,
        "delta": _connector("delta", "the delta format and Delta tables", *delta) if delta else None,
        "iceberg": _connector("iceberg", "Iceberg tables and catalogs", iceberg) if iceberg else None,
        "openlineage": _connector(
            "openlineage", "OpenLineage events of the Spark application (openlineage-spark)", openlineage
        ),
    }
    if connect:  # later lines carry the Spark Connect server in pyspark's own jars
        connectors["spark-connect"] = _connector(
            "spark-connect", "the Spark Connect server", f"org.apache.spark:spark-connect_{scala}:{SPARK_VERSION}"
        )
    return SparkLine(minor, scala, hadoop, connectors, dict(unpublished or {}))


SPARK_LINES: dict[str, SparkLine] = {
    line.minor: line
    for line in (
        _line(
            "3.5",
            "2.12",
            "3.3.4",
            aws=("org.apache.hadoop:hadoop-aws:3.3.4", "com.amazonaws:aws-java-sdk-bundle:1.12.262"),
            # The connector's 3.x releases read through Hadoop 3.3.5's openFile API (Options.OpenFileOptions),
            # which pyspark 3.5's Hadoop 3.3.4 lacks; its 2.2 release takes fs.gs.auth.null.enable and
            # fs.gs.auth.service.account.enable where 3.x takes fs.gs.auth.type.
            gcs="com.google.cloud.bigdataoss:gcs-connector:hadoop3-2.2.26:shaded",
            delta=("io.delta:delta-spark_2.12:3.3.2", "io.delta:delta-storage:3.3.2"),
            iceberg="org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.0",
            openlineage="io.openlineage:openlineage-spark_2.12:1.53.0",
            connect=True,
            unpublished={"spark-connect": ("3.5.8", "3.5.9")},
        ),
        _line(
            "4.0",
            "2.13",
            "3.4.1",
            aws=("org.apache.hadoop:hadoop-aws:3.4.1", "software.amazon.awssdk:bundle:2.24.6"),
            gcs="com.google.cloud.bigdataoss:gcs-connector:3.1.3:shaded",
            delta=("io.delta:delta-spark_2.13:4.0.1", "io.delta:delta-storage:4.0.1"),
            iceberg="org.apache.iceberg:iceberg-spark-runtime-4.0_2.13:1.10.0",
            openlineage="io.openlineage:openlineage-spark_2.13:1.53.0",
        ),
        _line(
            "4.1",
            "2.13",
            "3.4.2",
            aws=(
                "org.apache.hadoop:hadoop-aws:3.4.2",
                "software.amazon.awssdk:bundle:2.29.52",
                "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.2.1",
            ),
            gcs="com.google.cloud.bigdataoss:gcs-connector:3.1.3:shaded",
            delta=("io.delta:delta-spark_2.13:4.3.1", "io.delta:delta-storage:4.3.1"),
            iceberg="org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.11.0",
            openlineage="io.openlineage:openlineage-spark_2.13:1.53.0",
            unpublished={"avro": ("4.1.0", "4.1.2")},
        ),
        _line(
            "4.2",
            "2.13",
            "3.5.0",
            aws=(
                "org.apache.hadoop:hadoop-aws:3.5.0",
                "software.amazon.awssdk:bundle:2.35.4",
                "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1",
            ),
            gcs="com.google.cloud.bigdataoss:gcs-connector:3.1.3:shaded",
            delta=("io.delta:delta-spark_2.13:4.4.0", "io.delta:delta-storage:4.4.0"),
            iceberg=None,
            openlineage="io.openlineage:openlineage-spark_2.13:1.53.0",
        ),
        _line(
            "4.3",
            "2.13",
            "3.5.0",
            aws=(
                "org.apache.hadoop:hadoop-aws:3.5.0",
                "software.amazon.awssdk:bundle:2.35.4",
                "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1",
            ),
            gcs="com.google.cloud.bigdataoss:gcs-connector:3.1.3:shaded",
            delta=None,
            iceberg=None,
            openlineage="io.openlineage:openlineage-spark_2.13:1.53.0",
            unpublished={"avro": ("4.3.0",)},
        ),
    )
}
"""Spark release line (``major.minor``) -> its connectors."""


def minor_of(spark_version: str) -> str:
    """``4.0`` for ``4.0.2``, ``3.5.7-amzn-1`` or ``3.5``."""
    parts = spark_version.strip().split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        raise ValueError(f"{spark_version!r} is not a Spark version (major.minor[.patch])")
    return f"{parts[0]}.{''.join(c for c in parts[1] if c.isdigit()) or parts[1]}"


def spark_line(spark_version: str) -> SparkLine | None:
    """The table's line of ``spark_version``, or None for a Spark line it does not hold."""
    return SPARK_LINES.get(minor_of(spark_version))


def connector(name: str, spark_version: str) -> Connector | None:
    """What ``name`` needs on ``spark_version`` (Spark's own modules at that exact version), or None
    when no release of it exists for that Spark. Raises ``KeyError`` for a name the table lacks."""
    line = spark_line(spark_version)
    if line is None:
        raise KeyError(f"no connectors are pinned for Spark {spark_version} (lines: {', '.join(SPARK_LINES)})")
    if name not in line.connectors:
        raise KeyError(f"unknown connector {name!r} for Spark {line.minor} (known: {', '.join(line.connectors)})")
    found = line.connectors[name]
    if found is None or spark_version in line.unpublished.get(name, ()):
        return None
    artifacts = tuple(
        Artifact(a.group, a.name, spark_version, a.classifier) if a.version == SPARK_VERSION else a
        for a in found.artifacts
    )
    return Connector(found.name, found.what, artifacts, found.settings)


def connectors(spark_version: str) -> dict[str, Connector | None]:
    """Every connector of ``spark_version``'s line, by name (None: not published for it)."""
    line = spark_line(spark_version)
    if line is None:
        raise KeyError(f"no connectors are pinned for Spark {spark_version} (lines: {', '.join(SPARK_LINES)})")
    return {name: connector(name, spark_version) for name in line.connectors}


def how_to_add(name: str, spark_version: str) -> str:
    """What a message says to do when ``name`` is missing on ``spark_version``."""
    try:
        found = connector(name, spark_version)
    except KeyError as exc:
        return str(exc.args[0])
    if found is None:
        return f"no {name} connector is published for Spark {spark_version}: run it on a Spark that has one"
    return found.how_to_add()


_NO_CLASS = r"(?:ClassNotFoundException:?|NoClassDefFoundError:?|Cannot find catalog plugin class for catalog \S+:) "

# What Spark and Hadoop say when a connector's jar is not on the class path, by connector.
_DATA_SOURCE = r"Failed to find (?:the )?data source:? [`'\"]?"
_NO_DRIVER = r"No suitable driver.{0,40}jdbc:"
_MISSING: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.I))
    for name, pattern in (
        ("s3", r'No FileSystem for scheme "?s3a?"?|S3AFileSystem not found'),
        ("gcs", r'No FileSystem for scheme "?gs"?|GoogleHadoopFileSystem not found'),
        ("avro", rf"{_DATA_SOURCE}avro"),
        ("delta", rf"{_DATA_SOURCE}delta|{_NO_CLASS}(?:io\.delta|org\.apache\.spark\.sql\.delta)\."),
        ("iceberg", rf"{_DATA_SOURCE}iceberg|{_NO_CLASS}org\.apache\.iceberg\."),
        ("openlineage", rf"{_NO_CLASS}io\.openlineage"),
        ("postgresql", rf"{_NO_DRIVER}postgresql|{_NO_CLASS}org\.postgresql"),
        ("mariadb", rf"{_NO_DRIVER}(?:mariadb|mysql)|{_NO_CLASS}org\.mariadb"),
        ("mysql", rf"{_NO_CLASS}com\.mysql"),
    )
)


def missing_connector(message: str) -> str | None:
    """The connector whose jar Spark's error ``message`` shows missing (``s3``, ``avro``, ...), or None."""
    for name, pattern in _MISSING:
        if pattern.search(message):
            return name
    return None
