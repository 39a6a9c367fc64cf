"""Substitution in config strings: ``${name}`` (a variable), ``${env:NAME}`` (an environment variable),
``${file:PATH}`` (a secret mounted as a file) and ``${secret:MANAGER:NAME[#key]}`` (a secret manager's secret,
see :mod:`spark_job.config.secret_managers`); ``$${`` writes a literal ``${``.

Environment, file and secret references are resolved on the driver only; their values are secrets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.document import child_path

REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# The text all substitutions may produce together: aliases and variables that double each other stop here.
MAX_EXPANDED_CHARS = 10 * 1024 * 1024
# Suggestions compare a name with every known one: only the first problems get them, so a config with
# thousands of misspelt names still validates in linear time.
MAX_SUGGESTIONS = 50
MAX_SECRET_FILE_BYTES = 1024 * 1024


class ExpansionLimit(Exception):
    """Substituted text grew past ``MAX_EXPANDED_CHARS``; the problem is already reported."""


@dataclass(frozen=True)
class Placed:
    """Where the value of a var passed in landed in a substituted text.

    Attributes:
        start: the value's first index in the text.
        end: the index after it.
        var: the var passed in (``--var``, the operator's ``vars``).
        via: the config's own vars it went through, outermost first (``${greeting}`` holding ``${label}``).
    """

    start: int
    end: int
    var: str
    via: tuple[str, ...] = ()


def escape(text: str) -> str:
    """``text`` written so that substitution gives it back unchanged (``${`` → ``$${``)."""
    return text.replace("${", "$${")


def suggest(name: str, known: Any, budget: list[int]) -> str:
    """`` (did you mean 'x'?)`` for the first ``MAX_SUGGESTIONS`` calls sharing ``budget``, else ``""``."""
    if budget[0] <= 0:
        return ""
    budget[0] -= 1
    hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class Substitution:
    """Substitutes references in every string of a document, recording problems by config path.

    Attributes:
        values: the variables (config ``vars`` overridden by ``--var`` / the operator's ``vars``).
        environ: where ``${env:NAME}`` is looked up.
        resolve_env: when False, ``${env:NAME}``, ``${file:PATH}`` and ``${secret:...}`` are kept as written
            (resolved later, on the driver); secret references are still checked for shape.
        secrets: values that came from the environment, files or secret managers, masked in logs and metrics.
        secret_paths: config paths whose value holds a resolved (or, when not resolving, a kept) secret
            reference: Spark is told to redact such ``spark_conf`` keys.
        resolved: config path → the text substitution produced there (for the paths holding a reference).
        staged: config path → the text to stage for a second substitution (on the driver) that gives the
            same result as this one: literal ``${`` escaped, kept secret references live.
        used: the variable names referenced.
        passed_in: the vars passed in (``--var``, the operator's ``vars``): data, never expanded, and
            checked where they land in SQL (see :func:`check_values_in_sql`).
        placed: config path → where values of vars passed in landed in its text (directly or through the
            config's own vars).
    """

    def __init__(
        self,
        values: Mapping[str, str],
        environ: Mapping[str, str],
        resolve_env: bool,
        report: Callable[[str, str], None],
    ) -> None:
        self.values = dict(values)
        self.environ = environ
        self.resolve_env = resolve_env
        self.report = report
        self.secrets: set[str] = set()
        self.secret_paths: set[str] = set()
        self.staged: dict[str, str] = {}
        self.resolved: dict[str, str] = {}
        self.used: set[str] = set()
        self.declared: set[str] = set()  # vars from the config (overrides are data and never hold references)
        self.secret_vars: set[str] = set()  # declared vars whose value came from a secret reference
        self.fetched: dict[str, str] = {}
        self.passed_in: set[str] = set()
        self.placed: dict[str, list[Placed]] = {}
        self.expanded = 0
        self.suggestions = [MAX_SUGGESTIONS]

    def staged_text(self, path: str, value: str) -> str:
        """What to stage for ``value``, the substituted text at ``path``: the text the driver's substitution
        turns into ``value`` again (literal ``${`` escaped, the references kept for the driver live)."""
        staged = self.staged.get(path)
        return staged if staged is not None and self.resolved.get(path) == value else escape(value)

    def grow(self, size: int, path: str) -> None:
        self.expanded += size
        if self.expanded > MAX_EXPANDED_CHARS:
            self.report(
                path,
                f"the config expands to more than {MAX_EXPANDED_CHARS:,} characters after aliases and "
                "variables: a variable or alias is repeated or doubles itself",
            )
            raise ExpansionLimit

    def text(self, value: str, path: str) -> str:
        if path in self.resolved:  # substituted again (a query file's text after its name): forget the first
            del self.resolved[path]
            self.staged.pop(path, None)
            self.placed.pop(path, None)
        if "${" not in value:
            self.grow(len(value), path)
            return value
        resolved: list[str] = []
        staged: list[str] = []  # escaped literal runs and live references, alternating
        literal_run: list[str] = []  # text the driver must read back as it is: escaped as one run

        def close_run() -> None:
            staged.append(escape("".join(literal_run)))
            literal_run.clear()

        placed: list[Placed] = []
        length = 0
        last = 0
        for match in REFERENCE.finditer(value):
            literal = value[last : match.start()]
            last = match.end()
            out, live = self.reference(match, path)
            self.grow(len(literal) + len(out), path)
            length += len(literal)
            placed += self.placed_by(match, out, length)
            length += len(out)
            resolved.append(literal)
            resolved.append(out)
            literal_run.append(literal)
            if live is None:
                literal_run.append(out)
                continue
            close_run()
            self.check_join(staged[-1], live, path)
            staged.append(live)
        tail = value[last:]
        self.grow(len(tail), path)
        resolved.append(tail)
        literal_run.append(tail)
        close_run()
        if len(staged) > 1:
            self.check_join(staged[-2], staged[-1], path)
        self.staged[path] = "".join(staged)
        self.resolved[path] = result = "".join(resolved)
        if placed:
            self.placed[path] = placed
        return result

    def placed_by(self, match: re.Match[str], out: str, at: int) -> list[Placed]:
        """Where values of vars passed in land when ``match``, substituted by ``out``, starts at ``at``."""
        name = (match.group(1) or "").strip()
        if match.group(0) == "$${" or self.values.get(name) != out:
            return []
        if name in self.passed_in:
            return [Placed(at, at + len(out), name)]
        return [Placed(at + p.start, at + p.end, p.var, (name, *p.via)) for p in self.placed.get(f"vars.{name}", ())]

    def check_join(self, before: str, after: str, path: str) -> None:
        """A ``$`` that ends one staged piece and a ``{`` that starts the next would read as a reference
        (or the escape ``$${``) in the driver's substitution: no spelling keeps both, so say so."""
        if before.endswith("$") and after.startswith(("{", "${")):
            self.report(path, "a '$' right before a reference kept for the driver cannot be passed on: add a space")

    def reference(self, match: re.Match[str], path: str) -> tuple[str, str | None]:
        """What one reference becomes, and, for a reference kept for the driver, its staged text (live);
        None when the result is literal text."""
        if match.group(0) == "$${":
            return "${", None
        ref = match.group(1).strip()
        if ref.startswith("env:"):
            name = ref[4:].strip()
            if not name:
                self.report(path, f"{match.group(0)} names no environment variable: write ${{env:NAME}}")
                return "", None
            if not self.resolve_env:
                self.secret_paths.add(path)
                return match.group(0), match.group(0)
            if name not in self.environ:
                self.report(path, f"environment variable {name} is not set (referenced as ${{env:{name}}})")
                return "", None
            self.secret_paths.add(path)
            return self.remember(self.environ[name]), None
        if ref.startswith("file:"):
            return self.secret_file(ref[5:].strip(), match.group(0), path)
        if ref.startswith("secret:"):
            return self.secret_manager(ref[7:].strip(), match.group(0), path)
        if not NAME.match(ref):
            self.report(
                path,
                f"${{{ref}}} is not a variable reference: names are letters, digits and _"
                " (write $${ for a literal ${)",
            )
            return match.group(0), None
        self.used.add(ref)
        if ref not in self.values:
            self.report(
                path,
                f"undefined variable ${{{ref}}}{suggest(ref, self.values, self.suggestions)}: "
                f"define it under 'vars' or pass --var {ref}=VALUE",
            )
            return match.group(0), None
        if ref in self.secret_vars:
            self.secret_paths.add(path)
        value = self.values[ref]
        # A declared var may hold a kept secret reference: staged live, like where it was written.
        staged = self.staged.get(f"vars.{ref}") if ref in self.declared else None
        if staged is not None and self.resolved.get(f"vars.{ref}") == value and staged != escape(value):
            return value, staged
        return value, None

    def secret_file(self, name: str, reference: str, path: str) -> tuple[str, str | None]:
        """``${file:/run/secrets/db-password}``: a secret mounted as a file (Kubernetes, Docker secrets)."""
        from spark_job.config.document import UnreadableFile, read_text_file

        if not name:
            self.report(path, f"{reference} names no file: write ${{file:/path/to/secret}}")
            return "", None
        self.secret_paths.add(path)
        if not self.resolve_env:
            return reference, reference
        try:
            secret = read_text_file(name, "a secret file", MAX_SECRET_FILE_BYTES).strip()
        except UnreadableFile as exc:
            self.report(path, f"cannot read the secret file {name} (referenced as {reference}): {exc.reason}")
            return "", None
        return self.remember(secret), None

    def secret_manager(self, name: str, reference: str, path: str) -> tuple[str, str | None]:
        """``${secret:aws:prod/db#password}``: read from a secret manager by the driver, at load time."""
        from spark_job.config.secret_managers import SecretUnavailable, check_reference, read_secret

        if problem := check_reference(name):
            self.report(path, f"{reference}: {problem}")
            return reference, None
        self.secret_paths.add(path)
        if not self.resolve_env:
            return reference, reference
        try:
            secret = read_secret(name, self.environ, self.fetched)
        except SecretUnavailable as exc:
            self.report(path, f"cannot read the secret {reference}: {exc}")
            return "", None
        for whole in self.fetched.values():  # the whole text of a JSON secret read by field
            self.remember(whole)
        return self.remember(secret), None

    def remember(self, secret: str) -> str:
        """Record a resolved value for masking (shorter ones would mask ordinary text) and return it."""
        if len(secret) >= 4:
            self.secrets.add(secret)
        return secret

    def tree(self, value: Any, path: str) -> Any:
        """Substitute every string of ``value``; iterative, so depth costs no stack."""
        if not isinstance(value, (Mapping, list)):
            return self.text(value, path) if isinstance(value, str) else value
        root: dict[str, Any] = {}
        stack: list[tuple[Any, str, Any, Any]] = [(value, path, root, "")]
        while stack:
            node, where, parent, key = stack.pop()
            if isinstance(node, str):
                parent[key] = self.text(node, where)
            elif type(node) is dict or isinstance(node, Mapping):
                copy: dict[Any, Any] = {}
                parent[key] = copy
                for k, v in node.items():
                    copy[k] = v
                    stack.append((v, child_path(where, k), copy, k))
            elif isinstance(node, list):
                items: list[Any] = list(node)
                parent[key] = items
                stack.extend((v, child_path(where, i), items, i) for i, v in enumerate(node))
            else:
                parent[key] = node
        return root[""]


def resolve_vars(declared: Mapping[str, Any], overrides: Mapping[str, Any], substitution: Substitution) -> None:
    """Fill ``substitution.values``: overrides win and are data, taken as given (never expanded: whoever
    passes a var, for instance by triggering a DAG run, must not read the driver's environment or
    files through it); declared values may reference other variables and ``env:``/``file:``/``secret:``.
    """
    raw = {str(k): _as_text(v) for k, v in declared.items() if str(k) not in overrides}
    substitution.declared.update(raw)
    for name, value in overrides.items():
        substitution.values[str(name)] = _as_text(value)
        substitution.passed_in.add(str(name))
    resolving: list[str] = []
    on_stack: set[str] = set()
    # Iterative depth-first resolution: a chain of thousands of variables costs no stack.
    for first in raw:
        if first in substitution.values:
            continue
        work: list[tuple[str, bool]] = [(first, False)]
        while work:
            name, done = work.pop()
            if done:
                resolving.pop()
                on_stack.discard(name)
                substitution.values[name] = substitution.text(raw[name], f"vars.{name}")
                if f"vars.{name}" in substitution.secret_paths:
                    substitution.secret_vars.add(name)
                continue
            if name in substitution.values:
                continue
            if name in on_stack:
                loop = " -> ".join([*resolving[resolving.index(name) :], name])
                substitution.report(f"vars.{name}", f"variables reference each other in a loop: {loop}")
                substitution.values[name] = ""
                continue
            resolving.append(name)
            on_stack.add(name)
            work.append((name, True))
            for match in REFERENCE.finditer(raw[name]):
                ref = (match.group(1) or "").strip()
                if ref in raw and ref not in substitution.values:
                    work.append((ref, False))


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def sql_places(body: Mapping[str, Any], fields_of: Callable[[str, str], Mapping[str, Any]]) -> dict[str, str]:
    """The config paths whose text is SQL, each with its dialect (``spark`` or ``database``): sequence
    queries and query files, expectation conditions, source schemas, and the keys and options of sources
    and targets that hold SQL (:data:`spark_job.config.fields.SQL_KEYS`, ``Field(sql=...)`` of other types).
    ``fields_of(role, type)`` gives a reader's (role ``source``) or writer's (``target``) fields."""
    places: dict[str, str] = {}
    sources = body.get("sources")
    entries: Any = sources.items() if isinstance(sources, Mapping) else enumerate(sources or [])
    for key, spec in entries if isinstance(sources, (Mapping, list)) else ():
        if isinstance(spec, Mapping):
            places.update(_entry_sql_places(spec, child_path("sources", key), "source", fields_of))
    sequences = body.get("sequences")
    for i, seq in enumerate(sequences if isinstance(sequences, list) else []):
        if not isinstance(seq, Mapping):
            continue
        path = f"sequences[{i}]"
        places[f"{path}.query"] = places[f"{path}.query_file"] = "spark"
        rules = seq.get("expectations")
        for j, _ in enumerate(rules if isinstance(rules, list) else []):
            places[f"{path}.expectations[{j}].condition"] = "spark"
        for key in ("target", "quarantine"):
            if isinstance(seq.get(key), Mapping):
                places.update(_entry_sql_places(seq[key], f"{path}.{key}", "target", fields_of))
    return places


def _entry_sql_places(
    spec: Mapping[str, Any], path: str, role: str, fields_of: Callable[[str, str], Mapping[str, Any]]
) -> dict[str, str]:
    from spark_job.config.fields import SQL_KEYS, SQL_OPTIONS

    kind = spec.get("type")
    if not isinstance(kind, str):
        return {}
    keys = {**SQL_KEYS.get(f"{role}:*", {}), **SQL_KEYS.get(f"{role}:{kind}", {})}
    keys.update({k: f.sql for k, f in fields_of(role, kind).items() if getattr(f, "sql", None)})
    places = {child_path(path, k): dialect for k, dialect in keys.items() if k in spec}
    options = spec.get("options")
    if isinstance(options, Mapping):
        marked = SQL_OPTIONS.get(kind, {})
        places.update(
            {
                child_path(child_path(path, "options"), k): marked[str(k).lower()]
                for k in options
                if str(k).lower() in marked
            }
        )
    return places


_WHAT = {".query": "query", ".query_file": "query file", ".condition": "condition", ".schema": "schema"}


def check_values_in_sql(
    substitution: Substitution, places: Mapping[str, str], vars_from: str, report: Callable[[str, str], None]
) -> None:
    """Report each value of a var passed in that would change the SQL it landed in (a config error naming
    the var, where it came from and where it is used): such values are data, standing for one literal or
    name (see :func:`spark_job.config.sql_values.placed_value_problems`)."""
    from spark_job.config.sql_values import placed_value_problems

    for path, placed in substitution.placed.items():
        dialect = places.get(path)
        if dialect is None:
            continue
        text = substitution.resolved[path]
        spans = [(p.start, p.end) for p in placed]
        what = next((w for suffix, w in _WHAT.items() if path.endswith(suffix)), "SQL")
        for problem in placed_value_problems(text, spans, database=dialect == "database"):
            p = placed[problem.index]
            value = text[p.start : p.end]
            shown = repr(value if len(value) <= 60 else value[:57] + "...")
            via = f", through ${{{'}, ${'.join(p.via)}}}" if p.via else ""
            reference = f"${{{p.via[0] if p.via else p.var}}}"
            report(
                path,
                f"the value {shown} of {p.var} ({vars_from}{via}) {problem.reason} (line {problem.line} of the "
                f"{what}): a value passed in is data, one literal or name, and may not change the SQL; "
                f"{problem.advice.replace('${name}', reference)}",
            )
