"""sparkpipe's generic PySpark driver: run a declarative pipeline of Spark SQL sequences.

Importing this package (and its ``config``, ``validation``, ``errors`` and ``bundle`` modules) never
imports pyspark, so the Airflow provider can validate configs without a Spark installation.
"""

__version__ = "0.1.0"

METRICS_MARKER = "SPARKPIPE_METRICS "
"""Prefix of the single stdout line that carries the run's metrics document as JSON."""

APPLICATION_MARKER = "SPARKPIPE_APPLICATION "
"""Prefix of the stdout line, printed once the session runs, with ``{"app_id", "ui_url"}`` as JSON:
the Spark application's id and its live Spark UI address (null when the UI is disabled or the
session is a Spark Connect one)."""
