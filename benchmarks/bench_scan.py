"""End-to-end scan throughput and peak memory at 1M, 10M and 50M events, with a per-stage split and
the straightforward pandas pipeline (benchmarks/naive_pipeline.py) on the same logs.

Corpora come from the simulator with the same population (1M meters, 60 operators, seed 1) and differ
only in days, so time and memory against events is a scaling curve. One model is trained on the first
three days of the 1M corpus; every size is scanned with it (``ami-detector scan LOGS --model M --out
D``), each run in its own process under ``/usr/bin/time -v``: wall time and peak RSS are
those of the whole command. Results are kept as JSON in the work directory (new runs are added to
the runs already there: remove a size's ``scan_<size>`` entry from ``results.json`` to measure
changed code afresh); the table and the plot are made from them.

    python benchmarks/bench_scan.py --workdir /tmp/bench_scan                  # 1m and 10m, 3 runs each
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --sizes 50m --runs 3
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --sizes 50m --runs 1 --min-severity medium
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --naive 1m 10m   # the pandas pipeline
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --stages 1m 10m  # per-stage split
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --report --plot benchmarks/scan_scaling.png

Needs the ``bench`` extra (pandas, matplotlib): ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"1m": 4, "10m": 38, "50m": 190}  # days of the same population
POPULATION = {"meters": 1_000_000, "operators": 60, "seed": 1}


def corpus(workdir: Path, size: str) -> Path:
    """The simulated logs of *size*, generated once."""
    path = workdir / f"corpus_{size}"
    if not (path / "labels.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["ami-detector", "simulate", "--out", str(path), "--days", str(SIZES[size]),
                        "--meters", str(POPULATION["meters"]), "--operators", str(POPULATION["operators"]),
                        "--seed", str(POPULATION["seed"]), "--baseline-days", "3"], check=True)
    return path


def model(workdir: Path) -> Path:
    """A model trained on the first three days of the 1M corpus, trained once."""
    path = workdir / "model"
    if not (path / "model.json").exists():
        logs = corpus(workdir, "1m")
        until = json.loads((logs / "labels.json").read_text())["generator"]["baseline_until"].rstrip("Z")
        subprocess.run(["ami-detector", "train", str(logs), "--model-dir", str(path), "--baseline-until", until[:19]],
                       check=True)
    return path


def timed(command: list[str], log: Path) -> dict[str, float]:
    """Wall seconds, peak RSS (MiB) and events of *command* under /usr/bin/time -v."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode not in (0, 1):  # scan exits 1 when it has findings at the alert severity
        raise RuntimeError(f"{command[0]} failed ({result.returncode}); see {log}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert wall and rss, result.stderr[-2000:]
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    # scan's summary line says "N events scored ..."; the pandas pipeline prints JSON.
    counted = re.search(r"^([\d,]+) events scored", result.stdout, re.M) or re.search(r'"events": (\d+)', result.stdout)
    assert counted, result.stdout[-2000:]
    return {"seconds": seconds, "peak_rss_mib": int(rss.group(1)) / 1024, "events": int(counted.group(1).replace(",", ""))}


def load_results(workdir: Path) -> dict:
    path = workdir / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(workdir: Path, results: dict) -> None:
    (workdir / "results.json").write_text(json.dumps(results, indent=1))


def run_scans(workdir: Path, sizes: list[str], runs: int, naive: bool, min_severity: str = "low") -> None:
    results = load_results(workdir)
    trained = model(workdir)
    for size in sizes:
        logs = corpus(workdir, size)
        labels = json.loads((logs / "labels.json").read_text())
        key = f"{'naive' if naive else 'scan'}_{size}" + ("" if min_severity == "low" else f"_{min_severity}")
        entry = results.get(key, {"runs": []})
        for i in range(runs):
            out = workdir / "out"
            shutil.rmtree(out, ignore_errors=True)
            if naive:
                until = labels["generator"]["baseline_until"]
                command = [sys.executable, str(HERE / "naive_pipeline.py"), str(logs), "--baseline-until", until,
                           "--out", str(workdir / "naive_findings.csv")]
            else:
                command = ["ami-detector", "scan", str(logs), "--model", str(trained), "--out", str(out),
                           "--min-severity", min_severity]
            run = timed(command, workdir / f"{key}_{i}.log")
            run["load"] = os.getloadavg()[0]
            entry["runs"].append(run)
            entry["events"] = run["events"]
            print(f"{key} run {i + 1}/{runs}: {run['seconds']:.1f} s, {run['peak_rss_mib']:.0f} MiB "
                  f"(load {run['load']:.2f})", flush=True)
            results[key] = entry
            save_results(workdir, results)


def stages(workdir: Path, size: str) -> dict[str, float]:
    """The scan's work timed stage by stage, in this process (the calls ``scan`` makes, in order).

    Scoring a slice (``detection.score``) is timed whole; its parts are then timed again on the same
    slice and reported "of which" (that second pass is not counted in the total). Stages run one
    after the other here; ``scan`` builds the next slice's windows while it scores this one's, so
    its wall time is less than the sum.
    """
    import polars as pl

    from detector import api
    from detector.detection import findings_of, lean_windows, profiles_of
    from detector.features import feature_columns
    from detector.findings import rank
    from detector.model_store import load_model
    from detector.slices import remember
    from detector.spill import EventSpill, slice_length

    trained = load_model(model(workdir))
    config = api._config_of(trained)
    times: dict[str, float] = {}

    def add(stage: str, began: float) -> float:
        now = time.perf_counter()
        times[stage] = times.get(stage, 0.0) + now - began
        return now

    run = api.plan(corpus(workdir, size))
    spill = EventSpill.temporary(slice_length(config.features.window_length))
    try:
        began = time.perf_counter()
        for chunk in run.chunks():  # parse, by format (a chunk is timed with the file it comes from)
            began = add(f"parse {run.reports[-1].format}", began)
            spill.add(chunk.events)
            began = add("write spill", began)
        last_seen: dict[str, pl.DataFrame] = {}
        profiles = profiles_of(trained)
        parts = []
        for _, _, lazy in spill.slices():
            began = time.perf_counter()
            events = lazy.collect()
            began = add("read spill", began)
            windows = lean_windows(events, trained, config, profiles=profiles, earlier=last_seen)
            parts.append(findings_of(windows, events, trained, config, profiles=profiles))
            began = add("score slices", began)
            remember(last_seen, events)
            add("carry state", began)
            # The parts of scoring, again (not counted in the total).
            began = time.perf_counter()
            windows = lean_windows(events, trained, config, profiles=profiles, earlier=last_seen)
            began = add("  of which: account and device windows", began)
            for kind, frame in windows.items():
                trained.scorers[kind].combined(frame.select(feature_columns(kind)).to_numpy())
            add("  of which: forest and tail scores", began)
        found = api.Findings(rank(pl.concat(parts)), events=spill.scan(), model=trained)
        began = time.perf_counter()
        found.write(workdir / "out_stages")
        add("write findings, evidence, timelines, report", began)
    finally:
        spill.remove()
    of_which = sum(v for k, v in times.items() if k.startswith("  of which"))
    times["  of which: explaining findings (the rest)"] = times["score slices"] - of_which
    return {stage: round(seconds, 2) for stage, seconds in times.items()}


def report(workdir: Path, plot: Path | None) -> None:
    """The markdown tables of benchmarks/README.md, from results.json, and the scaling plot."""
    results = load_results(workdir)

    def median(key: str, field: str) -> float | None:
        runs = results.get(key, {}).get("runs")
        return statistics.median(r[field] for r in runs) if runs else None

    print("| size | events | runs | wall s (median) | events/s | peak RSS MiB (median) "
          "| straightforward pipeline: wall s | peak RSS MiB | its time / ours |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    points = []
    for size in SIZES:
        wall, rss = median(f"scan_{size}", "seconds"), median(f"scan_{size}", "peak_rss_mib")
        if wall is None or rss is None:
            continue
        events = results[f"scan_{size}"]["events"]
        naive_wall, naive_rss = median(f"naive_{size}", "seconds"), median(f"naive_{size}", "peak_rss_mib")
        naive = (f"{naive_wall:.1f} | {naive_rss:,.0f} | {naive_wall / wall:.2f}x" if naive_wall and naive_rss
                 else "not run | | ")
        print(f"| {size} | {events:,} | {len(results[f'scan_{size}']['runs'])} | {wall:.1f} | {events / wall:,.0f} | "
              f"{rss:,.0f} | {naive} |")
        points.append((events, wall, rss))
    print("\nPer run (wall s / peak RSS MiB / load average at its end):")
    for key, value in results.items():
        if "runs" in value:
            print(f"- {key}: " + "; ".join(f"{r['seconds']:.1f} / {r['peak_rss_mib']:,.0f} / {r['load']:.2f}"
                                          for r in value["runs"]))
    stages = {key.removeprefix("stages_"): value for key, value in results.items() if key.startswith("stages_")}
    if stages:
        print("\n| stage | " + " | ".join(stages) + " |")
        print("|---|" + "---:|" * len(stages))
        for stage in dict.fromkeys(s for value in stages.values() for s in value):
            print(f"| {stage} | " + " | ".join(f"{value.get(stage, 0):.2f}" for value in stages.values()) + " |")
        print("| total | " + " | ".join(f"{sum(v for k, v in value.items() if not k.startswith(' ')):.1f}"
                                         for value in stages.values()) + " |")
    if plot and points:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        xs = [p[0] / 1e6 for p in points]
        left.plot(xs, [p[1] for p in points], "o-")
        left.set(xlabel="events (millions)", ylabel="wall time (s, median)", title="ami-detector scan: time")
        right.plot(xs, [p[2] / 1024 for p in points], "o-", color="#D55E00")
        right.set(xlabel="events (millions)", ylabel="peak RSS (GiB, median)", title="peak memory", ylim=(0, None))
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"\nplot: {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="corpora, model, logs and results.json")
    parser.add_argument("--sizes", nargs="*", default=[], choices=sorted(SIZES), help="scan these sizes")
    parser.add_argument("--naive", nargs="*", default=[], choices=sorted(SIZES), help="run the pandas pipeline")
    parser.add_argument("--stages", nargs="*", default=[], choices=sorted(SIZES), help="per-stage split")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--min-severity", default="low", help="passed to scan (results kept under their own key)")
    parser.add_argument("--report", action="store_true", help="print the table from results.json")
    parser.add_argument("--plot", type=Path, help="write the scaling plot (PNG) here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.sizes:
        run_scans(args.workdir, args.sizes, args.runs, naive=False, min_severity=args.min_severity)
    if args.naive:
        run_scans(args.workdir, args.naive, args.runs, naive=True)
    for size in args.stages:
        results = load_results(args.workdir)
        results[f"stages_{size}"] = stages(args.workdir, size)
        save_results(args.workdir, results)
        print(f"stages {size}: {results[f'stages_{size}']}", flush=True)
    if args.report or args.plot:
        report(args.workdir, args.plot)


if __name__ == "__main__":
    main()
