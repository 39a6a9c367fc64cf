"""The connector jars of the running pyspark, as ``scripts/connectors.sh`` caches them from the table in
``spark_job/config/connectors.py``. Python 3.9 and the standard library only: the matrix cells import it."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from spark_job.config.connectors import Connector, connector

from ..support import REPO


def spark_version() -> str:
    """The installed pyspark's version, which is the Spark the tests run."""
    return version("pyspark")


def jar_dir() -> Path:
    return REPO / ".cache" / "jars" / f"spark-{spark_version()}"


def available(name: str) -> bool:
    """Whether the table has the connector ``name`` for the running Spark."""
    return connector(name, spark_version()) is not None


def _connector(name: str) -> Connector:
    found = connector(name, spark_version())
    if found is None:
        raise RuntimeError(f"no {name} connector exists for Spark {spark_version()} (spark_job/config/connectors.py)")
    return found


def jars(*names: str) -> str:
    """The ``spark.jars`` value for these connectors: their cached jars, comma-separated."""
    paths = []
    for name in names:
        for artifact in _connector(name).artifacts:
            path = jar_dir() / artifact.file_name
            if not path.is_file():
                raise RuntimeError(
                    f"{path} is missing: run 'bash scripts/connectors.sh', which fetches the connector jars with Maven"
                )
            paths.append(str(path))
    return ",".join(paths)


def spark_conf(*names: str) -> dict[str, str]:
    """``spark.jars`` and the settings these connectors need on the running Spark, for a config's spark_conf."""
    conf = {"spark.jars": jars(*names)}
    for name in names:
        conf.update(_connector(name).settings)
    if "delta" in names:  # Delta reads its log in 50 partitions by default: a test's tiny tables need 2
        conf["spark.databricks.delta.snapshotPartitions"] = "2"
    return conf
