"""``connection: ID`` in a JDBC source or target: an Airflow connection turned into a JDBC URL, with the
login and password handed to the driver through its environment (``${env:...}``), never staged.

A connection whose extra names ``password_secret`` (``aws:prod/orders-db#password``,
``gcp:projects/p/secrets/orders-db``) gives a secret-manager reference instead, which the driver
resolves itself: such a connection works on every runtime, the login is staged as written (or read
from ``user_secret``) and nothing goes through the driver's environment."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sparkpipe.masking import connection_extras

if TYPE_CHECKING:
    from airflow.sdk import Connection

_URL_FORMATS = {
    "postgres": "jdbc:postgresql://{host}:{port}/{schema}",
    "postgresql": "jdbc:postgresql://{host}:{port}/{schema}",
    "mysql": "jdbc:mysql://{host}:{port}/{schema}",
    "mssql": "jdbc:sqlserver://{host}:{port};databaseName={schema}",
    "oracle": "jdbc:oracle:thin:@//{host}:{port}/{schema}",
}
_DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}


def env_name(conn_id: str, what: str) -> str:
    return f"SPARKPIPE_CONN_{re.sub(r'[^A-Z0-9]', '_', conn_id.upper())}_{what}"


def jdbc_url(conn: Connection) -> str:
    """The JDBC URL of a connection: its ``jdbc_url`` extra, a ``jdbc:`` host, or built from its type."""
    extra = connection_extras(conn)
    if extra.get("jdbc_url"):
        return str(extra["jdbc_url"])
    if (conn.host or "").startswith("jdbc:"):
        return str(conn.host)
    pattern = _URL_FORMATS.get(conn.conn_type or "")
    if pattern is None:
        raise ValueError(
            f"connection type {conn.conn_type!r} has no JDBC URL form: set the connection's extra "
            "'jdbc_url' or use a postgres, mysql, mssql or oracle connection"
        )
    port = conn.port or _DEFAULT_PORTS[conn.conn_type or ""]
    return pattern.format(host=conn.host, port=port, schema=conn.schema or "")


class ConnectionCredentials:
    """Resolves ``connection: ID`` references while a config is loaded, remembering the secrets.

    Parameters:
        get_connection: how to read a connection; None at DAG parse time, when no connection is read
            (the reference is only checked for shape, with a placeholder URL).

    Attributes:
        environment: ``SPARKPIPE_CONN_<ID>_USER`` / ``_PASSWORD`` → value, for the driver's environment.
    """

    def __init__(self, get_connection: Callable[[str], Connection] | None) -> None:
        self.get_connection = get_connection
        self.environment: dict[str, str] = {}

    def __call__(self, conn_id: str) -> dict[str, Any]:
        user, password = env_name(conn_id, "USER"), env_name(conn_id, "PASSWORD")
        settings: dict[str, Any] = {"user": f"${{env:{user}}}", "password": f"${{env:{password}}}"}
        if self.get_connection is None:
            return {"url": f"jdbc:airflow-connection:{conn_id}", **settings}
        conn = self.get_connection(conn_id)
        settings["url"] = jdbc_url(conn)
        extra = connection_extras(conn)
        if extra.get("password_secret"):
            settings["password"] = secret_reference(extra["password_secret"], "password_secret")
            if extra.get("user_secret"):
                settings["user"] = secret_reference(extra["user_secret"], "user_secret")
            elif conn.login:
                settings["user"] = conn.login
            else:
                del settings["user"]
            return settings
        self.environment[user] = conn.login or ""
        self.environment[password] = conn.password or ""
        return settings


def secret_reference(value: Any, field: str) -> str:
    """``${secret:...}`` for a connection extra naming a secret (``aws:NAME[#key]``, ``gcp:projects/...``)."""
    from spark_job.config.secret_managers import check_reference

    text = str(value).strip()
    if text.startswith("${secret:") and text.endswith("}"):
        text = text[len("${secret:") : -1]
    if problem := check_reference(text):
        raise ValueError(f"the connection's extra {field!r} ({text!r}): {problem}")
    return f"${{secret:{text}}}"
