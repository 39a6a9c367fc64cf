"""``TemplatedConfig``: a sparkpipe config as ``SparkPipelineOperator`` holds it (a file or a dict, with the
operator's vars), read, validated at parse, rendered by Jinja and loaded with the driver's own validation."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from airflow_provider_sparkpipe.connections import ConnectionCredentials
from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError

if TYPE_CHECKING:
    from spark_job.config.validation import PipelineConfig

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
VARS_FROM = "the operator's vars"
"""Where the driver's validation says a var's value came from (a value passed in is data, never SQL)."""
_JINJA = re.compile(r"\{\{|\{%|\{#")
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


@dataclass(frozen=True)
class ParseCheck:
    """What validating a config at DAG parse found.

    Parameters:
        pipeline: the validated config; None when it can only be validated at run time (a Jinja
            template, or a problem that template text standing in for a value may cause).
        plan: the pipeline's plan in Markdown (the task's documentation) when one was asked for.
        warning: a problem found while templates are still unrendered, to log (checked again at run time).
    """

    pipeline: PipelineConfig | None
    plan: str | None = None
    warning: str | None = None


class TemplatedConfig:
    """The operator's config: where it is, how it is read, validated, rendered and loaded.

    Airflow keeps the values of the operator's template fields (``config``: the file's path, then its
    text, then the rendered text, then the effective config; or a dict) on the operator: they are
    passed in, and this object keeps what it learnt of them (the file, its text, the validated config,
    the credentials of the Airflow connections it names).

    Parameters:
        config: a ``.yaml``/``.yml``/``.json`` path (relative to ``folder()``) or the config as a dict.
        vars: the operator's ``vars``, checked for depth here.
        where: what to name in errors (``SparkPipelineOperator 'task'``).
        folder: the DAG file's folder (else the working directory), asked when a path is resolved.
    """

    def __init__(self, config: Any, vars: Any, *, where: str, folder: Callable[[], Path]) -> None:
        self.where = where
        self.folder = folder
        self.config_file: Path | None = None
        self.pipeline: PipelineConfig | None = None
        """The config validated when the templates rendered (or when a run loaded it)."""
        # At parse no connection is read: references are checked with a placeholder URL.
        self.credentials = ConnectionCredentials(None)
        self._raw: str | None = None
        self._effective: str | None = None
        self.value: Any = self._locate(config)
        """The template field's first value: the config file's resolved path, or the dict."""
        self._check_nesting(self.value, "config")
        self._check_nesting(vars, "vars")

    @property
    def base_dir(self) -> Path:
        """The folder ``query_file`` paths are relative to: the config file's, else the DAG file's."""
        return self.config_file.parent if self.config_file is not None else self.folder()

    # Where it is, and reading it. -------------------------------------------------------------------

    def _locate(self, config: Any) -> Any:
        if isinstance(config, Mapping):
            return dict(config)
        if not isinstance(config, (str, os.PathLike)):
            raise SparkPipelineConfigError(
                f"{self.where}: config must be a path to a .yaml/.yml/.json file or a dict, not {type(config).__name__}"
            )
        path = Path(os.fspath(config)).expanduser()
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise SparkPipelineConfigError(f"{self.where}: config {str(config)!r} must end in .yaml, .yml or .json")
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            mode = path.stat().st_mode  # stat, not open: opening a FIFO would wait for a writer
        except FileNotFoundError:
            raise SparkPipelineConfigError(
                f"{self.where}: config file not found: {path} (a relative path is relative to the DAG file's folder)"
            ) from None
        except OSError as exc:
            raise SparkPipelineConfigError(f"{self.where}: config {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise SparkPipelineConfigError(
                f"{self.where}: config {path} is {kind}, not a regular file: give a .yaml, .yml or .json file"
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
                raise SparkPipelineConfigError(f"{self.where}: {what}: {exc}") from None

    def _text(self) -> str | None:
        """The config file's text, read without blocking and bounded in size; None when it is not UTF-8
        (loading it then reports the file, line and byte)."""
        from spark_job.config.document import UnreadableFile, read_text_file

        assert self.config_file is not None
        try:
            return read_text_file(self.config_file, "a config")
        except UnreadableFile as exc:
            if exc.line is not None:
                return None
            raise SparkPipelineConfigError(f"{self.where}: config {exc}") from None

    def read(self, config: Any) -> Any:
        """The config file's text in place of its path (what Airflow does for ``template_ext`` fields);
        any other value as it is. A file that is not UTF-8 stays a path: loading it reports the byte."""
        if self.config_file is not None and config == str(self.config_file):
            text = self._text()
            if text is not None:
                self._raw = text
                return text
        return config

    # At DAG parse. ----------------------------------------------------------------------------------

    def check_at_parse(self, vars: Any, *, plan: bool) -> ParseCheck:
        """Validate what does not depend on templates; raise on a config that cannot run.

        ``plan``: also give the pipeline's plan (a Jinja config file's is planned as written)."""
        from spark_job.errors import ConfigError

        if self.config_file is not None:
            text = self._text() or ""
            if _JINJA.search(text):
                # A Jinja template is valid YAML only once rendered: validated when the task runs. Its plan,
                # with the template text as written, is the task's documentation.
                return ParseCheck(None, self._template_plan(text, vars) if plan else None)
        templated = _has_jinja(self.value) or not isinstance(vars, (Mapping, type(None))) or _has_jinja(vars)
        try:
            pipeline = self._load(self.config_file or self.value, vars if isinstance(vars, Mapping) else {})
        except ConfigError as exc:
            message = self._invalid_message(exc)
            if templated:
                # The problem may come from template text standing in for a value: check again at run time.
                return ParseCheck(
                    None, warning=f"{message}\n(config or vars hold templates: validated again at run time)"
                )
            raise SparkPipelineConfigError(message) from None
        return ParseCheck(pipeline, plan_markdown(pipeline) if plan else None)

    def _template_plan(self, text: str, vars: Any) -> str | None:
        """The plan of a config file that is a Jinja template, read as written (statement lines and
        comments left out, ``{{ ... }}`` kept as text); none when the template is not YAML as written."""
        assert self.config_file is not None
        try:
            pipeline = self._load_text(
                _template_as_written(text), self.config_file, vars if isinstance(vars, Mapping) else {}
            )
        except Exception:
            return None
        note = (
            "\n*Planned from the template as written: `{{ ... }}` shows where values come from when the task "
            "runs; the rendered config is validated then.*\n"
        )
        return plan_markdown(pipeline) + note

    # At run time. -----------------------------------------------------------------------------------

    def render(self, field: str, value: Any, render: Callable[[Any], Any], *, logical_date: bool) -> Any:
        """One template field rendered by ``render`` (Airflow's Jinja, in the task's context); an empty
        value and the effective config as they are. A template error names the config file's line, or
        the key of ``vars``, and why, never the template; ``logical_date``: whether the run has one."""
        if not value or (field == "config" and self.shows_effective(value)):
            return value
        try:
            return render(value)
        except Exception as exc:
            raise SparkPipelineConfigError(self._template_error(field, value, exc, render, logical_date)) from None

    def effective(self, config: Any, vars: Any) -> Any:
        """The config the driver gets, in place of the rendered template, for Airflow's *Rendered
        Templates* view: variables substituted (the config's and ``vars`` in one block), secrets masked.

        The config is loaded and validated here, with Airflow's connections, as a run would; when that
        fails the rendered value stays, and the run reports the problem."""
        if self.shows_effective(config):
            return config
        self.use_connections()
        try:
            pipeline = self.load(config, vars)
        except Exception:
            self.pipeline = None
            return config
        self.pipeline = pipeline
        self._effective = effective_config_text(pipeline, self.config_file)
        return self._effective

    def shows_effective(self, config: Any) -> bool:
        """Whether ``config`` is the effective config this object made (rendering and loading are done)."""
        return self._effective is not None and config is self._effective

    def use_connections(self) -> None:
        """Resolve ``connection:`` references from Airflow's connections from now on (at run time)."""
        from airflow_provider_sparkpipe.masking import get_connection

        self.credentials = ConnectionCredentials(get_connection)

    def load_for_run(self, config: Any, vars: Any) -> PipelineConfig:
        """The config a run submits: the one validated when the templates rendered, else loaded now with
        Airflow's connections; kept as :attr:`pipeline`."""
        if not self.shows_effective(config):
            self.use_connections()
        pipeline = self.pipeline = self.load(config, vars)
        return pipeline

    def load(self, config: Any, vars: Any) -> PipelineConfig:
        """The fully validated config after templates rendered (what a run submits)."""
        from spark_job.errors import ConfigError

        if self.pipeline is not None and self.shows_effective(config):
            return self.pipeline  # loaded when the templates rendered
        vars = vars or {}
        if not isinstance(vars, Mapping):
            raise SparkPipelineConfigError(f"{self.where}: vars must render to a mapping, not {vars!r}")
        try:
            if isinstance(config, Mapping):
                return self._load(dict(config), vars)
            if self.config_file is None or not isinstance(config, str):
                raise SparkPipelineConfigError(f"{self.where}: config rendered to {type(config).__name__}")
            if config in (str(self.config_file), self._raw):
                return self._load(self.config_file, vars)  # unchanged by Jinja
            return self._load_text(config, self.config_file, vars)
        except ConfigError as exc:
            raise SparkPipelineConfigError(self._invalid_message(exc)) from None

    # Loading. ---------------------------------------------------------------------------------------

    def _load(self, source: Any, vars: Mapping[str, Any]) -> PipelineConfig:
        from spark_job.config import load_config

        return load_config(
            source,
            {str(k): _var_value(v) for k, v in vars.items()},
            base_dir=None if isinstance(source, Path) else self.base_dir,
            resolve_env=False,  # ${env:NAME} secrets resolve on the driver, never in Airflow
            connections=self.credentials,
            unknown_vars=True,  # one vars dict may serve several pipelines
            vars_from=VARS_FROM,
        )

    def _load_text(self, text: str, config_file: Path, vars: Mapping[str, Any]) -> PipelineConfig:
        """Load Jinja's output as if it were the config file, so problems keep its name and line numbers."""
        from spark_job.config import load_config
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
                    connections=self.credentials,
                    unknown_vars=True,
                    vars_from=VARS_FROM,
                )
            except ConfigError as exc:
                raise ConfigError(
                    Problem(p.path, p.message, str(config_file) if p.file else None, p.line) for p in exc.problems
                ) from None

    def _invalid_message(self, exc: Exception) -> str:
        what = str(self.config_file) if self.config_file else "(dict config)"
        return f"{self.where}: invalid sparkpipe config {what}:\n{exc}"

    def _template_error(
        self, field: str, value: Any, exc: Exception, render: Callable[[Any], Any], logical_date: bool
    ) -> str:
        """Where a template failed (the config file's line, or the key of ``vars``) and why, never the template."""
        where = field
        if field == "config" and self.config_file is not None and value is self._raw:
            where = str(self.config_file)
        elif isinstance(value, Mapping):
            for key, item in value.items():  # find the key whose value failed, to name it
                try:
                    render(item)
                except Exception as item_exc:
                    where, exc = f"{field}[{key!r}]", item_exc
                    break
        line = _template_line(exc)
        if line is not None:
            where = f"{where}:{line}"
        message = str(getattr(exc, "message", None) or exc)
        if type(exc).__name__ not in ("UndefinedError", "TemplateSyntaxError"):
            message = f"{type(exc).__name__}: {message}"
        text = f"{self.where}: template error in {where}: {message}"
        undefined = _UNDEFINED_NAME.search(message)
        if undefined and undefined.group(1) in _LOGICAL_DATE_KEYS and not logical_date:
            text += (
                "\nThis run has no logical date, and so no ds, ts, logical_date or data_interval_*: use a param, "
                "or the day the run was triggered: {{ (dag_run.logical_date or dag_run.run_after) | ds }}"
            )
        return text


def plan_markdown(pipeline: PipelineConfig) -> str:
    """The pipeline's stages, reads, targets and rules in Markdown (the task's documentation in the UI)."""
    from spark_job.plan import build_plan, render_markdown

    return render_markdown(build_plan(pipeline))


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
