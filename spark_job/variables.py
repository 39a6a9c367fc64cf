"""Substitution in config strings: ``${name}`` (a variable), ``${env:NAME}`` (an environment variable),
``${file:PATH}`` (a secret mounted as a file) and ``${secret:MANAGER:NAME[#key]}`` (a secret manager's secret,
see :mod:`spark_job.secret_managers`); ``$${`` writes a literal ``${``.

Environment, file and secret references are resolved on the driver only; their values are secrets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from spark_job.document import child_path

REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


class Substitution:
    """Substitutes references in every string of a document, recording problems by config path.

    Attributes:
        values: the variables (config ``vars`` overridden by ``--var`` / the operator's ``vars``).
        environ: where ``${env:NAME}`` is looked up.
        resolve_env: when False, ``${env:NAME}``, ``${file:PATH}`` and ``${secret:...}`` are kept as written
            (resolved later, on the driver); secret references are still checked for shape.
        secrets: values that came from the environment, files or secret managers, masked in logs and metrics.
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
        self.fetched: dict[str, str] = {}

    def text(self, value: str, path: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            ref = match.group(1).strip()
            if ref.startswith("env:"):
                name = ref[4:].strip()
                if not self.resolve_env:
                    return match.group(0)
                if name not in self.environ:
                    self.report(path, f"environment variable {name} is not set (referenced as ${{env:{name}}})")
                    return ""
                return self.remember(self.environ[name])
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
                return match.group(0)
            if ref not in self.values:
                hint = difflib.get_close_matches(ref, list(self.values), n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.report(
                    path,
                    f"undefined variable ${{{ref}}}{did_you_mean}: define it under 'vars' or pass --var {ref}=VALUE",
                )
                return match.group(0)
            return self.values[ref]

        return REFERENCE.sub(replace, value)

    def secret_file(self, name: str, reference: str, path: str) -> str:
        """``${file:/run/secrets/db-password}``: a secret mounted as a file (Kubernetes, Docker secrets)."""
        if not self.resolve_env:
            return reference
        try:
            with open(name, encoding="utf-8") as fh:
                secret = fh.read().strip()
        except OSError as exc:
            self.report(path, f"cannot read the secret file {name} (referenced as {reference}): {exc.strerror}")
            return ""
        return self.remember(secret)

    def secret_manager(self, name: str, reference: str, path: str) -> str:
        """``${secret:aws:prod/db#password}``: read from a secret manager by the driver, at load time."""
        from spark_job.secret_managers import SecretUnavailable, check_reference, read_secret

        if problem := check_reference(name):
            self.report(path, f"{reference}: {problem}")
            return reference
        if not self.resolve_env:
            return reference
        try:
            secret = read_secret(name, self.environ, self.fetched)
        except SecretUnavailable as exc:
            self.report(path, f"cannot read the secret {reference}: {exc}")
            return ""
        for whole in self.fetched.values():  # the whole text of a JSON secret read by field
            self.remember(whole)
        return self.remember(secret)

    def remember(self, secret: str) -> str:
        """Record a resolved value for masking (shorter ones would mask ordinary text) and return it."""
        if len(secret) >= 4:
            self.secrets.add(secret)
        return secret

    def tree(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, Mapping):
            return {k: self.tree(v, child_path(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v, child_path(path, i)) for i, v in enumerate(value)]
        return value


def resolve_vars(declared: Mapping[str, Any], overrides: Mapping[str, Any], substitution: Substitution) -> None:
    """Fill ``substitution.values``: overrides win; values may reference other variables and ``env:``."""
    raw = {str(k): _as_text(v) for k, v in declared.items()}
    raw.update({str(k): _as_text(v) for k, v in overrides.items()})
    resolving: list[str] = []

    def resolve(name: str) -> None:
        if name in substitution.values:
            return
        if name in resolving:
            substitution.report(
                f"vars.{name}", f"variables reference each other in a loop: {' -> '.join([*resolving, name])}"
            )
            substitution.values[name] = ""
            return
        resolving.append(name)
        for match in REFERENCE.finditer(raw[name]):
            ref = (match.group(1) or "").strip()
            if ref in raw:
                resolve(ref)
        resolving.pop()
        substitution.values[name] = substitution.text(raw[name], f"vars.{name}")

    for name in raw:
        resolve(name)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
