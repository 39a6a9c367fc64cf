"""``SparkPipelineOperator``: validate a sparkpipe config at parse time, run it on a runtime, return its metrics.

Reading, validating and rendering the config is ``TemplatedConfig``'s (``operators/templated_config.py``); the
operator does what Airflow asks of it: template fields, documentation, outlets, running, links, XCom.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError, SparkPipelineFailed
from airflow_provider_sparkpipe.links.spark import SparkApplicationLink
from airflow_provider_sparkpipe.operators.templated_config import CONFIG_SUFFIXES, TemplatedConfig

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook
    from airflow_provider_sparkpipe.runs import PipelineRun, RunState
    from airflow_provider_sparkpipe.runtimes.base import SparkRuntime
    from spark_job.config.validation import PipelineConfig

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DOC_FIELDS = ("doc", "doc_md", "doc_rst", "doc_json", "doc_yaml")


RUN_STATE_KEY = "sparkpipe_run"
"""The task state store key of the run a try submitted: ``{"task_key", "run"}`` (``PipelineRun.to_dict``)."""


class SparkPipelineOperator(BaseOperator):
    """Run a sparkpipe pipeline (a YAML/JSON config of Spark SQL sequences) on a Spark runtime.

    At DAG parse the config is loaded and validated (unless its text holds Jinja, which only renders
    at run time): a broken config is an import error of the DAG naming the file, line and problem.
    At run time the config file is rendered with Jinja, ``vars`` are substituted, the whole config is
    validated again, handed to the runtime's hook as JSON, and the run is followed to its end. The
    metrics document (rows written per sequence, durations, status) is the task's return value.

    Parameters:
        config: path of a ``.yaml``/``.yml``/``.json`` config (absolute, or relative to the DAG
            file's folder), rendered with Jinja at run time; or the config as a dict (templated).
        vars: values for the config's ``${name}`` variables, overriding its ``vars`` (templated:
            ``{"run_date": "{{ ds }}"}``).
        runtime: a runtime object (``LocalSpark(master="local[2]")``, ...) or the id of an Airflow
            connection of type ``sparkpipe`` describing one (default ``sparkpipe_default``).
        deferrable: wait for the run in the triggerer (for runtimes that support it; others wait in
            the worker).
        cancel_on_kill: stop the run when the task is killed or times out.
        poll_interval: seconds between two status checks of a remote run.
        outlets: Assets the task updates; by default the config's targets that have a stable URI.
        validate_at_parse: validate the config when the DAG file is parsed (default True).
        full_refresh: the pipeline's incremental sequences read all their sources and replace their
            targets (templated: ``"{{ params.full_refresh }}"``; true/false, yes/no, 1/0 as text); a
            full refresh also runs every sequence on a retry (no resume).
        resume: a retry of the task instance reuses the sequences an earlier try committed, when they,
            their inputs and their targets are unchanged (default True; templated, as ``full_refresh``).
            The driver gets ``--run-key`` (the same for every try of one task instance, a new one once
            the task is cleared) and ``--state-dir`` (the task's folder in the runtime's staging area);
            False runs every sequence on every try.
        openlineage_inject_parent_job_info: with the openlineage provider installed and enabled, give
            the run the ``spark.openlineage.parent*`` properties of this task, so that the
            openlineage-spark listener's events name the Airflow task as their parent (default True;
            the transport is never passed: see docs/lineage.md).
    """

    template_fields: Sequence[str] = ("config", "vars", "full_refresh", "resume")
    template_ext: Sequence[str] = CONFIG_SUFFIXES
    template_fields_renderers = {"config": "yaml", "vars": "json"}
    # One link for every runtime: each hook's run_url says where its runs are shown.
    operator_extra_links = (SparkApplicationLink(),)
    ui_color = "#fde2cc"

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | Mapping[str, Any],
        vars: Mapping[str, Any] | None = None,
        runtime: SparkRuntime | str = "sparkpipe_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        poll_interval: float = 10.0,
        validate_at_parse: bool = True,
        openlineage_inject_parent_job_info: bool = True,
        full_refresh: bool | str = False,
        resume: bool | str = True,
        **kwargs: Any,
    ) -> None:
        outlets_given = kwargs.get("outlets") is not None
        super().__init__(**kwargs)
        self.templated_config = TemplatedConfig(config, vars, where=self._where(), folder=self._dag_folder)
        self.config: Any = self.templated_config.value
        self.vars: Any = dict(vars) if isinstance(vars, Mapping) else vars
        self.runtime = runtime
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.poll_interval = poll_interval
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self.full_refresh: Any = full_refresh
        self.resume: Any = resume
        self._metrics: dict[str, Any] | None = None
        self._hook: SparkPipelineHook[Any] | None = None
        self._run: PipelineRun | None = None
        self._cancelling: threading.Thread | None = None
        self._waiting = False
        self.application_url: str | None = None
        if validate_at_parse:
            documented = any(getattr(self, k, None) for k in _DOC_FIELDS)
            check = self.templated_config.check_at_parse(self.vars, plan=not documented)
            if check.warning is not None:
                self.log.warning("%s", check.warning)
            if check.pipeline is not None and not outlets_given:
                from airflow_provider_sparkpipe.assets import assets_for_targets

                self.outlets = assets_for_targets(check.pipeline.targets(), self._where())
            if check.plan is not None:
                # The task's documentation in the UI: the pipeline's stages, reads, targets and rules.
                self.doc_md = check.plan

    # The config (read, validated and rendered by TemplatedConfig). ----------------------------------

    @property
    def config_file(self) -> Path | None:
        """The config file, resolved; None for a dict config."""
        return self.templated_config.config_file

    @property
    def base_dir(self) -> Path:
        """The folder ``query_file`` paths are relative to: the config file's, else the DAG file's."""
        return self.templated_config.base_dir

    def _dag_folder(self) -> Path:
        dag = self.dag if self.has_dag() else None
        return Path(dag.folder) if dag is not None else Path.cwd()

    def resolve_template_files(self) -> None:
        # Airflow's own loader only finds files under the DAG folder and template_searchpath; the
        # config may live anywhere, so it is read from its resolved path.
        self._replace("config", self.templated_config.read(self.config))
        super().resolve_template_files()

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        # Each field is rendered here rather than by Airflow's loop, which logs the whole template
        # (the config file) on an error: a template error names its file, line and undefined name.
        # Then Rendered Templates shows the effective config in place of the rendered template.
        self._replace("config", self.templated_config.read(self.config))
        jinja_env = jinja_env or self.get_template_env()
        for field in self.template_fields:
            rendered = self.templated_config.render(
                field,
                getattr(self, field),
                lambda value: self.render_template(value, context, jinja_env),
                logical_date="logical_date" in context,
            )
            self._replace(field, rendered)
        self._replace("config", self.templated_config.effective(self.config, self.vars))

    def _replace(self, field: str, value: Any) -> None:
        """Set a template field when its value changed (Airflow records a field set outside execution
        as the operator's argument)."""
        if value is not getattr(self, field):
            setattr(self, field, value)

    def load_rendered_config(self) -> PipelineConfig:
        """The fully validated config after templates rendered (what :meth:`execute` submits)."""
        return self.templated_config.load(self.config, self.vars)

    def _where(self) -> str:
        return f"SparkPipelineOperator {self.task_id!r}"

    # OpenLineage (the apache-airflow-providers-openlineage protocol). -------------------------------

    def get_openlineage_facets_on_start(self) -> Any:
        """The sources and direct reads as inputs, the targets as outputs, the SQL as the job's facet."""
        return self._operator_lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """As on start, plus each output's row count, schema and data-quality results."""
        return self._operator_lineage(self._metrics)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """As on complete, for what the failed run wrote, plus the failure as an error message facet."""
        return self._operator_lineage(self._metrics or {"status": "failed", "sequences": {}})

    def _operator_lineage(self, metrics: Mapping[str, Any] | None) -> Any:
        from airflow_provider_sparkpipe.lineage import operator_lineage

        pipeline = self.templated_config.pipeline
        if pipeline is None:
            try:
                pipeline = self.templated_config.load_for_run(self.config, self.vars)
            except Exception as exc:  # lineage never fails the task
                self.log.warning("No OpenLineage datasets: the config cannot be read here: %s", exc)
                from airflow.providers.openlineage.extractors import OperatorLineage

                return OperatorLineage()
        return operator_lineage(pipeline, metrics)

    # Running. ---------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_sparkpipe.hooks.base import hook_class_of
        from airflow_provider_sparkpipe.masking import mask_values
        from airflow_provider_sparkpipe.runs import PipelineSubmission
        from airflow_provider_sparkpipe.runtimes.registry import resolve_runtime

        pipeline = self.templated_config.load_for_run(self.config, self.vars)
        runtime = resolve_runtime(self.runtime)
        environment = self.templated_config.credentials.environment
        # Logins are not secret (and often too short to mask): only passwords and the runtime's secrets.
        passwords = [v for k, v in environment.items() if not k.endswith("_USER")]
        mask_values([*runtime.secret_values(), *(v for v in passwords if v)])
        hook_class = hook_class_of(runtime)
        if environment and not hook_class.passes_environment:
            raise SparkPipelineConfigError(
                f"{self._where()}: {type(runtime).__name__} cannot hand the credentials of Airflow connections "
                "to the driver: put the password in a secret manager and name it in the connection's extra "
                "'password_secret' (aws:NAME[#key] or gcp:projects/P/secrets/S), or give url, user and "
                "password as ${secret:...}, ${env:NAME} or ${file:PATH} references instead of 'connection'"
            )
        self._log_plan(pipeline, runtime)
        hook = hook_class(runtime)
        document = pipeline.to_document()
        full_refresh = full_refresh_of(self.full_refresh, self._where())
        if full_refresh:
            document = {**document, "full_refresh": True}
        resume = flag_of(self.resume, "resume", self._where()) and not full_refresh
        if self.openlineage_inject_parent_job_info:
            from airflow_provider_sparkpipe.lineage import parent_job_properties

            document["spark_conf"] = parent_job_properties(document.get("spark_conf") or {}, context)
        submission = PipelineSubmission(
            document=document,
            app_name=pipeline.app_name,
            task_key=_task_key(context),
            try_number=context["ti"].try_number,
            labels=_labels(context),
            environment=environment,
            resume_key=_resume_key(context) if resume else None,
        )
        run = hook.submit(submission, previous=self._stored_run(context, submission.task_key))
        self._store_run(context, submission.task_key, run)
        self._hook, self._run = hook, run
        hook.on_run_url = lambda url: self._show_link(context, url)
        self._show_link(context, hook.run_url(run))
        if self.deferrable:
            if hook.supports_deferral:
                from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger

                self.defer(
                    trigger=SparkPipelineTrigger(
                        runtime.to_dict(),
                        run.to_dict(),
                        self.poll_interval,
                        deadline=self._deadline(context),
                        cancel_on_kill=self.cancel_on_kill,
                    ),
                    method_name="execute_complete",
                )
            self.log.info("%s runs in the worker: waiting here instead of deferring", type(runtime).__name__)
        state = self._wait(hook, run)
        return self._complete(context, hook, run, state)

    def _log_plan(self, pipeline: PipelineConfig, runtime: SparkRuntime) -> None:
        """The task log's first lines: where the pipeline runs and its plan (the rendered config's stages,
        reads and targets), as ``sparkpipe plan`` prints it."""
        from spark_job.plan import build_plan, render_text

        heading, _, body = render_text(build_plan(pipeline)).partition("\n")
        counts = heading.partition(": ")[2]
        self.log.info("Pipeline %r on %s: %s\n%s", pipeline.app_name, runtime.describe(), counts, body.strip("\n"))

    def _stored_run(self, context: Context, task_key: str) -> PipelineRun | None:
        """The run the last try of this task instance submitted, from Airflow's task state store (3.3+).

        Only a run of the same task key: a cleared task runs its pipeline again."""
        from airflow_provider_sparkpipe.runs import PipelineRun

        store = context.get("task_state_store")
        if store is None:
            return None
        try:
            saved = store.get(RUN_STATE_KEY)
        except Exception as exc:  # no state store behind the accessor: look the run up instead
            self.log.warning("Cannot read the task state store (%s): the runtime looks the last run up", exc)
            return None
        run = saved.get("run") if isinstance(saved, dict) and saved.get("task_key") == task_key else None
        if not isinstance(run, dict):
            return None
        try:
            return PipelineRun.from_dict(run)
        except (KeyError, TypeError, ValueError):
            return None

    def _store_run(self, context: Context, task_key: str, run: PipelineRun) -> None:
        """Keep the run in the task state store at once, so that a retry re-attaches to it without a lookup."""
        store = context.get("task_state_store")
        if store is None:
            return
        try:
            store.set(RUN_STATE_KEY, {"task_key": task_key, "run": run.to_dict()})
        except Exception as exc:
            self.log.warning("Cannot keep run %s in the task state store: %s", run.run_id, exc)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger reported the end of the run."""
        from airflow_provider_sparkpipe.hooks.base import hook_for
        from airflow_provider_sparkpipe.runs import PipelineRun, RunState
        from airflow_provider_sparkpipe.runtimes.registry import resolve_runtime

        hook = hook_for(resolve_runtime(self.runtime))
        run = PipelineRun.from_dict(event["run"])
        self._hook, self._run = hook, run
        state = RunState(event["state"])
        if event.get("error"):
            self.log.error("Polling run %s from the triggerer failed: %s", run.run_id, event["error"])
            state = hook.poll(run)
            if not state.finished and self.cancel_on_kill:
                self.log.warning("Cancelling run %s: its state can no longer be followed", run.run_id)
                hook.cancel(run)
                state = RunState.CANCELLED
        if event.get("timed_out"):
            from airflow.exceptions import AirflowTaskTimeout

            raise AirflowTaskTimeout(
                f"execution_timeout {self.execution_timeout} reached: run {run.run_id} was cancelled"
            )
        return self._complete(context, hook, run, state)

    def _deadline(self, context: Context) -> float | None:
        """When the task's ``execution_timeout`` ends (epoch seconds), a few seconds early so that the
        trigger, not Airflow's deferral timeout, ends the wait and cancels the run."""
        start = getattr(context["ti"], "start_date", None)
        if self.execution_timeout is None or start is None:
            return None
        return (start + self.execution_timeout).timestamp() - min(5.0, self.execution_timeout.total_seconds() / 10)

    def on_kill(self) -> None:
        """Cancel the run; while ``execute`` waits for it, from a thread of its own, returning at once.

        Airflow calls this from the task's SIGTERM handler, on the main thread, which the signal may
        have interrupted halfway through writing a log line: logging (or waiting) there could wait
        for a lock that thread holds, forever, so ``execute`` joins the cancelling thread when its
        wait ends. After ``execute`` has ended (``execution_timeout``: Airflow calls this from its
        ``except`` block, then the task process leaves through ``os._exit``, which joins no thread)
        the cancel runs here, to its end.
        """
        hook, run = self._hook, self._run
        if not self.cancel_on_kill or hook is None or run is None or self._cancelling is not None:
            return

        def cancel() -> None:
            self.log.info("Task killed: cancelling the pipeline run %s", run.run_id)
            hook.cancel(run)

        self._cancelling = threading.Thread(target=cancel, name="sparkpipe-cancel")
        self._cancelling.start()
        if not self._waiting:
            self._cancelling.join()

    def _wait(self, hook: SparkPipelineHook[Any], run: PipelineRun) -> RunState:
        self._waiting = True
        try:
            state = hook.wait(run, self.poll_interval)
        finally:
            self._waiting = False
            if self._cancelling is not None:
                self._cancelling.join()
        if self._cancelling is not None:
            state = hook.poll(run)
        return state

    def _show_link(self, context: Context, url: str | None) -> None:
        """Show the *Spark application* link now: Airflow itself stores links when the task ends."""
        if not url or url == self.application_url:
            return
        self.application_url = url
        context["ti"].xcom_push(key=SparkApplicationLink().xcom_key, value=url)

    def _complete(
        self, context: Context, hook: SparkPipelineHook[Any], run: PipelineRun, state: RunState
    ) -> dict[str, Any]:
        from airflow_provider_sparkpipe.runs import RunState

        metrics = hook.fetch_metrics(run)
        self._metrics = metrics
        if metrics is not None:
            driver_runtime = metrics.get("runtime") or {}
            metrics["runtime"] = {**driver_runtime, **hook.runtime_info(run)}
            usage = {**(driver_runtime.get("usage") or {}), **(hook.usage(run) or {})}
            if usage:
                metrics["runtime"]["usage"] = usage
            self._log_summary(metrics)
        runtime_block = (metrics or {}).get("runtime") or {}
        url = hook.run_url(run) or runtime_block.get("url")
        if url and url != self.application_url:
            self.log.info("Spark application: %s", url)
        self.application_url = url
        hook.cleanup(run, state)
        returned = task_metrics(metrics) if metrics is not None else None
        if state == RunState.SUCCEEDED and returned is not None and returned.get("status") == "succeeded":
            return returned
        if returned is not None:
            context["ti"].xcom_push(key="metrics", value=returned)
        raise SparkPipelineFailed(_failure_message(metrics, state, hook.describe_failure(run)), metrics)

    def _log_summary(self, metrics: Mapping[str, Any]) -> None:
        """The run's last lines: the pipeline's outcome, then one line per sequence (errors as errors)."""
        from spark_job.outcomes import run_summary

        for level, line in run_summary(metrics, in_task=True):
            self.log.log(level, "%s", line)


def _config_errors_raised_here(init: Callable[..., None]) -> Callable[..., None]:
    """``__init__`` re-raising its config errors from this frame, their traceback dropped.

    Airflow's DAG import error shows the last frames of the traceback: the DAG file's line that made the
    task and this one, instead of three of Airflow's and the operator's own frames above the message,
    which names the config file, line and problem itself."""

    @functools.wraps(init)
    def __init__(self: SparkPipelineOperator, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except SparkPipelineConfigError as error:
            raise error.with_traceback(None) from None

    # Airflow compares the class's __init__.__wrapped__ with the function it wrapped (XComArg dependencies).
    __init__.__wrapped__ = init.__wrapped__  # type: ignore[attr-defined]
    return __init__


SparkPipelineOperator.__init__ = _config_errors_raised_here(SparkPipelineOperator.__init__)  # type: ignore[method-assign]


def task_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics document as the task returns it (XCom ``return_value``, ``metrics`` on failure).

    The short answer first: ``status``, then ``outcome``, one entry per sequence with its status, rows,
    duration and target (and the first line of its error); then the whole document, whose sequences
    keep every figure but their output schema, kept apart under ``output_schemas``. The keys are
    chosen so that PostgreSQL's JSON type, which orders an object's keys by length, keeps that order.
    """
    sequences: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, seq in (metrics.get("sequences") or {}).items():
        seq = dict(seq) if isinstance(seq, Mapping) else {"status": None}
        if seq.get("schema") is not None:
            schemas[name] = seq["schema"]
        seq.pop("schema", None)
        sequences[name] = seq
    out: dict[str, Any] = {}
    if "error" in metrics:
        out["error"] = metrics["error"]
    out["status"] = metrics.get("status")
    out["outcome"] = {name: sequence_view(seq) for name, seq in sequences.items()}
    out.update((k, v) for k, v in metrics.items() if k not in ("error", "status", "sequences", "outcome"))
    out["sequences"] = sequences
    if schemas:
        out["output_schemas"] = schemas
    return out


def sequence_view(seq: Mapping[str, Any]) -> dict[str, Any]:
    """One sequence in a few keys: ``{"rows": 40, "status": "succeeded", "target": "csv /out/x",
    "duration_s": 2.5}``, and ``error`` (its first line) for one that failed or was skipped."""
    from spark_job.outcomes import describe_target

    view: dict[str, Any] = {"rows": seq.get("rows_written"), "status": seq.get("status")}
    if seq.get("error"):
        view["error"] = _first_line(seq["error"])
    view["target"] = describe_target(seq.get("target") or {})
    view["duration_s"] = seq.get("duration_s")
    return view


def _failure_message(metrics: Mapping[str, Any] | None, state: Any, detail: str | None) -> str:
    if metrics is None:
        return f"pipeline run {state.value}: {detail or 'the driver wrote no metrics'}"
    sequences = metrics.get("sequences") or {}
    # The first line of each error: the summary above gives it whole (Spark's end in a query plan).
    failed = [f"sequence {n!r} failed: {_first_line(s.get('error'))}" for n, s in sequences.items() if _failed(s)]
    skipped = [n for n, s in sequences.items() if s.get("status") == "skipped"]
    parts = failed or [str(metrics.get("error") or detail or f"run {state.value}")]
    if skipped:
        parts.append(f"skipped: {', '.join(skipped)}")
    return f"pipeline {metrics.get('app_name')!r} failed: " + "; ".join(parts)


def _failed(seq: Mapping[str, Any]) -> bool:
    return seq.get("status") == "failed"


def _first_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    # Spark ends the line before its query plan with a ";": the message's own separators follow it.
    return lines[0].strip().rstrip(";") if lines else "no error was reported"


def full_refresh_of(value: Any, where: str) -> bool:
    """The operator's ``full_refresh`` once rendered: a boolean, or its text (true/false, yes/no, 1/0)."""
    return flag_of(value, "full_refresh", where)


def flag_of(value: Any, name: str, where: str) -> bool:
    """A boolean argument of the operator once rendered: a boolean, or its text (true/false, yes/no, 1/0)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", "", "none"):
        return False
    raise SparkPipelineConfigError(f"{where}: {name} is {value!r}: give true or false")


def _task_key(context: Context) -> str:
    """The task instance's key for runtimes: the same for the retries of one run of the task, a new one when
    the task is cleared (so a cleared task runs its pipeline again instead of re-attaching to the job it ran).

    A clear sets ``max_tries`` to the try number reached plus the task's retries, which gives the first try
    of the current run (``max_tries - retries + 1``, as Airflow computes it); keys of tasks never cleared
    have no suffix.
    """
    ti = context["ti"]
    parts = [ti.dag_id, ti.task_id, ti.run_id, str(ti.map_index)]
    first_try = _first_try_number(ti)
    if first_try > 1:
        parts.append(f"cleared{first_try}")
    return "__".join(_UNSAFE_KEY_CHARS.sub("_", p) for p in parts)


def _resume_key(context: Context) -> str:
    """The driver's ``--run-key``: the same for the retries of one run of the task, a new one when the task
    is cleared (as :func:`_task_key`), hashed into a safe file name
    (:func:`~airflow_provider_sparkpipe.runs.resume_key`)."""
    from airflow_provider_sparkpipe.runs import resume_key

    ti = context["ti"]
    first_try = _first_try_number(ti)
    map_index = -1 if ti.map_index is None else int(ti.map_index)
    return resume_key(ti.dag_id, ti.task_id, ti.run_id, map_index, first_try if first_try > 1 else 0)


def _first_try_number(ti: Any) -> int:
    retries = getattr(getattr(ti, "task", None), "retries", 0) or 0
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(max_tries, int) or max_tries < 0:
        return 1
    return max(1, min(max_tries - int(retries) + 1, int(ti.try_number)))


def _labels(context: Context) -> dict[str, str]:
    ti = context["ti"]
    return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}
