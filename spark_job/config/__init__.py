"""Reading a pipeline config: parsing, substitution, validation and the validated ``PipelineConfig``.

Nothing in this package imports pyspark (a test checks it): the Airflow provider validates configs
with it at DAG parse time, where no Spark is installed. The public names are loaded on first use, so
that the readers and writers (``spark_job.io``) can use this package's path and URL modules while the
validation uses their registries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_job.config.validation import PipelineConfig, SequenceSpec, SourceSpec, load_config, parse_text

__all__ = ["PipelineConfig", "SequenceSpec", "SourceSpec", "load_config", "parse_text"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("spark_job.config.validation"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
