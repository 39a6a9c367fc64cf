"""``SparkPipelineOperator``: validate a sparkpipe config at parse time, run it on a runtime, return its metrics."""

from __future__ import annotations

import functools
import os
import re
import stat
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from airflow.sdk import BaseOperator, conf

from airflow_provider_sparkpipe.connections import ConnectionCredentials
from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError, SparkPipelineFailed
from airflow_provider_sparkpipe.links.spark import SparkApplicationLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook
    from airflow_provider_sparkpipe.runs import PipelineRun, RunState
    from airflow_provider_sparkpipe.runtimes.base import SparkRuntime
    from spark_job.config.validation import PipelineConfig

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_JINJA = re.compile(r"\{\{|\{%|\{#")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DOC_FIELDS = ("doc", "doc_md", "doc_rst", "doc_json", "doc_yaml")
_UNDEFINED_NAME = re.compile(r"^'(\w+)' is undefined")
# Context keys Airflow sets only when a run has a logical date.
_LOGICAL_DATE_KEYS = frozenset(
    (
        "ds",
        "ds_nodash",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "prev_data_interval_start_success",
        "prev_data_interval_end_success",
    )
)


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
        openlineage_inject_parent_job_info: with the openlineage provider installed and enabled, give
            the run the ``spark.openlineage.parent*`` properties of this task, so that the
            openlineage-spark listener's events name the Airflow task as their parent (default True;
            the transport is never passed: see docs/lineage.md).
    """

    template_fields: Sequence[str] = ("config", "vars")
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
        **kwargs: Any,
    ) -> None:
        outlets_given = kwargs.get("outlets") is not None
        super().__init__(**kwargs)
        self.config_file: Path | None = None
        self._config_raw: str | None = None
        self.config: Any = self._locate_config(config)
        self.vars: Any = dict(vars) if isinstance(vars, Mapping) else vars
        self._check_nesting(self.config, "config")
        self._check_nesting(self.vars, "vars")
        self.runtime = runtime
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.poll_interval = poll_interval
        self.openlineage_inject_parent_job_info = openlineage_inject_parent_job_info
        self._pipeline: PipelineConfig | None = None
        self._effective_config: str | None = None
        self._metrics: dict[str, Any] | None = None
        # At parse no connection is read: references are checked with a placeholder URL.
        self._credentials = ConnectionCredentials(None)
        self._hook: SparkPipelineHook[Any] | None = None
        self._run: PipelineRun | None = None
        self._cancelling: threading.Thread | None = None
        self._waiting = False
        self.application_url: str | None = None
        if validate_at_parse:
            pipeline = self._validate_at_parse()
            if pipeline is not None and not outlets_given:
                from airflow_provider_sparkpipe.assets import assets_for_targets

                self.outlets = assets_for_targets(pipeline.targets(), self._where())
            if pipeline is not None and not any(getattr(self, k, None) for k in _DOC_FIELDS):
                from spark_job.plan import build_plan, render_markdown

                # The task's documentation in the UI: the pipeline's stages, reads, targets and rules.
                self.doc_md = render_markdown(build_plan(pipeline))

    # The config: where it is, how it is read and validated. -----------------------------------------

    @property
    def base_dir(self) -> Path:
        """The folder ``query_file`` paths are relative to: the config file's, else the DAG file's."""
        if self.config_file is not None:
            return self.config_file.parent
        dag = self.dag if self.has_dag() else None
        return Path(dag.folder) if dag is not None else Path.cwd()

    def _locate_config(self, config: Any) -> Any:
        if isinstance(config, Mapping):
            return dict(config)
        if not isinstance(config, (str, os.PathLike)):
            raise SparkPipelineConfigError(
                f"{self._where()}: config must be a path to a .yaml/.yml/.json file or a dict, "
                f"not {type(config).__name__}"
            )
        path = Path(os.fspath(config)).expanduser()
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise SparkPipelineConfigError(f"{self._where()}: config {str(config)!r} must end in .yaml, .yml or .json")
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            mode = path.stat().st_mode  # stat, not open: opening a FIFO would wait for a writer
        except FileNotFoundError:
            raise SparkPipelineConfigError(
                f"{self._where()}: config file not found: {path} (a relative path is relative to the DAG file's folder)"
            ) from None
        except OSError as exc:
            raise SparkPipelineConfigError(f"{self._where()}: config {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise SparkPipelineConfigError(
                f"{self._where()}: config {path} is {kind}, not a regular file: give a .yaml, .yml or .json file"
            )
        self.config_file = path.resolve()
        return str(self.config_file)

    def _check_nesting(self, value: Any, what: str) -> None:
        # Before anything walks the value recursively (the Jinja check here, Airflow's template
        # rendering and DAG serialization): a 3,000-deep dict would end in a RecursionError.
        from spark_job.config.document import check_depth
        from spark_job.errors import ConfigError

        if isinstance(value, (Mapping, list, tuple)):
            try:
                check_depth(value)
            except ConfigError as exc:
                raise SparkPipelineConfigError(f"{self._where()}: {what}: {exc}") from None

    def _config_text(self) -> str | None:
        """The config file's text, read without blocking and bounded in size; None when it is not UTF-8
        (loading it then reports the file, line and byte)."""
        from spark_job.config.document import UnreadableFile, read_text_file

        assert self.config_file is not None
        try:
            return read_text_file(self.config_file, "a config")
        except UnreadableFile as exc:
            if exc.line is not None:
                return None
            raise SparkPipelineConfigError(f"{self._where()}: config {exc}") from None

    def _read_config_file(self) -> None:
        """Replace the config path by the file's text (what Airflow does for ``template_ext`` fields)."""
        if self.config_file is not None and self.config == str(self.config_file):
            text = self._config_text()
            if text is None:
                return  # left as a path: loading it reports the file, line and byte
            self._config_raw = self.config = text

    def resolve_template_files(self) -> None:
        # Airflow's own loader only finds files under the DAG folder and template_searchpath; the
        # config may live anywhere, so it is read from its resolved path.
        self._read_config_file()
        super().resolve_template_files()

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        # Each field is rendered here rather than by Airflow's loop, which logs the whole template
        # (the config file) on an error: a template error names its file, line and undefined name.
        self._read_config_file()
        jinja_env = jinja_env or self.get_template_env()
        for field in self.template_fields:
            value = getattr(self, field)
            if not value or (field == "config" and self._shows_effective_config()):
                continue
            try:
                rendered = self.render_template(value, context, jinja_env)
            except Exception as exc:
                raise SparkPipelineConfigError(self._template_error(field, value, exc, context, jinja_env)) from None
            setattr(self, field, rendered)
        self._show_effective_config()

    def _show_effective_config(self) -> None:
        """Put the config the driver gets in place of the rendered template, for Airflow's *Rendered
        Templates* view: variables substituted (the config's and ``vars`` in one block), secrets masked.

        The config is loaded and validated here, as :meth:`execute` would; when that fails the rendered
        text stays, and :meth:`execute` reports the problem."""
        from airflow_provider_sparkpipe.masking import get_connection

        if self._shows_effective_config():
            return
        self._credentials = ConnectionCredentials(get_connection)
        try:
            pipeline = self.load_rendered_config()
        except Exception:
            self._pipeline = None
            return
        self._pipeline = pipeline
        self.config = self._effective_config = effective_config_text(pipeline, self.config_file)

    def _shows_effective_config(self) -> bool:
        return self._effective_config is not None and self.config is self._effective_config

    def _template_error(self, field: str, value: Any, exc: Exception, context: Context, jinja_env: Any) -> str:
        """Where a template failed (the config file's line, or the key of ``vars``) and why, never the template."""
        where = field
        if field == "config" and self.config_file is not None and value is self._config_raw:
            where = str(self.config_file)
        elif isinstance(value, Mapping):
            for key, item in value.items():  # find the key whose value failed, to name it
                try:
                    self.render_template(item, context, jinja_env)
                except Exception as item_exc:
                    where, exc = f"{field}[{key!r}]", item_exc
                    break
        line = _template_line(exc)
        if line is not None:
            where = f"{where}:{line}"
        message = str(getattr(exc, "message", None) or exc)
        if type(exc).__name__ not in ("UndefinedError", "TemplateSyntaxError"):
            message = f"{type(exc).__name__}: {message}"
        text = f"{self._where()}: template error in {where}: {message}"
        undefined = _UNDEFINED_NAME.search(message)
        if undefined and undefined.group(1) in _LOGICAL_DATE_KEYS and "logical_date" not in context:
            text += (
                "\nThis run has no logical date, and so no ds, ts, logical_date or data_interval_*: use a param, "
                "or the day the run was triggered: {{ (dag_run.logical_date or dag_run.run_after) | ds }}"
            )
        return text

    def _validate_at_parse(self) -> PipelineConfig | None:
        """Validate what does not depend on templates; raise on a config that cannot run."""
        from spark_job.errors import ConfigError

        if self.config_file is not None:
            text = self._config_text() or ""
            if _JINJA.search(text):
                # A Jinja template is valid YAML only once rendered: validated when the task runs. Its plan,
                # with the template text as written, is the task's documentation.
                self._plan_template(text)
                return None
        templated = _has_jinja(self.config) or not isinstance(self.vars, (Mapping, type(None)))
        templated = templated or _has_jinja(self.vars)
        vars = self.vars if isinstance(self.vars, Mapping) else {}
        try:
            return self._load(self.config_file if self.config_file else self.config, vars)
        except ConfigError as exc:
            message = self._invalid_message(exc)
            if templated:
                # The problem may come from template text standing in for a value: check again at run time.
                self.log.warning("%s\n(config or vars hold templates: validated again at run time)", message)
                return None
            raise SparkPipelineConfigError(message) from None

    def _plan_template(self, text: str) -> None:
        """The plan of a config file that is a Jinja template, read as written (statement lines and
        comments left out, ``{{ ... }}`` kept as text), as the task's documentation; none when the
        template is not YAML as written."""
        from spark_job.plan import build_plan, render_markdown

        if any(getattr(self, k, None) for k in _DOC_FIELDS) or self.config_file is None:
            return
        vars = self.vars if isinstance(self.vars, Mapping) else {}
        try:
            pipeline = self._load_rendered_text(_template_as_written(text), self.config_file, vars)
        except Exception:
            return
        note = (
            "\n*Planned from the template as written: `{{ ... }}` shows where values come from when the task "
            "runs; the rendered config is validated then.*\n"
        )
        self.doc_md = render_markdown(build_plan(pipeline)) + note

    def _load(self, source: Any, vars: Mapping[str, Any]) -> PipelineConfig:
        from spark_job.config.validation import load_config

        return load_config(
            source,
            {str(k): _var_value(v) for k, v in vars.items()},
            base_dir=None if isinstance(source, Path) else self.base_dir,
            resolve_env=False,  # ${env:NAME} secrets resolve on the driver, never in Airflow
            connections=self._credentials,
            unknown_vars=True,  # one vars dict may serve several pipelines
        )

    def load_rendered_config(self) -> PipelineConfig:
        """The fully validated config after templates rendered (what :meth:`execute` submits)."""
        from spark_job.errors import ConfigError

        if self._pipeline is not None and self._shows_effective_config():
            return self._pipeline  # loaded when the templates were rendered
        vars = self.vars or {}
        if not isinstance(vars, Mapping):
            raise SparkPipelineConfigError(f"{self._where()}: vars must render to a mapping, not {vars!r}")
        try:
            if isinstance(self.config, Mapping):
                return self._load(dict(self.config), vars)
            if self.config_file is None or not isinstance(self.config, str):
                raise SparkPipelineConfigError(f"{self._where()}: config rendered to {type(self.config).__name__}")
            if self.config in (str(self.config_file), self._config_raw):
                return self._load(self.config_file, vars)  # unchanged by Jinja
            return self._load_rendered_text(self.config, self.config_file, vars)
        except ConfigError as exc:
            raise SparkPipelineConfigError(self._invalid_message(exc)) from None

    def _load_rendered_text(self, text: str, config_file: Path, vars: Mapping[str, Any]) -> PipelineConfig:
        """Load Jinja's output as if it were the config file, so problems keep its name and line numbers."""
        from spark_job.config.validation import load_config
        from spark_job.errors import ConfigError, Problem

        with tempfile.TemporaryDirectory(prefix="sparkpipe-rendered-") as tmp:
            rendered = Path(tmp) / config_file.name
            rendered.write_text(text, encoding="utf-8")
            try:
                return load_config(
                    rendered,
                    {str(k): _var_value(v) for k, v in vars.items()},
                    base_dir=config_file.parent,
                    resolve_env=False,
                    connections=self._credentials,
                    unknown_vars=True,
                )
            except ConfigError as exc:
                raise ConfigError(
                    Problem(p.path, p.message, str(config_file) if p.file else None, p.line) for p in exc.problems
                ) from None

    def _invalid_message(self, exc: Exception) -> str:
        what = str(self.config_file) if self.config_file else "(dict config)"
        return f"{self._where()}: invalid sparkpipe config {what}:\n{exc}"

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

        pipeline = self._pipeline
        if pipeline is None:
            from airflow_provider_sparkpipe.masking import get_connection

            try:
                self._credentials = ConnectionCredentials(get_connection)
                pipeline = self._pipeline = self.load_rendered_config()
            except Exception as exc:  # lineage never fails the task
                self.log.warning("No OpenLineage datasets: the config cannot be read here: %s", exc)
                from airflow.providers.openlineage.extractors import OperatorLineage

                return OperatorLineage()
        return operator_lineage(pipeline, metrics)

    # Running. ---------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_sparkpipe.hooks.base import hook_class_of
        from airflow_provider_sparkpipe.masking import get_connection, mask_values
        from airflow_provider_sparkpipe.runs import PipelineSubmission
        from airflow_provider_sparkpipe.runtimes.registry import resolve_runtime

        if not self._shows_effective_config():  # else loaded, with its connections, when templates rendered
            self._credentials = ConnectionCredentials(get_connection)
        pipeline = self.load_rendered_config()
        runtime = resolve_runtime(self.runtime)
        environment = self._credentials.environment
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
        self._pipeline = pipeline
        document = pipeline.to_document()
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
        app_id = metrics.get("spark_app_id")
        self.log.info(
            "Pipeline %r %s in %s%s",
            metrics.get("app_name"),
            metrics.get("status") or "ended",
            _seconds(metrics.get("duration_s")),
            f" (Spark application {app_id})" if app_id else "",
        )
        usage = (metrics.get("runtime") or {}).get("usage")
        if usage:
            self.log.info("Usage: %s", usage_summary(usage))
        for name, seq in (metrics.get("sequences") or {}).items():
            line = f"  {name}: {sequence_outcome(seq)}"
            status = seq.get("status")
            if status == "failed":
                self.log.error("%s", line)
            elif status == "skipped":
                self.log.warning("%s", line)
            else:
                self.log.info("%s", line)


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
    view: dict[str, Any] = {"rows": seq.get("rows_written"), "status": seq.get("status")}
    if seq.get("error"):
        view["error"] = _first_line(seq["error"])
    view["target"] = describe_target(seq.get("target") or {})
    view["duration_s"] = seq.get("duration_s")
    return view


