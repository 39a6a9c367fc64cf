"""Apache Airflow provider for sparkpipe: ``SparkPipelineOperator``, its runtimes and hooks, and the
``sparkpipe`` connection type. Nothing here imports pyspark or a cloud client library."""
