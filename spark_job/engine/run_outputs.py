"""The files a run writes besides its targets (the metrics, the run key's commit log), checked before
any Spark session starts: a place that cannot be written is refused then, not found out after the
targets were written (a retry would then write them again, or the run would end without metrics).

Local places are checked here, by creating and removing a file; other URIs need the session's
filesystems, and the commit log's folder is checked as soon as the session exists, before any source is
read (``CommitLog.probe``).
"""

from __future__ import annotations

import os
import tempfile

from spark_job.engine.commit_log import log_folder, refuse_unwritable_local
from spark_job.engine.target_state import is_local, local_path


def absolute(uri: str | None) -> str | None:
    """A relative local path made absolute against this process's working directory, which a JVM started
    earlier (a notebook's, a test's) may not share."""
    if uri and "://" not in uri and not uri.startswith("file:") and not os.path.isabs(uri):
        return os.path.abspath(uri)
    return uri


def metrics_problem(metrics_out: str) -> str | None:
    """Why the local file ``metrics_out`` cannot be written (None: it can, or it is not local)."""
    if not is_local(metrics_out):
        return None
    path = os.path.abspath(local_path(metrics_out))
    if os.path.isdir(path):
        return f"--metrics-out {metrics_out} is a folder: give a file name, e.g. {metrics_out.rstrip('/')}/metrics.json"
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sparkpipe-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = f"{exc.strerror or exc} ({exc.filename or folder})"
        return f"--metrics-out {metrics_out} cannot be written: {why}; give a path this driver can write"
    return None


def unwritable_outputs(run_key: str | None, state_dir: str | None, metrics_out: str | None) -> str | None:
    """Why the metrics file or the run key's commit log cannot be written (local places only)."""
    if metrics_out:
        problem = metrics_problem(metrics_out)
        if problem is not None:
            return problem
    if run_key:
        folder = log_folder(state_dir, metrics_out, run_key)
        if is_local(folder):
            why = refuse_unwritable_local(folder)
            if why is not None:
                option = "--state-dir" if state_dir else "the folder of --metrics-out"
                return (
                    f"the commit log of --run-key cannot be kept in {folder} ({option}): {why}; "
                    "give --state-dir a folder this driver can write"
                )
    return None
