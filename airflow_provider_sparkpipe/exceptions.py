"""Errors raised by the provider: a config that cannot run, a runtime that cannot be built, a failed run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowException


class SparkPipelineConfigError(AirflowException):
    """The pipeline config (or the operator's arguments) cannot run; the message says where and why."""


class SparkRuntimeError(AirflowException):
    """A runtime object or a ``sparkpipe`` connection is invalid, or the runtime cannot be reached."""


class SparkPipelineFailed(AirflowException):
    """The pipeline ran and failed; ``metrics`` is its metrics document when the driver wrote one."""

    def __init__(self, message: str, metrics: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metrics = dict(metrics) if metrics else None
