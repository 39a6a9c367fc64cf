"""``python -m spark_job``: the same as the ``sparkpipe`` command."""

import sys

from spark_job.cli import main

sys.exit(main())
