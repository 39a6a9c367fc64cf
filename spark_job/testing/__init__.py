"""The parts of ``sparkpipe test`` (``spark_job.pipeline_tests``): fixtures, expected rows and the sessions
tests run on."""
