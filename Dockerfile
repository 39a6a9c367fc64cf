# syntax=docker/dockerfile:1
# The sparkpipe driver image for Kubernetes (SparkKubernetes runtime, Spark operator SparkApplication):
# the official apache/spark Python image (Java 17) plus sparkpipe's driver bundle in /opt/sparkpipe:
#   /opt/sparkpipe/sparkpipe_main.py  the application (mainApplicationFile local:///opt/sparkpipe/sparkpipe_main.py)
#   /opt/sparkpipe/sparkpipe.zip      spark_job + PyYAML, pure Python (deps.pyFiles)
# The bundle is the same artefact LocalSpark ships with --py-files (spark_job.bundle): no Airflow, no
# pip install in the Spark image. Build from the repository root:
#   docker build -t registry.example.com/sparkpipe-driver:0.1.0 .
# The base is an official apache/spark Python image (apache/spark-docker publishes 3.5.0-3.5.8 as
# <v>-scala2.12-java17-python3-ubuntu and 4.0.0-4.1.2 as <v>-scala2.13-java17-python3-ubuntu, all on
# Ubuntu 22.04 with Python 3.10). Keep SparkKubernetes(spark_version=...) equal to SPARK_VERSION; its
# default is this one.
ARG SPARK_VERSION=4.1.2
ARG SPARK_IMAGE=apache/spark:${SPARK_VERSION}-scala2.13-java17-python3-ubuntu

# 1. Build the driver bundle (spark_job plus the PyYAML that pyproject.toml requires).
FROM python:3.11-slim AS bundle
RUN pip install --no-cache-dir "pyyaml>=6"
COPY spark_job /src/spark_job
WORKDIR /src
RUN python -m spark_job bundle --out /bundle \
    && mv /bundle/sparkpipe-*.zip /bundle/sparkpipe.zip

# 2. The Spark image with the bundle.
FROM ${SPARK_IMAGE}
ARG SPARK_VERSION
USER root
# The driver runs on Python 3.9 to 3.13 and Spark 3.5.x or 4.x (executors run no sparkpipe code for SQL
# pipelines); the image must hold the Spark that SPARK_VERSION (and the SparkApplication) names.
RUN python3 -c 'import sys; assert (3, 9) <= sys.version_info[:2] <= (3, 13), f"the driver runs on Python 3.9 to 3.13, this base image has {sys.version.split()[0]}: choose another SPARK_IMAGE"'
RUN ls /opt/spark/jars/spark-core_*-"${SPARK_VERSION}".jar >/dev/null 2>&1 \
    || { echo "the base image holds no Spark ${SPARK_VERSION} (see /opt/spark/jars): set SPARK_VERSION to its Spark" >&2; exit 1; }
COPY --from=bundle --chmod=0644 /bundle/sparkpipe_main.py /bundle/sparkpipe.zip /opt/sparkpipe/
# `python3 -m spark_job validate --config ...` works in the image too (debugging a config by hand).
ENV PYTHONPATH=/opt/sparkpipe/sparkpipe.zip
# 3. A class-data archive of the classes a pipeline run loads, mapped by the driver and executor JVMs at
#    start instead of loading them (SparkKubernetes(class_data=True) puts -XX:SharedArchiveFile in the
#    SparkApplication's javaOptions): `sparkpipe class-data` runs a small built-in pipeline once on this
#    image's JDK and Spark with -XX:ArchiveClassesAtExit, with the class path the driver has under the
#    Spark operator (Spark's jars first). About 200 MB; the build fails if it cannot be made.
RUN python3 -m spark_job class-data --out /opt/sparkpipe/class-data/spark.jsa --spark-home /opt/spark \
        --conf "spark.driver.extraClassPath=/opt/spark/jars/*"
USER spark
