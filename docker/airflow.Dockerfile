# syntax=docker/dockerfile:1
# Airflow 3 with this repository's provider and driver installed, Java 17 and pyspark for spark-submit,
# and the PostgreSQL JDBC driver jar (/usr/share/java/postgresql.jar) for the JDBC example.
# Built by docker-compose.yaml from the repository root: `docker compose build`.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# Must match the Spark version of the cluster images in docker-compose.yaml.
ARG SPARK_VERSION=4.1.2

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless libpostgresql-jdbc-java procps \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/default-java

USER airflow
COPY --chown=airflow:0 pyproject.toml README.md /opt/sparkpipe/src/
COPY --chown=airflow:0 spark_job /opt/sparkpipe/src/spark_job
COPY --chown=airflow:0 airflow_provider_sparkpipe /opt/sparkpipe/src/airflow_provider_sparkpipe
# Pin Airflow to the base image's version so that installing the provider never changes it. The FAB
# auth manager that docker-compose.yaml names (AIRFLOW__CORE__AUTH_MANAGER) is a provider of its own.
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "apache-airflow-providers-fab" \
        "pyspark==${SPARK_VERSION}" \
        "/opt/sparkpipe/src[spark]"
