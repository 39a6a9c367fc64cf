"""Benchmark sparkpipe against the same pipeline handwritten in PySpark (issue 2).

Runs ``benchmarks/handwritten.py`` and ``python -m spark_job run --config benchmarks/pipeline.yaml``
alternately, each as its own process, on the same generated data, with the same master
(``local[2]``), each into a fresh output directory, and times every whole process (wall clock:
JVM start, Python imports, config handling, the Spark work, shutdown). Then it reads all outputs
back and checks that every run wrote the same thing (schema, row count, an order-independent hash of
the non-floating columns, sums of the floating ones), checks the driver's ``rows_written`` metrics
against the rows actually written, and, unless ``--no-diagnose``, runs one more untimed pair with
Spark event logs on to count the Spark jobs/stages/tasks and bytes each side read.

    python benchmarks/compare.py                      # 20M events / 1M users, 5 pairs
    python benchmarks/compare.py --events 200000 --users 10000 --pairs 1   # smoke run

Prints each pair's times and ends with ``median ratio sparkpipe/handwritten: X.XXX``. Exit status:
0 when all outputs agree, 1 when they differ, 2 when a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIDES = ("handwritten", "sparkpipe")
REL_TOL = 1e-9


@dataclass
class Run:
    """One timed (or diagnostic) process run."""

    label: str
    side: str
    out_dir: Path
    log: Path
    seconds: float = 0.0  # until every process of the run (Python and its JVM) has exited
    process_seconds: float = 0.0  # until the Python process exited
    returncode: int = 0
    own_cpu_s: float = 0.0
    other_cpu_share: float = 0.0
    waited_s: float = 0.0
    metrics: dict[str, Any] | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    eventlog: dict[str, Any] | None = None


# --------------------------------------------------------------------------- config


def load_pipeline(config: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(config.read_text())
    if not isinstance(data, dict):
        raise SystemExit(f"{config}: not a mapping")
    return data


def check_in_step(pipeline: dict[str, Any], program: Path) -> list[str]:
    """Differences between the config and its handwritten twin (spark_conf and SQL)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_twin_{program.stem}", program)
    assert spec is not None and spec.loader is not None
    handwritten = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handwritten)

    problems = []
    conf = {str(k): str(v) for k, v in (pipeline.get("spark_conf") or {}).items()}
    if conf != handwritten.SPARK_CONF:
        problems.append(f"spark_conf differs: yaml {conf} vs handwritten {handwritten.SPARK_CONF}")
    names = [s["name"] for s in pipeline["sequences"]]
    if names != list(handwritten.SQL):
        problems.append(f"sequences differ: yaml {names} vs handwritten {list(handwritten.SQL)}")
    for seq in pipeline["sequences"]:
        hand = handwritten.SQL.get(seq["name"], "")
        if " ".join(seq["query"].split()) != " ".join(hand.split()):
            problems.append(f"SQL of {seq['name']} differs between pipeline.yaml and handwritten.py")
    return problems


def outputs_of(pipeline: dict[str, Any], out_dir: Path) -> dict[str, tuple[str, Path]]:
    """sequence name -> (format, path) of its target under ``out_dir``."""
    result = {}
    for seq in pipeline["sequences"]:
        target = seq["target"]
        fmt = target.get("format", target["type"])
        path = str(target["path"]).replace("${out_dir}", str(out_dir))
        result[seq["name"]] = (fmt, Path(path))
    return result


