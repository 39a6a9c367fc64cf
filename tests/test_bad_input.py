"""Bad input: a corpus of broken configs through the CLI, and fuzzing of loading + validation.

Every broken config ends in exit code 2 with a message naming where the problem is, no traceback,
no Spark (pyspark is never imported) and nothing written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_job.config.document import parse_document
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

from .test_validation import BASE, CASES

OUT = "/nonexistent-sparkpipe-output"  # every target of the corpus points here; nothing may appear

VALID = yaml.safe_load(BASE)


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data).encode()


def with_(path: str, value: Any) -> bytes:
    """The valid config with one value replaced (``a.b[0].c`` paths)."""
    data = json.loads(json.dumps(VALID))
    node = data
    keys = path.replace("[", ".").replace("]", "").split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    node[int(last) if last.isdigit() else last] = value
    return dump(data)


# name -> (file name, content, text the message must contain)
CORPUS: dict[str, tuple[str, bytes, str]] = {
    f"rule: {name}": ("p.yaml", text.encode(), expected) for name, (text, expected) in CASES.items()
}
CORPUS.update(
    {
        "empty file": ("p.yaml", b"", "the config is empty"),
        "whitespace only": ("p.yaml", b"   \n\n\t\n", "the config is empty"),
        "binary garbage": ("p.yaml", bytes(range(256)) * 8, "p.yaml:2: not UTF-8 text (byte 0x80)"),
        "NUL bytes": ("p.yaml", b"app_name: x\x00\nsequences: []\n", "not valid YAML"),
        "non-UTF-8 latin-1": ("p.yaml", "app_name: café\n".encode("latin-1"), "p.yaml:1: not UTF-8 text"),
        "UTF-16": ("p.yaml", "app_name: x\n".encode("utf-16"), "not UTF-8 text"),
        "huge file": ("p.yaml", b"# padding\n" * 1_200_000, "a config may be at most 10,485,760"),
        "deeply nested YAML": ("p.yaml", b"app_name: " + b"[" * 20000 + b"]" * 20000, "nested too deeply"),
        "deeply nested JSON": ("p.json", b'{"app_name": ' + b"[" * 20000 + b"]" * 20000 + b"}", "nested too deeply"),
        "alias bomb": (
            "p.yaml",
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode() for i in range(8)
            ),
            "the config expands to more than",
        ),
        "YAML tab indentation": ("p.yaml", b"app_name: x\nsources:\n\tevents: {}\n", "p.yaml:3: YAML syntax error"),
        "unclosed quote": ("p.yaml", b'app_name: "x\nsequences: []\n', "YAML syntax error"),
        "JSON trailing comma": ("p.json", b'{"app_name": "x",}', "p.json:1: JSON syntax error"),
        "top-level scalar": ("p.yaml", b"just a string\n", "got a string 'just a string'"),
        "top-level list": ("p.yaml", b"- 1\n- 2\n", "got a list"),
        "python object tag": ("p.yaml", b"app_name: !!python/object/apply:os.system [echo hi]\n", "YAML syntax error"),
        "app_name a number": ("p.yaml", with_("app_name", 5), "app_name: must be a string, got an integer 5"),
        "app_name null": ("p.yaml", with_("app_name", None), "app_name: must be a string, got nothing (null)"),
        "sources a number": ("p.yaml", with_("sources", 3), "sources: must be a mapping of id to source or a list"),
        "source a string": (
            "p.yaml",
            with_("sources.events", "events.csv"),
            "sources.events: a source must be a mapping",
        ),
        "source type a list": (
            "p.yaml",
            with_("sources.events.type", ["file"]),
            "sources.events.type: must be a string",
        ),
        "options a list": (
            "p.yaml",
            with_("sources.events.options", ["a"]),
            "sources.events.options: must be a mapping",
        ),
        "options nested": (
            "p.yaml",
            with_("sources.events.options", {"a": {"b": 1}}),
            "sources.events.options: must be",
        ),
        "sequences a string": ("p.yaml", with_("sequences", "all"), "sequences: must be a list of sequences"),
        "sequence a number": ("p.yaml", with_("sequences[0]", 1), "sequences[0]: a sequence must be a mapping"),
        "query a number": ("p.yaml", with_("sequences[0].query", 42), "sequences[0].query: must be a string"),
        "empty query": ("p.yaml", with_("sequences[0].query", "  "), "sequences[0].query: is empty"),
        "target a list": (
            "p.yaml",
            with_("sequences[0].target", ["parquet"]),
            "sequences[0].target: must be a mapping",
        ),
        "target without type": ("p.yaml", with_("sequences[0].target", {"path": "/x"}), "missing required key 'type'"),
        "mode a boolean": (
            "p.yaml",
            with_("sequences[0].target.mode", True),
            "sequences[0].target.mode: must be a string",
        ),
        "partition_by a mapping": (
            "p.yaml",
            with_("sequences[0].target.partition_by", {"a": 1}),
            "partition_by: must be",
        ),
        "vars a list": ("p.yaml", with_("vars", ["day"]), "vars: must be a mapping"),
        "fail_fast a string": ("p.yaml", with_("fail_fast", "yes please"), "fail_fast: must be true or false"),
        "env var missing": (
            "p.yaml",
            with_("sources.events.path", "${env:SPARKPIPE_NEVER_SET}"),
            "environment variable SPARKPIPE_NEVER_SET is not set",
        ),
        "unknown secret manager": (
            "p.yaml",
            with_(
                "sources.users",
                {"type": "jdbc", "url": "jdbc:h2:mem:x", "table": "t", "password": "${secret:vault:db}"},
            ),
            "sources.users.password: ${secret:vault:db}: unknown secret manager 'vault'",
        ),
        "secret name not a secret's": (
            "p.yaml",
            with_(
                "sources.users", {"type": "jdbc", "url": "jdbc:h2:mem:x", "table": "t", "password": "${secret:gcp:pw}"}
            ),
            "a Google secret is named projects/PROJECT/secrets/SECRET",
        ),
        "bad variable syntax": (
            "p.yaml",
            with_("sources.events.path", "/x/${two words}"),
            "is not a variable reference",
        ),
        "variables in a loop": ("p.yaml", with_("vars", {"a": "${b}", "b": "${a}"}), "variables reference each other"),
        "sequence name with a space": ("p.yaml", with_("sequences[1].name", "my step"), "is not a valid view name"),
        "jdbc url not jdbc": (
            "p.yaml",
            with_("sources.users", {"type": "jdbc", "url": "postgres://h/db", "table": "t"}),
            "sources.users.url: 'postgres://h/db' is not a JDBC URL",
        ),
        "bigquery query without dataset": (
            "p.yaml",
            with_("sources.users", {"type": "bigquery", "query": "SELECT 1"}),
            "needs 'materialization_dataset'",
        ),
        "bigquery indirect without bucket": (
            "p.yaml",
            with_("sequences[1].target", {"type": "bigquery", "table": "p.d.t", "write_method": "indirect"}),
            "needs 'temporary_gcs_bucket'",
        ),
        "jdbc target partitioned": (
            "p.yaml",
            with_("sequences[1].target", {"type": "jdbc", "url": "jdbc:h2:mem:x", "table": "t", "partition_by": "d"}),
            "a JDBC target cannot be partitioned",
        ),
        "jdbc advisory lease off PostgreSQL": (
            "p.yaml",
            with_(
                "sequences[1].target", {"type": "jdbc", "url": "jdbc:mysql://h/db", "table": "t", "lease": "advisory"}
            ),
            "sequences[1].target.lease: advisory locks are PostgreSQL's: use lease: table",
        ),
        "jdbc target is the lease table": (
            "p.yaml",
            with_(
                "sequences[1].target", {"type": "jdbc", "url": "jdbc:mysql://h/db", "table": "shop.SparkPipe_Leases"}
            ),
            "sequences[1].target.table: sparkpipe_leases holds the leases of JDBC targets",
        ),
        "query string never closed": (
            "p.yaml",
            with_("sequences[1].query", "SELECT count(*) AS n\nFROM first WHERE day = '2024"),
            "sequences[1].query: a string ' opened on line 2 of the query is never closed",
        ),
        "query comment never closed": (
            "p.yaml",
            with_("sequences[1].query", "SELECT count(*) AS n FROM first /* the total"),
            "sequences[1].query: a /* comment opened on line 1 of the query is never closed",
        ),
        "target at a bucket root": (
            "p.yaml",
            with_("sequences[1].target", {"type": "parquet", "path": "s3a://lake"}),
            "sequences[1].target.path: s3a://lake/ is the root of a bucket",
        ),
        "target at the filesystem root": (
            "p.yaml",
            with_("sequences[1].target", {"type": "parquet", "path": "file:///"}),
            "sequences[1].target.path: file:/ is the root of a filesystem",
        ),
        "target named like the staging of another": (
            "p.yaml",
            with_("sequences[1].target", {"type": "parquet", "path": "/out/.first.sparkpipe-staging"}),
            "has the name of the folders and files sparkpipe keeps beside a target",
        ),
        "target on the HDFS default port spelt two ways": (
            "p.yaml",
            with_(
                "sequences",
                [
                    {
                        "name": "a",
                        "query": "SELECT 1 AS x",
                        "target": {"type": "parquet", "path": "hdfs://nn:8020/lake/a"},
                    },
                    {"name": "b", "query": "SELECT 2 AS x", "target": {"type": "parquet", "path": "hdfs://NN/lake/a/"}},
                ],
            ),
            "sequences[1].target: writes the same target as sequences[0]",
        ),
        "catalog table and the path of its files": (
            "p.yaml",
            with_(
                "sequences",
                [
                    {"name": "a", "query": "SELECT 1 AS x", "target": {"type": "table", "table": "lake.events"}},
                    {
                        "name": "b",
                        "query": "SELECT 2 AS x",
                        "target": {"type": "parquet", "path": "/wh/lake.db/events"},
                    },
                ],
            ).replace(b"app_name: v", b"app_name: v\nspark_conf: {spark.sql.warehouse.dir: /wh}"),
            "where the catalog table lake.events of sequences[0] keeps its files",
        ),
    }
)


# Values passed in with --var that would change the SQL they land in, or make an integer of other digits:
# name -> (file name, content, extra arguments, text the message must contain).
def _query_with(query: str, **at: Any) -> bytes:
    data = json.loads(json.dumps(VALID))
    data["sequences"][1]["query"] = query
    for path, value in at.items():
        node = data["sequences"][1]
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return dump(data)


SECRET_READ = "' || reflect('java.lang.System', 'getenv', 'SOME_SECRET') || '"
CORPUS_WITH_VARS: dict[str, tuple[str, bytes, list[str], str]] = {
    "--var closing a quoted literal": (
        "p.yaml",
        _query_with("SELECT '${day}' AS day, count(*) AS n FROM first"),
        ["--var", f"day={SECRET_READ}"],
        "sequences[1].query: the value",
    ),
    "--var commenting out the rest": (
        "p.yaml",
        _query_with("SELECT count(*) AS n FROM first WHERE day = '${day}' AND n > 0"),
        ["--var", "day=x' --"],
        "of day (--var) would end the string literal it is placed in",
    ),
    "--var ending in a backslash": (
        "p.yaml",
        _query_with("SELECT '${day}' AS day, 'z' AS other FROM first"),
        ["--var", "day=2024\\"],
        "of day (--var) would end the string literal it is placed in",
    ),
    "--var adding a column": (
        "p.yaml",
        _query_with("SELECT ${day} FROM first"),
        ["--var", "day=n, current_user() AS who"],
        "of day (--var) is more than one number, quoted string or name",
    ),
    "--var number with a condition": (
        "p.yaml",
        _query_with("SELECT count(*) AS n FROM first WHERE n > ${day}"),
        ["--var", "day=1 OR 1=1"],
        "of day (--var) is more than one number",
    ),
    "--var keyword": (
        "p.yaml",
        _query_with("SELECT count(*) AS n FROM first ${day}"),
        ["--var", "day=UNION"],
        "of day (--var) is the keyword UNION, not a name",
    ),
    "--var closing backticks": (
        "p.yaml",
        _query_with("SELECT `${day}` FROM first"),
        ["--var", "day=n`, current_user() AS `who"],
        "would end the `quoted name` it is placed in",
    ),
    "--var in a rule's condition": (
        "p.yaml",
        _query_with(
            "SELECT count(*) AS n FROM first",
            expectations=[{"name": "r", "condition": "n <> '${day}'"}],
        ),
        ["--var", "day=x' OR '1'='1"],
        "sequences[1].expectations[0].condition: the value",
    ),
    "--var through a config var": (
        "p.yaml",
        _query_with("SELECT '${when}' AS w FROM first").replace(b"vars:\n", b"vars:\n  when: on ${day}\n"),
        ["--var", f"day={SECRET_READ}"],
        "of day (--var, through ${when})",
    ),
    "--var with a superscript digit into coalesce": (
        "p.yaml",
        _query_with("SELECT count(*) AS n FROM first", target__coalesce="${day}"),
        ["--var", "day=²"],
        "sequences[1].target.coalesce: must be an integer written with the digits 0-9, got a string '²'",
    ),
    "--var with a superscript digit into max_failed": (
        "p.yaml",
        _query_with(
            "SELECT count(*) AS n FROM first",
            expectations=[{"name": "r", "condition": "n > 0", "on_fail": "fail", "max_failed": "${day}"}],
        ),
        ["--var", "day=²"],
        "sequences[1].expectations[0].max_failed: must be a row count",
    ),
}


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) + len(CORPUS_WITH_VARS) >= 40


def test_every_broken_config_exits_2_with_its_message_and_no_spark(tmp_path: Path) -> None:
    """One interpreter runs the CLI on the whole corpus, so pyspark's absence covers every case."""
    cases = []
    entries = [(name, (file_name, content, [], expected)) for name, (file_name, content, expected) in CORPUS.items()]
    for i, (name, (file_name, content, args, expected)) in enumerate([*entries, *CORPUS_WITH_VARS.items()]):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        (folder / file_name).write_bytes(content.replace(b"/out/", OUT.encode() + b"/"))
        cases.append({"name": name, "config": str(folder / file_name), "args": args, "expected": expected})
    script = """
import contextlib, io, json, sys
from spark_job.cli import main
results = []
for case in json.load(sys.stdin):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(["run", "--config", case["config"], *case["args"]])
        except BaseException as exc:  # anything escaping main is a bug
            code = repr(exc)
    results.append({**case, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
print(json.dumps({"results": results, "pyspark": "pyspark" in sys.modules}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(cases), capture_output=True, text=True, timeout=600, check=True
    )
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["pyspark"] is False
    failures = []
    for r in report["results"]:
        lines = r["stderr"].strip().splitlines()
        ok = (
            r["code"] == 2
            and r["stdout"] == ""
            and "Traceback" not in r["stderr"]
            and any(r["expected"] in line for line in lines)
            and lines[-1].startswith("sparkpipe: ")
            and "nothing was run" in lines[-1]
        )
        if not ok:
            failures.append(f"{r['name']}: exit {r['code']}, stderr {r['stderr'][:400]!r}")
    assert not failures, "\n".join(failures)
    assert not Path(OUT).exists()


def test_an_empty_config_path_says_which_path_is_empty() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spark_job", "validate", "--config", ""], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "the path of a config is empty: give a file name"


def test_run_outputs_inside_a_target_are_refused_before_spark(tmp_path: Path) -> None:
    """The metrics file and the commit log would go with the target's old data when it is replaced."""
    config = tmp_path / "p.yaml"
    config.write_text(BASE.replace("/out/", f"{tmp_path}/out/"))
    for option, value in [
        ("--metrics-out", f"{tmp_path}/out/first/metrics.json"),
        ("--state-dir", f"file://{tmp_path}/out/second/"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "spark_job", "run", "--config", str(config), option, value],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"sparkpipe: {option} {value} lies inside the target of sequences[" in proc.stderr
        assert "which its write replaces: write it elsewhere; nothing was run" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


# -- fuzzing ------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "${day}",
            "${nope}",
            "${env:HOME}",
            "${secret:x:y}",
            "${secret:gcp:#}",
            "$${x}",
            "file",
            "jdbc",
            "overwrite",
            "SELECT 1",
            "",
            0,
            "${env:}",
            "${file:}",
            "${file:/dev/zero}",
            "DROP VIEW events",
            "SELECT * FROM IDENTIFIER(:t)",
            "SELECT r'C:\\' FROM events",
            "jdbc:postgresql://u:pw@h:99x/db",
            "jdbc:sqlserver://h;password={a;b}",
            "événements",
            "9" * 5000,
            "²",
            "\u0661\u0662",
            "1²%",
            "${day}%",
            SECRET_READ,
            "x' --",
            "current_user()",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "app_name",
        "sources",
        "sequences",
        "vars",
        "spark_conf",
        "type",
        "path",
        "query",
        "target",
        "mode",
        "alias",
        "url",
        "table",
        "options",
        "partition_by",
        "name",
        "format",
        "schema",
    ]
)