def usage_summary(usage: Mapping[str, Any]) -> str:
    """``executor_core_seconds=12.4, tasks=40``: the figures of ``runtime.usage``, units in their names."""
    return ", ".join(f"{k}={v:,}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in usage.items())


def sequence_outcome(seq: Mapping[str, Any]) -> str:
    """What happened to one sequence, in words: ``succeeded, 1,234 rows in 4.2 s -> parquet gs://b/x``,
    ``failed after 0.4 s: <error>``, ``skipped: reads x, which failed``; never ``None``."""
    status = seq.get("status") or "not run"
    where = describe_target(seq.get("target") or {})
    error = seq.get("error")
    if status == "failed":
        after = f" after {_seconds(seq.get('duration_s'))}" if seq.get("duration_s") is not None else ""
        return f"failed{after}: {error or 'no error was reported'}{_rule_counts(seq)}"
    if status == "skipped":
        reason = str(error or "a sequence it reads did not succeed")
        reason = reason.removeprefix("not run: ").removeprefix("it ")
        return f"skipped: {reason}"
    rows = seq.get("rows_written")
    parts = [status]
    if isinstance(rows, int):
        parts.append(f"{rows:,} row{'' if rows == 1 else 's'}")
    text = ", ".join(parts)
    if seq.get("duration_s") is not None:
        text += f" in {_seconds(seq.get('duration_s'))}"
    text = f"{text} -> {where}" if where else text
    return text + _rule_counts(seq)


def describe_target(target: Mapping[str, Any]) -> str:
    """``parquet /data/out/x``, ``jdbc jdbc:postgresql://db:5432/shop public.revenue``: the type, then
    where (a JDBC target's database and table), without credentials."""
    from spark_job.config.urls import strip_credentials

    parts = [str(target["type"])] if target.get("type") else []
    parts += [strip_credentials(str(target[k])) for k in ("uri", "table") if target.get(k)]
    return " ".join(parts)


def _rule_counts(seq: Mapping[str, Any]) -> str:
    """``; rules: positive_amount 3 failed (drop), has_customer 0 failed (fail)`` for a sequence with rules."""
    rules = seq.get("expectations")
    if not isinstance(rules, Mapping) or not rules:
        return ""
    parts = []
    for name, rule in rules.items():
        rule = rule if isinstance(rule, Mapping) else {}
        failed = rule.get("failed_rows")
        count = f"{failed:,}" if isinstance(failed, int) else "?"
        verdict = "" if rule.get("passed") is not False or rule.get("action") != "fail" else ", FAILED"
        parts.append(f"{name} {count} failed ({rule.get('action')}{verdict})")
    return "; rules: " + ", ".join(parts)


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "an unknown time"


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


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja's own for a syntax error, else that of the innermost
    frame of template code in the traceback (Airflow runs the compiled template without Jinja's traceback
    rewriting, so the frame's line is mapped back through the template's debug info)."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    line = None
    for frame, frame_line in traceback.walk_tb(exc.__traceback__):
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(frame_line)
        elif frame.f_code.co_filename == "<template>":
            line = frame_line
    return line


_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_JINJA_STATEMENT_LINE = re.compile(r"^[ \t]*\{%.*?%\}[ \t]*$", re.MULTILINE)


def _template_as_written(text: str) -> str:
    """A Jinja config template read as YAML: comments and lines holding only a statement (``{% set %}``,
    ``{% if %}``) blanked, line numbers kept; expressions stay as the text they are."""

    def blank(match: re.Match[str]) -> str:
        return "\n" * match.group(0).count("\n")

    return _JINJA_STATEMENT_LINE.sub("", _JINJA_COMMENT.sub(blank, text))


class _LiteralDumper(yaml.SafeDumper):
    """YAML with multi-line strings (queries) as ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def effective_config_text(pipeline: PipelineConfig, source: Path | None = None) -> str:
    """The config the driver gets, as YAML for a person: variables substituted, the config's and the
    operator's ``vars`` in one block, credentials masked (``password`` values, user info and password
    parameters of URLs); ``${env:...}``, ``${secret:...}`` references stay, resolved only by the driver."""
    document = _masked(pipeline.to_document())
    where = f" of {source}" if source is not None else ""
    header = f"# The effective config{where}: templates rendered, variables substituted, secrets masked.\n"
    body = yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=120)
    return header + pipeline.mask(body)


def _masked(value: Any, key: str = "") -> Any:
    from spark_job.config.urls import is_credential_key, strip_credentials

    if isinstance(value, Mapping):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str):
        if is_credential_key(key) and not value.startswith("${"):
            return "***"
        if key not in ("query", "condition") and ("://" in value or value.startswith("jdbc:")):
            return strip_credentials(value)
    return value


def _has_jinja(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_JINJA.search(value))
    if isinstance(value, Mapping):
        return any(_has_jinja(k) or _has_jinja(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_jinja(v) for v in value)
    return False


def _var_value(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


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


def _first_try_number(ti: Any) -> int:
    retries = getattr(getattr(ti, "task", None), "retries", 0) or 0
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(max_tries, int) or max_tries < 0:
        return 1
    return max(1, min(max_tries - int(retries) + 1, int(ti.try_number)))


def _labels(context: Context) -> dict[str, str]:
    ti = context["ti"]
    return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}