# --------------------------------------------------------------------------- machine load
# The machine may be shared (test suites, other jobs). Each run is started on a quiet machine where
# possible, and the CPU time used by processes outside the run is measured during it (Linux /proc).

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot; (0, 0) without /proc."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def session_ticks(sid: int, live_only: bool = False) -> dict[int, int]:
    """pid -> user+system CPU ticks of every process of session ``sid`` and of their children that
    started sessions of their own (``sparkpipe run`` puts its JVM in one); ``live_only``: not zombies."""
    procs: dict[int, tuple[int, int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            rest = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(entry)] = (int(rest[1]), int(rest[3]), rest[0], int(rest[11]) + int(rest[12]))
    members = {pid for pid, (_, psid, _, _) in procs.items() if psid == sid}
    grew = True
    while grew:
        added = {pid for pid, (ppid, _, _, _) in procs.items() if ppid in members and pid not in members}
        members |= added
        grew = bool(added)
    return {pid: procs[pid][3] for pid in members if not (live_only and procs[pid][2] in ("Z", "X"))}


class CpuWatch:
    """Samples the CPU use of a process session (the run and the JVM it starts) while it runs."""

    def __init__(self, sid: int, interval: float = 0.25) -> None:
        self.sid, self.interval = sid, interval
        self.last: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.busy0, self.total0 = machine_ticks()
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.last.update(session_ticks(self.sid))
            self.stop.wait(self.interval)

    def finish(self, wall: float) -> tuple[float, float]:
        """Stop; return (CPU seconds of the session, share of all CPUs used by other processes)."""
        self.stop.set()
        self.thread.join()
        busy1, _ = machine_ticks()
        own = sum(self.last.values()) / TICK
        other = max(0.0, (busy1 - self.busy0) / TICK - own)
        return own, other / (wall * (os.cpu_count() or 1))


def wait_quiet(max_wait: float, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait`` s) for a 1 s window where the machine is < ``threshold`` busy."""
    t0 = time.perf_counter()
    while True:
        busy0, total0 = machine_ticks()
        time.sleep(1.0)
        busy1, total1 = machine_ticks()
        if total1 == total0 or (busy1 - busy0) / (total1 - total0) < threshold:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


# --------------------------------------------------------------------------- running


def driver_usage(python: str) -> str:
    """``run --help`` text of the driver; exits with a message when the driver is not runnable."""
    proc = subprocess.run(
        [python, "-m", "spark_job", "run", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"the driver is not runnable yet (python -m spark_job run --help):\n{proc.stderr[-2000:]}")
    return proc.stdout


def command(side: str, args: argparse.Namespace, data_dir: Path, run: Run, usage: str) -> list[str]:
    if side == "handwritten":
        return [
            args.python, str(args.handwritten),
            "--data-dir", str(data_dir), "--out-dir", str(run.out_dir), "--master", args.master,
        ]  # fmt: skip
    cmd = [
        args.python, "-m", "spark_job", "run", "--config", str(args.config),
        "--var", f"data_dir={data_dir}", "--var", f"out_dir={run.out_dir}",
    ]  # fmt: skip
    if "--master" in usage:
        cmd += ["--master", args.master]
    if "--metrics-out" in usage:
        cmd += ["--metrics-out", str(run.out_dir.parent / f"{run.out_dir.name}.metrics.json")]
    if args.max_parallel is not None:
        cmd += ["--max-parallel", str(args.max_parallel)]
    return cmd


def environment(side: str, args: argparse.Namespace, usage: str, eventlog_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR")}
    submit: list[str] = []
    if side == "sparkpipe" and "--master" not in usage:
        submit += ["--master", args.master]  # the driver has no --master flag: spark-submit's own
    if eventlog_dir is not None:
        submit += [
            "--conf", "spark.eventLog.enabled=true",
            "--conf", f"spark.eventLog.dir=file://{eventlog_dir}",
            "--conf", "spark.eventLog.compress=false",
            "--conf", "spark.eventLog.rolling.enabled=false",
        ]  # fmt: skip
    if submit:
        env["PYSPARK_SUBMIT_ARGS"] = " ".join([*submit, "pyspark-shell"])
    return env


def execute(run: Run, cmd: list[str], env: dict[str, str]) -> None:
    shutil.rmtree(run.out_dir, ignore_errors=True)
    run.out_dir.parent.mkdir(parents=True, exist_ok=True)
    with run.log.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        watch = CpuWatch(proc.pid)
        run.returncode = proc.wait()
        run.process_seconds = time.perf_counter() - t0
        # PySpark's JVM is not waited for by Python: it exits on its own when Python's pipe closes,
        # stopping the SparkContext in its shutdown hooks if the program did not. Time until every
        # process of the run is gone, so a run cannot push its shutdown into the next one.
        deadline = time.perf_counter() + 120
        while session_ticks(proc.pid, live_only=True) and time.perf_counter() < deadline:
            time.sleep(0.02)
        run.seconds = time.perf_counter() - t0
    run.own_cpu_s, run.other_cpu_share = watch.finish(run.seconds)
    metrics_path = run.out_dir.parent / f"{run.out_dir.name}.metrics.json"
    if metrics_path.is_file():
        run.metrics = json.loads(metrics_path.read_text())


def fail_run(run: Run) -> None:
    tail = run.log.read_text().splitlines()[-40:]
    print(f"\n{run.label} {run.side} FAILED (exit {run.returncode}); last lines of {run.log}:", file=sys.stderr)
    print("\n".join(tail), file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------- checking


def summarize_outputs(runs: list[Run], pipeline: dict[str, Any], master: str) -> None:
    """Fill ``run.outputs``: schema, rows, hash of non-floating columns, sums of floating ones."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName("sparkpipe-bench-verify")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        for run in runs:
            for name, (fmt, path) in outputs_of(pipeline, run.out_dir).items():
                df = spark.read.format(fmt).load(str(path))
                floats = [c for c, t in df.dtypes if t in ("double", "float")]
                others = [c for c, t in df.dtypes if t not in ("double", "float")]
                exprs = ["count(*) AS rows"]
                if others:
                    cols = ", ".join(f"`{c}`" for c in others)
                    exprs.append(f"coalesce(sum(pmod(xxhash64({cols}), 1000000007)), 0) AS hash")
                exprs += [f"sum(`{c}`) AS `sum_{c}`" for c in floats]
                row = df.selectExpr(*exprs).first()
                assert row is not None
                summary = row.asDict()
                summary["schema"] = sorted(df.dtypes)
                run.outputs[name] = summary
    finally:
        spark.stop()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1.0)
    return bool(a == b)