def mutate(data: Any, draw: Any, depth: int = 0) -> Any:
    """Replace, drop or add one entry somewhere in a valid config."""
    if isinstance(data, dict) and data and depth < 5:
        key = draw(st.sampled_from(sorted(data)))
        action = draw(st.sampled_from(["replace", "drop", "add", "descend", "descend"]))
        copy = dict(data)
        if action == "replace":
            copy[key] = draw(values)
        elif action == "drop":
            del copy[key]
        elif action == "add":
            copy[draw(keys)] = draw(values)
        else:
            copy[key] = mutate(data[key], draw, depth + 1)
        return copy
    if isinstance(data, list) and data and depth < 5:
        i = draw(st.integers(0, len(data) - 1))
        copy = list(data)
        copy[i] = mutate(data[i], draw, depth + 1) if draw(st.booleans()) else draw(values)
        return copy
    return draw(values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_configs_raise_only_config_errors(data: st.DataObject) -> None:
    config = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        config = mutate(config, data.draw)
    try:
        load_config(config, environ={"HOME": "/root"})
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_fuzzed_text_raises_only_config_errors(text: str) -> None:
    for name in ("p.yaml", "p.json"):
        try:
            parse_document(text, name)
        except ConfigError as exc:
            assert exc.problems


# -- files that are not regular files, and sizes that grow only when expanded ---------------------


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in its own interpreter; the timeout bounds a hang (a FIFO read would block forever)."""
    script = "import sys\nfrom spark_job.cli import main\ncode = main(sys.argv[1:])\n"
    script += "assert 'pyspark' not in sys.modules\nsys.exit(code)\n"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, **(env or {})},
    )


def assert_config_error(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_fifos_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert_config_error(
        run_cli(["validate", "--config", str(fifo)]), f"{fifo}: is a FIFO (named pipe), not a regular file"
    )
    assert_config_error(run_cli(["validate", "--config", "/dev/zero"]), "/dev/zero: is a device or socket")
    query_fifo = tmp_path / "q.sql"
    os.mkfifo(query_fifo)
    secret_fifo = tmp_path / "secret"
    os.mkfifo(secret_fifo)
    config = with_(
        "sequences[1]", {"name": "second", "query_file": "q.sql", "target": {"type": "parquet", "path": "/o"}}
    )
    data = yaml.safe_load(config)
    data["sources"]["users"]["options"] = {"password": f"${{file:{secret_fifo}}}"}
    data["sequences"][0]["target"]["path"] = "${file:/dev/zero}"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli(["validate", "--config", str(path)])
    assert_config_error(proc, f"sequences[1].query_file: {query_fifo} is a FIFO (named pipe), not a regular file")
    assert f"sources.users.options.password: cannot read the secret file {secret_fifo}" in proc.stderr
    assert "sequences[0].target.path: cannot read the secret file /dev/zero" in proc.stderr
    assert f"{path}:" in proc.stderr


def test_a_var_the_config_does_not_know_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(dump(VALID))
    proc = run_cli(["validate", "--config", str(path), "--var", "dya=2024-01-01", "--var", "nosuch=x"])
    assert_config_error(proc, f"{path}: --var dya: the config neither declares 'dya'")
    assert "did you mean 'day'?" in proc.stderr
    assert f"{path}: --var nosuch:" in proc.stderr


def test_doubling_vars_and_aliases_are_bounded_by_their_expanded_size(tmp_path: Path) -> None:
    data = json.loads(json.dumps(VALID))
    data["vars"] = {f"v{i}": f"${{v{i + 1}}}${{v{i + 1}}}" for i in range(60)} | {"v60": "x"}
    data["sequences"][0]["query"] = "SELECT '${v0}' FROM events"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    assert_config_error(run_cli(["validate", "--config", str(path)]), "the config expands to more than 10,485,760")
    # A YAML alias of a long string, repeated: few elements, a large expansion.
    text = "big: &big '" + "x" * 100_000 + "'\n" + dump(VALID).decode()
    text += "description: [" + ", ".join(["*big"] * 200) + "]\n"
    path = tmp_path / "alias.yaml"
    path.write_text(text)
    assert_config_error(run_cli(["validate", "--config", str(path)]), "the config expands to more than 10,485,760")


def test_a_deep_config_given_as_data_is_a_config_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(3000):
        node["a"] = {}
        node = node["a"]
    data = json.loads(json.dumps(VALID))
    data["sequences"][0]["target"]["options"] = deep
    try:
        load_config(data)
    except ConfigError as exc:
        assert "sequences[0].target.options.a.a" in str(exc) and "nested too deeply" in str(exc)
    else:
        raise AssertionError("a 3,000-deep config was accepted")


def test_a_long_dependency_chain_in_reverse_order_is_valid(tmp_path: Path) -> None:
    n = 5000
    data = json.loads(json.dumps(VALID))
    data["sequences"] = [
        {
            "name": f"s{i}",
            "query": f"SELECT * FROM {'events' if i == 0 else f's{i - 1}'}",
            "target": {"type": "parquet", "path": f"/out/s{i}"},
        }
        for i in reversed(range(n))
    ]
    config = load_config(data)
    assert [s.name for s in config.sequences] == [f"s{i}" for i in range(n)]
    path = tmp_path / "chain.yaml"
    path.write_bytes(dump(data))
    proc = run_cli(["validate", "--config", str(path)])
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- fuzzing values passed in and rule conditions ---------------------------------------------------

# Pieces of SQL and of numbers: quotes, escapes, comment marks, keywords, digits of other scripts.
_SQL_WORDS = ("--", "/*", "*/", "''", "OR", "UNION", "SELECT", "current_user()", "count(*)", "r'", "n", " > ", " AND ")
_SQL_WORDS += ("rand()", "current_timestamp()", "uuid()", "reflect(")  # not deterministic: evaluated once per row
_NUMBERS = ("²", "\u0661", "0", "9" * 30)
SQL_PIECES = st.sampled_from([*"'\"`\\-/*\n\r ();,.%x1", *_SQL_WORDS, *_NUMBERS, "\u2019", "${day}", "$${", "IS NULL"])
sql_texts = st.lists(SQL_PIECES, max_size=10).map("".join)
# Where a var lands in the config: SQL in every context, integer keys, a rule's tolerance.
LANDING = {
    "quoted": ("query", "SELECT '${day}' AS d, count(*) AS n FROM first"),
    "bare": ("query", "SELECT count(*) AS n FROM first WHERE n > ${day}"),
    "backquoted": ("query", "SELECT `${day}` FROM first"),
    "comment": ("query", "SELECT count(*) AS n -- ${day}\nFROM first"),
    "name part": ("query", "SELECT count(*) AS n_${day} FROM first"),
    "condition": ("condition", "n <> '${day}' AND n > ${day}"),
    "schema": ("schema", "id BIGINT, ${day} STRING"),
    "jdbc query": ("jdbc", "SELECT * FROM t WHERE d = '${day}'"),
    "coalesce": ("coalesce", "${day}"),
    "max_failed": ("max_failed", "${day}"),
    "min_rows": ("min_rows", "${day}"),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    landing=st.sampled_from(sorted(LANDING)),
    value=st.one_of(sql_texts, st.text(max_size=12), st.sampled_from(["²", "¹", "\u0661\u0662", "-1", "0", "12"])),
    condition=st.one_of(sql_texts, st.sampled_from(["n > 0", "n IS NOT NULL", "count(*) > 1", "n > (SELECT 1)"])),
    on_fail=st.sampled_from(["warn", "drop", "fail", "quarantine", "stop"]),
)
def test_fuzzed_var_values_and_rule_conditions_raise_only_config_errors(
    landing: str, value: str, condition: str, on_fail: str
) -> None:
    """A value passed in lands somewhere (SQL of any kind, an integer key, a tolerance) next to a generated
    rule condition: loading ends in a config or in a ``ConfigError``, never in another exception."""
    data = json.loads(json.dumps(VALID))
    kind, text = LANDING[landing]
    second = data["sequences"][1]
    rule: dict[str, Any] = {"name": "generated", "condition": condition, "on_fail": on_fail}
    second["expectations"] = [rule]
    if on_fail == "quarantine":
        second["quarantine"] = {"type": "parquet", "path": "/out/rejected"}
    if kind == "query":
        second["query"] = text
    elif kind == "condition":
        second["expectations"].append({"name": "landing", "condition": text})
    elif kind == "schema":
        data["sources"]["users"]["schema"] = text
    elif kind == "jdbc":
        data["sources"]["users"] = {"type": "jdbc", "url": "jdbc:postgresql://h/db", "query": text}
    elif kind == "max_failed":
        second["expectations"].append({"name": "landing", "condition": "n > 0", "on_fail": "fail", "max_failed": text})
    elif kind == "coalesce":
        second["target"]["coalesce"] = text
    else:
        second[kind] = text
    try:
        load_config(data, {"day": value}, environ={"HOME": "/root"}, vars_from="--var")
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


def test_max_parallel_takes_the_digits_0_to_9_only(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(dump(VALID))
    for value in ("²", "\u0661\u0662", "1_0"):
        proc = run_cli(["run", "--config", str(path), "--max-parallel", value])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"argument --max-parallel: {value!r} is not a whole number (digits 0-9)" in proc.stderr
