"""The public import path of the runner: ``from spark_job.runner import PipelineRunner``.

The runner itself is ``spark_job.engine.runner``.
"""

from spark_job.engine.runner import BasePipeline, PipelineRunner

__all__ = ["BasePipeline", "PipelineRunner"]
