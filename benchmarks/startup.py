"""Start-up: ``sparkpipe run`` of the example pipeline, as users get it (the driver JVM's class-data archive
on), against the same pipeline handwritten in PySpark (``benchmarks/handwritten_example.py``).

The example pipeline reads 30 KB of CSV: its wall time is mostly starting Python, the JVM and the Spark
session, which is what the archive shortens. Both sides run alternately as fresh processes on the same
data and master, each into a fresh output folder, each after waiting for a quiet machine, timed until
every process of the run has exited (``benchmarks/compare.py``'s harness); then every output is read
back and compared, and the driver's ``rows_written`` checked against it.

First (untimed) the archive is made as a user's first run makes it: a ``sparkpipe run`` on an empty
cache, whose maker then runs in the background; its time is reported. ``--first-runs N`` also times N
pairs of a plain run (archive off) against a first run on an empty cache (what a first run costs).

    python benchmarks/startup.py                 # 5 timed pairs
    python benchmarks/startup.py --pairs 7 --first-runs 3

Prints each pair and ends with ``median ratio sparkpipe/handwritten: X.XXX (spread A-B)``; writes
``<work-dir>/results.json``. Exit status 0 when every output agrees, 1 when they differ, 2 when a run failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = REPO / "examples" / "pipeline.yaml"
DATA = REPO / "examples" / "data"


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


harness = load("sparkpipe_bench_compare", HERE / "compare.py")


def pipeline_of(config: Path) -> dict[str, Any]:
    """The config as data, ``query_file`` read in."""
    pipeline = harness.load_pipeline(config)
    for seq in pipeline["sequences"]:
        if "query_file" in seq:
            seq["query"] = (config.parent / seq["query_file"]).read_text()
    return pipeline


def check_in_step(pipeline: dict[str, Any], program: Path) -> list[str]:
    """Differences between the example config and its handwritten twin (spark_conf, SQL without comments)."""
    twin = load(f"_twin_{program.stem}", program)
    problems = []
    conf = {str(k): str(v) for k, v in (pipeline.get("spark_conf") or {}).items()}
    if conf != twin.SPARK_CONF:
        problems.append(f"spark_conf differs: config {conf} vs handwritten {twin.SPARK_CONF}")
    if [s["name"] for s in pipeline["sequences"]] != list(twin.SQL):
        problems.append(f"sequences differ: config {[s['name'] for s in pipeline['sequences']]} vs {list(twin.SQL)}")
    for seq in pipeline["sequences"]:
        ours = " ".join(line for line in seq["query"].splitlines() if not line.strip().startswith("--"))
        theirs = twin.SQL.get(seq["name"], "").replace("{run_date}", "${run_date}")
        if " ".join(ours.split()) != " ".join(theirs.split()):
            problems.append(f"SQL of {seq['name']} differs between the config and {program.name}")
    return problems


def environment(side: str, cache: Path, archive: bool = True) -> dict[str, str]:
    """Both sides: no spark-submit arguments or configuration folder of the caller's, and no JVM option
    choosing an archive (a test harness's); sparkpipe: the benchmark's own archive cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR")}
    opts = [
        o for o in env.get("SPARK_SUBMIT_OPTS", "").split() if not any(f in o for f in ("Xshare", "Archive", "-Xlog"))
    ]
    env["SPARK_SUBMIT_OPTS"] = " ".join(opts)
    env.pop("SPARKPIPE_CLASS_DATA", None)
    if side == "sparkpipe":
        env["SPARKPIPE_CLASS_DATA_DIR"] = str(cache)
        if not archive:
            env["SPARKPIPE_CLASS_DATA"] = "off"
    return env


def command(side: str, args: argparse.Namespace, run: Any) -> list[str]:
    if side == "handwritten":
        return [
            args.python, str(args.handwritten), "--data-dir", str(DATA), "--out-dir", str(run.out_dir),
            "--master", args.master,
        ]  # fmt: skip
    return [
        args.python, "-m", "spark_job", "run", "--config", str(CONFIG), "--master", args.master,
        "--var", f"data_dir={DATA}", "--var", f"out_dir={run.out_dir}",
        "--metrics-out", str(run.out_dir.parent / f"{run.out_dir.name}.metrics.json"),
    ]  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5, help="timed pairs (default 5)")
    parser.add_argument("--first-runs", type=int, default=0, help="also time N pairs plain / first run (default 0)")
    parser.add_argument("--master", default="local[2]", help="Spark master of both sides (default local[2])")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/sparkpipe-bench-startup"))
    parser.add_argument("--handwritten", type=Path, default=HERE / "handwritten_example.py")
    parser.add_argument("--python", default=sys.executable, help="interpreter of both sides")
    parser.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--quiet", type=float, default=0.1, help="busy share of all CPUs counted as quiet")
    parser.add_argument("--noisy", type=float, default=0.05, help="others' CPU share that spoils a run")
    parser.add_argument("--retries", type=int, default=3, help="times a spoilt pair is run again")
    args = parser.parse_args(argv)
    work: Path = args.work_dir.resolve()
    runs_dir, cache = work / "runs", work / "class-data"
    pipeline = pipeline_of(CONFIG)
    problems = check_in_step(pipeline, args.handwritten)
    if problems:
        print("the example and its handwritten twin are out of step:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    shutil.rmtree(runs_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    from spark_job.engine import class_data

    def do(label: str, side: str, archive: bool = True) -> Any:
        run = harness.Run(label, side, runs_dir / f"{label}-{side}", runs_dir / f"{label}-{side}.log")
        run.waited_s = harness.wait_quiet(args.max_wait, args.quiet)
        harness.execute(run, command(side, args, run), environment(side, cache, archive))
        if run.returncode != 0:
            harness.fail_run(run)
        return run

    def spark_home() -> str:
        spec = importlib.util.find_spec("pyspark")
        assert spec is not None and spec.submodule_search_locations
        return os.environ.get("SPARK_HOME") or next(iter(spec.submodule_search_locations))

    def make_archive(label: str) -> tuple[Any, float]:
        """A first run on an empty cache, then its maker until the archive is there: (run, maker's seconds)."""
        shutil.rmtree(cache, ignore_errors=True)
        first = do(label, "sparkpipe")
        t0 = time.perf_counter()
        made = class_data.wait_until_made(spark_home(), environment("sparkpipe", cache))
        if made is None:
            failed = sorted(cache.glob("*.failed"))
            raise SystemExit(f"no archive was made: {failed[0].read_text() if failed else 'no maker ran'}")
        return first, time.perf_counter() - t0

    print(f"machine: {os.cpu_count()} cpus; master {args.master}; example data {DATA}")
    first, maker_s = make_archive("warmup")
    (archive,) = cache.glob("*.jsa")
    print(
        f"first run (empty cache): {first.seconds:.2f}s; the archive was made {maker_s:.1f}s after it "
        f"({archive.stat().st_size / 2**20:.0f} MB)"
    )
    warm = do("warmup", "handwritten")
    print(f"handwritten warm-up: {warm.seconds:.2f}s (untimed)")

    timed: list[tuple[Any, Any]] = []
    print(f"{'pair':>4}  {'handwritten':>11}  {'sparkpipe':>9}  {'ratio':>6}  other load (h/s)  cpu-s (h/s)  startup_s")
    for i in range(args.pairs):
        for attempt in range(args.retries + 1):
            label = f"pair{i}" if attempt == 0 else f"pair{i}.retry{attempt}"
            hand, pipe = do(label, "handwritten"), do(label, "sparkpipe")
            noisy = max(hand.other_cpu_share, pipe.other_cpu_share) > args.noisy
            print(
                f"{i:>4}  {hand.seconds:10.2f}s  {pipe.seconds:8.2f}s  {pipe.seconds / hand.seconds:6.3f}"
                f"  {hand.other_cpu_share:7.1%} /{pipe.other_cpu_share:6.1%}"
                f"  {hand.own_cpu_s:5.1f} /{pipe.own_cpu_s:5.1f}  {(pipe.metrics or {}).get('startup_s')}"
                + ("  (other load: repeated)" if noisy and attempt < args.retries else ""),
                flush=True,
            )
            if not noisy or attempt == args.retries:
                break
        timed.append((hand, pipe))

    firsts: list[tuple[Any, Any, float]] = []
    if args.first_runs:
        print(f"\n{'pair':>4}  {'plain':>9}  {'first run':>9}  {'ratio':>6}  maker (s)  other load (p/f)")
    for i in range(args.first_runs):
        plain = do(f"first{i}-plain", "sparkpipe", archive=False)
        first_run, made_s = make_archive(f"first{i}")
        firsts.append((plain, first_run, made_s))
        print(
            f"{i:>4}  {plain.seconds:8.2f}s  {first_run.seconds:8.2f}s  {first_run.seconds / plain.seconds:6.3f}"
            f"  {made_s:9.1f}  {plain.other_cpu_share:7.1%} /{first_run.other_cpu_share:6.1%}",
            flush=True,
        )

    all_runs = [first, warm, *[r for pair in timed for r in pair], *[r for p in firsts for r in p[:2]]]
    harness.summarize_outputs(all_runs, pipeline, args.master)
    differences = harness.output_differences(all_runs)
    metric_problems = harness.metrics_differences(all_runs)
    ratios = [pipe.seconds / hand.seconds for hand, pipe in timed]
    cpu_ratios = [pipe.own_cpu_s / hand.own_cpu_s for hand, pipe in timed if hand.own_cpu_s]
    startups = [float((p.metrics or {}).get("startup_s") or 0) for _, p in timed]
    result: dict[str, Any] = {
        "master": args.master,
        "cpus": os.cpu_count(),
        "archive_mb": round(archive.stat().st_size / 2**20, 1),
        "first_run_s": round(first.seconds, 3),
        "archive_made_after_s": round(maker_s, 1),
        "pairs": [
            {
                "handwritten_s": round(h.seconds, 3),
                "sparkpipe_s": round(p.seconds, 3),
                "ratio": round(p.seconds / h.seconds, 4),
                "cpu_s": [round(h.own_cpu_s, 2), round(p.own_cpu_s, 2)],
                "other_cpu_share": [round(h.other_cpu_share, 4), round(p.other_cpu_share, 4)],
                "startup_s": (p.metrics or {}).get("startup_s"),
                "labels": [h.label, p.label],
            }
            for h, p in timed
        ],
        "median_handwritten_s": round(statistics.median(h.seconds for h, _ in timed), 3),
        "median_sparkpipe_s": round(statistics.median(p.seconds for _, p in timed), 3),
        "median_ratio": round(statistics.median(ratios), 4),
        "ratio_spread": spread(ratios),
        "median_cpu_ratio": round(statistics.median(cpu_ratios), 4) if cpu_ratios else None,
        "median_startup_s": round(statistics.median(startups), 3),
        "first_runs": [
            {
                "plain_s": round(p.seconds, 3),
                "first_run_s": round(f.seconds, 3),
                "ratio": round(f.seconds / p.seconds, 4),
                "archive_made_after_s": round(m, 1),
                "startup_s": [(p.metrics or {}).get("startup_s"), (f.metrics or {}).get("startup_s")],
            }
            for p, f, m in firsts
        ],
        "outputs": {k: v["rows"] for k, v in all_runs[0].outputs.items()},
        "output_differences": differences,
        "metrics_problems": metric_problems,
    }
    if firsts:
        plain_s = [p.seconds for p, _, _ in firsts]
        result["median_plain_s"] = round(statistics.median(plain_s), 3)
        result["median_first_run_ratio"] = round(statistics.median(f.seconds / p.seconds for p, f, _ in firsts), 4)
        result["median_archive_vs_plain"] = round(result["median_sparkpipe_s"] / result["median_plain_s"], 4)
    (work / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    spoilt = [
        f"{r.label} {r.side} ({r.other_cpu_share:.1%})" for p in timed for r in p if r.other_cpu_share > args.noisy
    ]
    if spoilt:
        print(f"\nWARNING: other processes used > {args.noisy:.0%} of the CPUs during: " + ", ".join(spoilt))
    if metric_problems:
        print("\nWARNING: driver metrics disagree with the outputs:\n  " + "\n  ".join(metric_problems))
    print(f"\noutputs: {result['outputs']}")
    print(f"median handwritten {result['median_handwritten_s']:.2f}s, sparkpipe {result['median_sparkpipe_s']:.2f}s")
    print(f"median CPU-time ratio sparkpipe/handwritten: {result['median_cpu_ratio']}")
    print(f"median startup_s (process start to first sequence): {result['median_startup_s']}")
    if firsts:
        print(
            f"first run on an empty cache / plain run: median {result['median_first_run_ratio']:.3f}; "
            f"archive / plain: {result['median_archive_vs_plain']:.3f}"
        )
    print(f"results: {work / 'results.json'}")
    for run in all_runs:
        shutil.rmtree(run.out_dir, ignore_errors=True)
    if differences:
        print("\nOUTPUTS DIFFER:\n  " + "\n  ".join(differences), file=sys.stderr)
    print(f"median ratio sparkpipe/handwritten: {result['median_ratio']:.3f} (spread {result['ratio_spread']})")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
