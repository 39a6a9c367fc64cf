"""Running a validated pipeline on a SparkSession: the runner, the scheduler of sequences, what differs
between sessions, the run key's commit log and the metrics document."""
