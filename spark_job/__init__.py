"""sparkpipe's generic PySpark driver: run a declarative pipeline of Spark SQL sequences.

Layout: the commands at the top (``cli``, ``plan``, ``pipeline_tests``, ``bundle``) with the small
shared modules (``errors``, ``markers``, ``registry``, ``outcomes``); ``testing`` holds the parts of
``sparkpipe test``; ``config`` reads and validates a config and
never imports pyspark, so the Airflow provider validates configs without a Spark installation;
``engine`` runs a validated pipeline on a session; ``quality`` holds the data-quality checks of a
write; ``io`` the readers and writers. See docs/architecture.md.
"""

from spark_job.markers import APPLICATION_MARKER, METRICS_MARKER

__version__ = "0.1.0"

__all__ = ["APPLICATION_MARKER", "METRICS_MARKER", "__version__"]
