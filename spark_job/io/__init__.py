"""Readers (sources) and writers (targets): one class per type, found through registries."""

from spark_job.io import jdbc_writer as _jdbc_writer  # noqa: F401
from spark_job.io import lakehouse as _lakehouse  # noqa: F401  (delta and iceberg)
from spark_job.io import readers as _builtin_readers  # noqa: F401  (registers the built-in types)
from spark_job.io import writers as _builtin_writers  # noqa: F401
from spark_job.io.base import BaseReader, BaseWriter, ReadPlan, StagedWrite, StagingWriter, WritePlan, readers, writers

__all__ = ["BaseReader", "BaseWriter", "ReadPlan", "StagedWrite", "StagingWriter", "WritePlan", "readers", "writers"]
