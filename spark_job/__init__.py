"""sparkpipe's generic PySpark driver: run a declarative pipeline of Spark SQL sequences.

Importing this package (and its ``config``, ``validation``, ``errors`` and ``bundle`` modules) never
imports pyspark, so the Airflow provider can validate configs without a Spark installation.
"""

from spark_job.markers import APPLICATION_MARKER, METRICS_MARKER

__version__ = "0.1.0"

__all__ = ["APPLICATION_MARKER", "METRICS_MARKER", "__version__"]