def output_differences(runs: list[Run]) -> list[str]:
    reference = runs[0]
    problems = []
    for run in runs[1:]:
        for name, ref in reference.outputs.items():
            got = run.outputs.get(name, {})
            for key, expected in ref.items():
                if not same(expected, got.get(key)):
                    problems.append(
                        f"{run.label} {run.side}: {name}.{key} = {got.get(key)!r}, "
                        f"{reference.label} {reference.side} has {expected!r}"
                    )
    return problems


def metrics_differences(runs: list[Run]) -> list[str]:
    """rows_written of the driver's metrics vs the rows read back."""
    problems = []
    for run in runs:
        if run.side != "sparkpipe":
            continue
        if run.metrics is None:
            problems.append(f"{run.label} sparkpipe: no metrics document")
            continue
        if run.metrics.get("status") != "succeeded":
            problems.append(f"{run.label} sparkpipe: metrics status {run.metrics.get('status')!r}")
        sequences = run.metrics.get("sequences") or {}
        for name, summary in run.outputs.items():
            written = (sequences.get(name) or {}).get("rows_written")
            if written != summary["rows"]:
                problems.append(f"{run.label} sparkpipe: {name} rows_written={written!r}, read back {summary['rows']}")
    return problems


def read_eventlog(directory: Path) -> dict[str, Any]:
    """Jobs, stages, tasks, input bytes/records and SQL executions from one Spark event log."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(("appstatus", ".")))
    if len(files) != 1:
        return {"error": f"expected one event log file under {directory}, found {len(files)}"}
    jobs = stages = tasks = input_bytes = input_records = shuffle_bytes = task_ms = 0
    executions: list[str] = []
    times: dict[str, int] = {}
    with files[0].open() as fh:
        for line in fh:
            event = json.loads(line)
            kind = event.get("Event", "")
            if kind == "SparkListenerApplicationStart":
                times["app_start"] = event["Timestamp"]
            elif kind == "SparkListenerApplicationEnd":
                times["app_end"] = event["Timestamp"]
            elif kind == "SparkListenerJobEnd":
                times["last_job_end"] = max(times.get("last_job_end", 0), event.get("Completion Time", 0))
            if kind == "SparkListenerJobStart":
                jobs += 1
                times.setdefault("first_job", event.get("Submission Time", 0))
            elif kind == "SparkListenerStageCompleted":
                stages += 1
            elif kind == "SparkListenerTaskEnd":
                tasks += 1
                metrics = event.get("Task Metrics") or {}
                input_bytes += (metrics.get("Input Metrics") or {}).get("Bytes Read", 0)
                input_records += (metrics.get("Input Metrics") or {}).get("Records Read", 0)
                shuffle_bytes += (metrics.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
                task_ms += metrics.get("Executor Run Time", 0)
            elif kind.endswith("SQLExecutionStart"):
                executions.append(str(event.get("description", ""))[:120])
    return {
        "jobs": jobs,
        "stages": stages,
        "tasks": tasks,
        "input_bytes": input_bytes,
        "input_records": input_records,
        "shuffle_bytes_written": shuffle_bytes,
        "task_run_s": round(task_ms / 1000, 1),
        "sql_executions": len(executions),
        "app_start_to_first_job_s": span(times, "app_start", "first_job"),
        "first_job_to_last_job_end_s": span(times, "first_job", "last_job_end"),
        "last_job_end_to_app_end_s": span(times, "last_job_end", "app_end"),
        "sql_execution_descriptions": executions,
    }


def span(times: dict[str, int], start: str, end: str) -> float | None:
    """Seconds between two event-log timestamps (ms), if both were seen."""
    if start in times and end in times:
        return round((times[end] - times[start]) / 1000, 2)
    return None


# --------------------------------------------------------------------------- main


def ensure_data(args: argparse.Namespace, data_dir: Path) -> None:
    cmd = [
        args.python, str(HERE / "generate_data.py"),
        "--out", str(data_dir), "--events", str(args.events), "--users", str(args.users), "--master", args.master,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"data generation failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    print(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs (default 5, at least 3 for figures)")
    parser.add_argument("--events", type=int, default=20_000_000, help="rows of events (default 20M)")
    parser.add_argument("--users", type=int, default=1_000_000, help="rows of users (default 1M)")
    parser.add_argument("--master", default="local[2]", help="Spark master of both sides (default local[2])")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/sparkpipe-bench"), help="data, outputs, logs")
    parser.add_argument("--config", type=Path, default=HERE / "pipeline.yaml", help="the sparkpipe config")
    parser.add_argument(
        "--handwritten", type=Path, default=HERE / "handwritten.py", help="the config's handwritten twin"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for both sides")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first (page cache; default 1)")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the event-log pair")
    parser.add_argument("--keep", action="store_true", help="keep the outputs of the runs")
    parser.add_argument(
        "--max-wait", type=float, default=300.0, help="seconds to wait for a quiet machine before each run"
    )
    parser.add_argument("--quiet", type=float, default=0.1, help="busy share of all CPUs counted as quiet")
    parser.add_argument(
        "--noisy", type=float, default=0.05, help="share of all CPUs used by other processes that spoils a run"
    )
    parser.add_argument("--retries", type=int, default=3, help="times a spoilt pair is run again (default 3)")
    parser.add_argument(
        "--max-parallel", type=int, default=None, help="sparkpipe's --max-parallel (default: the driver's default)"
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be >= 1")
    args.config = args.config.resolve()
    work: Path = args.work_dir.resolve()
    data_dir = work / f"data-e{args.events}-u{args.users}"
    runs_dir = work / "runs"

    pipeline = load_pipeline(args.config)
    in_step = check_in_step(pipeline, args.handwritten)
    if in_step:
        print("pipeline.yaml and handwritten.py are out of step:\n  " + "\n  ".join(in_step), file=sys.stderr)
        return 1
    usage = driver_usage(args.python)
    ensure_data(args, data_dir)
    shutil.rmtree(runs_dir, ignore_errors=True)

    def new_run(label: str, side: str) -> Run:
        return Run(label, side, runs_dir / f"{label}-{side}", runs_dir / f"{label}-{side}.log")

    def do(run: Run, eventlog_dir: Path | None = None) -> Run:
        run.waited_s = wait_quiet(args.max_wait, args.quiet)
        execute(run, command(run.side, args, data_dir, run, usage), environment(run.side, args, usage, eventlog_dir))
        if run.returncode != 0:
            fail_run(run)
        return run

    print(f"machine: {os.cpu_count()} cpus; master {args.master}; data {data_dir}")
    for w in range(args.warmup):
        for side in SIDES:
            run = do(new_run(f"warmup{w}", side))
            print(f"warmup {w}: {side:<11} {run.seconds:7.2f}s (untimed)")
            if not args.keep:
                shutil.rmtree(run.out_dir, ignore_errors=True)

    timed: list[tuple[Run, Run]] = []
    print(f"{'pair':>4}  {'handwritten':>11}  {'sparkpipe':>9}  {'ratio':>6}  other load (h/s)  cpu-s (h/s)")
    for i in range(args.pairs):
        for attempt in range(args.retries + 1):
            label = f"pair{i}" if attempt == 0 else f"pair{i}.retry{attempt}"
            hand = do(new_run(label, "handwritten"))
            pipe = do(new_run(label, "sparkpipe"))
            noisy = max(hand.other_cpu_share, pipe.other_cpu_share) > args.noisy
            print(
                f"{i:>4}  {hand.seconds:10.2f}s  {pipe.seconds:8.2f}s  {pipe.seconds / hand.seconds:6.3f}"
                f"  {hand.other_cpu_share:7.1%} /{pipe.other_cpu_share:6.1%}"
                f"  {hand.own_cpu_s:5.1f} /{pipe.own_cpu_s:5.1f}"
                + ("  (other load: repeated)" if noisy and attempt < args.retries else ""),
                flush=True,
            )
            if not noisy or attempt == args.retries:
                break
            if not args.keep:
                shutil.rmtree(hand.out_dir, ignore_errors=True)
                shutil.rmtree(pipe.out_dir, ignore_errors=True)
        timed.append((hand, pipe))

    diagnostic: list[Run] = []
    if not args.no_diagnose:
        for side in SIDES:
            run = new_run("diagnose", side)
            eventlog_dir = runs_dir / f"diagnose-{side}.eventlog"
            eventlog_dir.mkdir(parents=True, exist_ok=True)
            do(run, eventlog_dir)
            run.eventlog = read_eventlog(eventlog_dir)
            diagnostic.append(run)

    all_runs = [r for pair in timed for r in pair] + diagnostic
    summarize_outputs(all_runs, pipeline, args.master)
    differences = output_differences(all_runs)
    metric_problems = metrics_differences(all_runs)

    print("\noutputs (first handwritten run):")
    for name, summary in all_runs[0].outputs.items():
        print(f"  {name:<22} rows={summary['rows']}")
    if diagnostic:
        print("\nevent logs of the diagnostic pair (untimed, event logging on):")
        keys = [
            "jobs", "stages", "tasks", "input_bytes", "input_records", "shuffle_bytes_written", "task_run_s",
            "sql_executions", "app_start_to_first_job_s", "first_job_to_last_job_end_s", "last_job_end_to_app_end_s",
        ]  # fmt: skip
        print(f"  {'':<28}" + "".join(f"{k:>14}" for k in SIDES))
        for key in keys:
            values = [(r.eventlog or {}).get(key, "?") for r in diagnostic]
            print(f"  {key:<28}" + "".join(f"{v!s:>14}" for v in values))
        for run in diagnostic:
            print(f"  {run.side} SQL executions:")
            for desc in (run.eventlog or {}).get("sql_execution_descriptions", []):
                print(f"    - {desc}")
    for run in all_runs:
        if run.side == "sparkpipe" and run.metrics and run is timed[0][1]:
            seqs = run.metrics.get("sequences") or {}
            print("\ndriver metrics of pair 0: duration_s " + str(run.metrics.get("duration_s")))
            for name, s in seqs.items():
                print(f"  {name:<22} rows_written={s.get('rows_written')} duration_s={s.get('duration_s')}")
    spoilt = [
        f"{r.label} {r.side} ({r.other_cpu_share:.1%})" for p in timed for r in p if r.other_cpu_share > args.noisy
    ]
    if spoilt:
        print(f"\nWARNING: other processes used > {args.noisy:.0%} of the CPUs during: " + ", ".join(spoilt))
    if metric_problems:
        print("\nWARNING: driver metrics disagree with the outputs:\n  " + "\n  ".join(metric_problems))

    ratios = [pipe.seconds / hand.seconds for hand, pipe in timed]
    result = {
        "events": args.events,
        "users": args.users,
        "master": args.master,
        "cpus": os.cpu_count(),
        "pairs": [
            {
                "handwritten_s": round(h.seconds, 3),
                "sparkpipe_s": round(p.seconds, 3),
                "ratio": round(p.seconds / h.seconds, 4),
                "python_exit_s": [round(h.process_seconds, 3), round(p.process_seconds, 3)],
                "cpu_s": [round(h.own_cpu_s, 2), round(p.own_cpu_s, 2)],
                "other_cpu_share": [round(h.other_cpu_share, 4), round(p.other_cpu_share, 4)],
                "waited_for_quiet_s": [round(h.waited_s, 1), round(p.waited_s, 1)],
                "labels": [h.label, p.label],
            }
            for h, p in timed
        ],
        "median_handwritten_s": round(statistics.median(h.seconds for h, _ in timed), 3),
        "median_sparkpipe_s": round(statistics.median(p.seconds for _, p in timed), 3),
        "median_ratio": round(statistics.median(ratios), 4),
        "median_cpu_ratio": round(statistics.median(p.own_cpu_s / h.own_cpu_s for h, p in timed if h.own_cpu_s), 4)
        if any(h.own_cpu_s for h, _ in timed)
        else None,
        "outputs": {k: v["rows"] for k, v in all_runs[0].outputs.items()},
        "output_differences": differences,
        "metrics_problems": metric_problems,
        "diagnostic": [asdict(r) | {"out_dir": str(r.out_dir), "log": str(r.log)} for r in diagnostic],
    }
    (work / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nmedian handwritten {result['median_handwritten_s']:.2f}s, sparkpipe {result['median_sparkpipe_s']:.2f}s")
    print(f"median CPU-time ratio sparkpipe/handwritten: {result['median_cpu_ratio']}")
    print(f"results: {work / 'results.json'}")
    if not args.keep:
        for run in all_runs:
            shutil.rmtree(run.out_dir, ignore_errors=True)
    if differences:
        print("\nOUTPUTS DIFFER:\n  " + "\n  ".join(differences), file=sys.stderr)
    print(f"median ratio sparkpipe/handwritten: {statistics.median(ratios):.3f}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
