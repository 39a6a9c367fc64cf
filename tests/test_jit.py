"""The driver JVM's JIT thresholds (``spark_job.engine.jit``): given to the JVM a run starts, left alone when
the user chose the compiler's settings or turned them off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spark_job.engine import class_data, jit
from spark_job.engine.jit import OPTIONS, SWITCH_ENV, driver_options

from .support import REPO

DEFAULTS = {
    "Tier4InvocationThreshold": "5000",
    "Tier4MinInvocationThreshold": "600",
    "Tier4CompileThreshold": "15000",
    "Tier4BackEdgeThreshold": "40000",
}
TUNED = {
    "Tier4InvocationThreshold": "150000",
    "Tier4MinInvocationThreshold": "18000",
    "Tier4CompileThreshold": "450000",
    "Tier4BackEdgeThreshold": "1200000",
}


def test_a_jvm_whose_options_choose_no_compiler_gets_the_thresholds() -> None:
    assert driver_options({}) == list(OPTIONS)
    assert driver_options({SWITCH_ENV: "on"}, "-Xmx2g -XX:+UseG1GC -Dlabel=Tier4 -XX:+PrintFlagsFinal") == list(OPTIONS)
    others = {"SPARK_SUBMIT_OPTS": "-Xss4m", "JAVA_TOOL_OPTIONS": "-Dfile.encoding=UTF-8"}
    assert driver_options(others) == list(OPTIONS)
    assert [o.split("=")[0].removeprefix("-XX:") for o in OPTIONS] == list(TUNED)
    assert [o.split("=")[1] for o in OPTIONS] == list(TUNED.values())


@pytest.mark.parametrize(
    "chosen",
    [
        "-XX:TieredStopAtLevel=1",
        "-XX:-TieredCompilation",
        "-XX:+TieredCompilation",
        "-XX:Tier4InvocationThreshold=7000",
        "-XX:Tier3CompileThreshold=100",
        "-XX:CompileThreshold=1000",
        "-XX:CompileThresholdScaling=0.5",
        "-Xint",
        "-Xcomp",
    ],
)
def test_the_users_choice_of_compiler_settings_wins(chosen: str) -> None:
    assert driver_options({}, f"-Xmx1g {chosen} -XX:+UseG1GC") == []
    for variable in ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"):
        assert driver_options({variable: f"-Xss4m {chosen}"}) == [], variable


@pytest.mark.parametrize("value", ["off", "0", "false", "no", " OFF "])
def test_the_switch_turns_them_off(value: str) -> None:
    assert driver_options({SWITCH_ENV: value}) == []


def user_env() -> dict[str, str]:
    """This environment without the test harness's own JVM options (compiler, archive, logging): the JVM
    as a user's ``sparkpipe run`` starts it; no class-data archive, so that no maker starts."""
    env = dict(os.environ)
    kept = env.get("SPARK_SUBMIT_OPTS", "").split()
    env["SPARK_SUBMIT_OPTS"] = " ".join(
        o for o in kept if not (jit.chooses_compiler(o) or class_data.names_an_archive(o) or o.startswith("-Xlog:"))
    )
    env[class_data.SWITCH_ENV] = "off"
    env.pop(SWITCH_ENV, None)
    return env


def jvm_thresholds(tmp_path: Path, *args: str) -> dict[str, str]:
    """C2's thresholds of the driver JVM a ``sparkpipe run`` started, as the JVM reports them."""
    config = {
        "app_name": "jit_thresholds",
        # The JVM prints its final flags on its stdout, which is the driver's.
        "spark_conf": {"spark.driver.extraJavaOptions": "-XX:+PrintFlagsFinal", "spark.ui.enabled": "false"},
        "sequences": [
            {"name": "one", "query": "SELECT 1 AS x", "target": {"type": "json", "path": str(tmp_path / "out")}}
        ],
    }
    tmp_path.mkdir()
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]", *args],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    flags = dict(re.findall(r"^\s*\w+\s+(Tier4\w+)\s+=\s+(\d+)", done.stdout, re.MULTILINE))
    return {name: flags.get(name, "?") for name in DEFAULTS}


def test_a_run_starts_its_driver_jvm_with_them_and_the_flag_leaves_the_defaults(tmp_path: Path) -> None:
    assert jvm_thresholds(tmp_path / "tuned") == TUNED
    assert jvm_thresholds(tmp_path / "plain", "--no-jit-tuning") == DEFAULTS
