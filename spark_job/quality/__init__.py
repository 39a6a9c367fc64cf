"""Data-quality rules at run time: the columns and counts of a sequence's rules (``SequenceRules``).
The rules as the config declares them are ``spark_job.config.expectations``."""

from spark_job.config.expectations import Expectation, parse_expectations
from spark_job.quality.checks import ExpectationFailed, RuleOutcome, SequenceRules

__all__ = ["Expectation", "ExpectationFailed", "RuleOutcome", "SequenceRules", "parse_expectations"]
