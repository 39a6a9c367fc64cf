"""Run DAGs with Airflow's own ``dag.test()`` in a fresh process and write what happened as JSON.

    python dag_runner.py SPEC.json

SPEC: ``{"out": path, "runs": [{"dag_folder": ..., "dag_id": ..., "logical_date": "2024-01-15",
"env": {...}}]}``; a run may add ``"name"`` (default: the dag_id) and ``"run_conf"``, and a
``logical_date`` of null (or none at all) makes a run without a logical date, as Airflow 3 allows.
Airflow reads its configuration (AIRFLOW_HOME, the metadata database) at import,
so the tests run it here, in a process started with the test session's environment. Each run prints
``=== sparkpipe-test-run <name> ===`` first, so the test can split the combined task logs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# Started as a script, this folder is sys.path[0]: its test packages (kubernetes, emr, ...) would hide
# the libraries of those names.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    os.environ.update(spec.get("env") or {})
    name = spec.get("name", spec["dag_id"])
    print(f"=== sparkpipe-test-run {name} ===", flush=True)
    bag = DagBag(dag_folder=spec["dag_folder"])
    if spec["dag_id"] not in bag.dags:
        return {"state": "import_error", "import_errors": {k: str(v) for k, v in bag.import_errors.items()}}
    dag = bag.dags[spec["dag_id"]]
    logical_date = spec.get("logical_date")
    dag_run = dag.test(
        logical_date=pendulum.parse(logical_date) if logical_date else None, run_conf=spec.get("run_conf")
    )
    with create_session() as session:
        tis = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id)).all()
        xcoms = {f"{row.task_id}.{row.key}": XComModel.deserialize_value(row) for row in rows}
    state = str(dag_run.state)
    print(f"=== sparkpipe-test-end {name} {state} ===", flush=True)
    return {"state": state, "tasks": tis, "xcoms": xcoms, "run_id": dag_run.run_id}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    results = {}
    base_env = dict(os.environ)
    for run in spec["runs"]:
        os.environ.clear()
        os.environ.update(base_env)
        results[run.get("name", run["dag_id"])] = run_one(run)
    with open(spec["out"], "w") as f:
        json.dump(results, f, default=str)


if __name__ == "__main__":
    main()
