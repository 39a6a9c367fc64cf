# syntax=docker/dockerfile:1
# The sparkpipe driver image for Kubernetes (SparkKubernetes runtime, Spark operator SparkApplication):
# the official apache/spark Python image (Java 17) plus sparkpipe's driver bundle in /opt/sparkpipe:
#   /opt/sparkpipe/sparkpipe_main.py  the application (mainApplicationFile local:///opt/sparkpipe/sparkpipe_main.py)
#   /opt/sparkpipe/sparkpipe.zip      spark_job + PyYAML, pure Python (deps.pyFiles)
# The bundle is the same artefact LocalSpark ships with --py-files (spark_job.bundle): no Airflow, no
# pip install in the Spark image. Build from the repository root:
#   docker build -t registry.example.com/sparkpipe-driver:0.1.0 .
ARG SPARK_VERSION=4.3.0
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
USER root
# spark_job needs Python 3.11 or later on the driver (executors run no sparkpipe code for SQL pipelines).
RUN python3 -c 'import sys; assert sys.version_info >= (3, 11), f"the driver image needs Python >= 3.11, this base image has {sys.version.split()[0]}: choose another SPARK_IMAGE"'
COPY --from=bundle --chmod=0644 /bundle/sparkpipe_main.py /bundle/sparkpipe.zip /opt/sparkpipe/
# `python3 -m spark_job validate --config ...` works in the image too (debugging a config by hand).
ENV PYTHONPATH=/opt/sparkpipe/sparkpipe.zip
USER spark
