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

The sparse shape (issue 17): several simulated utilities of 200,000 meters and 300 operators each
(seeds 1-4), 28 baseline + 7 scored days, few events per meter and many accounts and devices. In one
run of the script, alternating: ``train`` on the baseline days, ``scan --model`` of the scored days,
and the floor (``benchmarks/floor.py``: a bare polars pass over the same files) of each; optionally
``scan`` without a model over everything and the straightforward pipeline:

    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --sparse train scan floor --runs 3
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --sparse scan-nomodel naive --runs 1
    python benchmarks/bench_scan.py --workdir /tmp/bench_scan --sparse-stages   # per-stage split of the scan

Needs the ``bench`` extra (pandas, matplotlib): ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import datetime
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


SPARSE = {"seeds": (1, 2, 3, 4), "meters": 200_000, "operators": 300, "days": 35, "baseline_days": 28}


def sparse_corpus(workdir: Path) -> dict[str, Path | str]:
    """The sparse shape, generated once: one simulator directory per seed, and flat directories of
    symbolic links to its files (``all``, ``baseline``: files of the baseline days, ``scored``: the
    rest), with ``until``, the end of the baseline (UTC, as ``--baseline-until`` takes it)."""
    root = workdir / "sparse"
    until = ""
    for seed in SPARSE["seeds"]:
        path = root / f"u{seed}"
        if not (path / "labels.json").exists():
            shutil.rmtree(path, ignore_errors=True)
            subprocess.run(["ami-detector", "simulate", "--out", str(path), "--days", str(SPARSE["days"]),
                            "--meters", str(SPARSE["meters"]), "--operators", str(SPARSE["operators"]),
                            "--seed", str(seed), "--baseline-days", str(SPARSE["baseline_days"])], check=True)
        until = json.loads((path / "labels.json").read_text())["generator"]["baseline_until"].rstrip("Z")[:19]
    # Files are named by local day; every seed starts on the same day in the same zone, so the
    # scored files are those of the local days from the first scored day on.
    first_scored = json.loads((root / f"u{SPARSE['seeds'][0]}" / "labels.json").read_text())["generator"]
    start = datetime.date.fromisoformat(first_scored["start"]) + datetime.timedelta(days=SPARSE["baseline_days"])
    dirs: dict[str, Path | str] = {"until": until}
    for part in ("all", "baseline", "scored"):
        folder = root / part
        dirs[part] = folder
        if folder.exists():
            continue
        folder.mkdir()
        for seed in SPARSE["seeds"]:
            for log in sorted((root / f"u{seed}").iterdir()):
                day = re.search(r"_(\d{4}-\d{2}-\d{2})\.", log.name)
                if day is None:
                    continue
                scored = datetime.date.fromisoformat(day.group(1)) >= start
                if part == "all" or (part == "scored") == scored:
                    (folder / f"u{seed}_{log.name}").symlink_to(log.resolve())
    return dirs


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
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False)
    log.write_text(result.stdout + result.stderr)
    if result.returncode not in (0, 1):  # scan exits 1 when it has findings at the alert severity
        raise RuntimeError(f"{command[0]} failed ({result.returncode}); see {log}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert wall and rss, result.stderr[-2000:]
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    # scan's summary line says "N events scored ..."; the pandas pipeline prints JSON.
    counted = (re.search(r"^([\d,]+) events scored", result.stdout, re.MULTILINE) or re.search(r'"events": (\d+)', result.stdout)
               or re.search(r'"training_events": (\d+)', result.stdout))
    assert counted, result.stdout[-2000:]
    return {"seconds": seconds, "peak_rss_mib": int(rss.group(1)) / 1024, "events": int(counted.group(1).replace(",", ""))}


def load_results(workdir: Path) -> dict:
    path = workdir / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(workdir: Path, results: dict) -> None:
    (workdir / "results.json").write_text(json.dumps(results, indent=1))


def run_scans(workdir: Path, sizes: list[str], runs: int, naive: bool, min_severity: str = "low",
              floor: bool = False) -> None:
    results = load_results(workdir)
    trained = model(workdir)
    for size in sizes:
        logs = corpus(workdir, size)
        labels = json.loads((logs / "labels.json").read_text())
        key = f"{'naive' if naive else 'floor' if floor else 'scan'}_{size}" + (
            "" if min_severity == "low" else f"_{min_severity}")
        entry = results.get(key, {"runs": []})
        for i in range(runs):
            out = workdir / "out"
            shutil.rmtree(out, ignore_errors=True)
            if floor:
                command = [sys.executable, str(HERE / "floor.py"), str(logs)]
            elif naive:
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


def run_sparse(workdir: Path, what: list[str], runs: int) -> None:
    """The sparse shape's commands, run after one another *runs* times (so that load changes hit
    all of them alike), each in its own process."""
    results = load_results(workdir)
    dirs = sparse_corpus(workdir)
    model_dir = workdir / "sparse_model"
    out = workdir / "out_sparse"

    def train() -> list[str]:
        shutil.rmtree(model_dir, ignore_errors=True)
        return ["ami-detector", "train", str(dirs["baseline"]), "--model-dir", str(model_dir), "--json", "--quiet"]

    commands = {
        "train": train,
        "floor_baseline": lambda: [sys.executable, str(HERE / "floor.py"), str(dirs["baseline"])],
        "scan": lambda: ["ami-detector", "scan", str(dirs["scored"]), "--model", str(model_dir), "--out", str(out)],
        "floor_scored": lambda: [sys.executable, str(HERE / "floor.py"), str(dirs["scored"])],
        "scan-nomodel": lambda: ["ami-detector", "scan", str(dirs["all"]), "--baseline-until", str(dirs["until"]),
                                 "--out", str(out)],
        "floor_all": lambda: [sys.executable, str(HERE / "floor.py"), str(dirs["all"])],
        "naive": lambda: [sys.executable, str(HERE / "naive_pipeline.py"), str(dirs["all"]), "--baseline-until",
                          str(dirs["until"]) + "Z", "--out", str(workdir / "naive_findings.csv")],
    }
    # The floor of each command is run on its files right after it.
    floors = {"train": "floor_baseline", "scan": "floor_scored", "scan-nomodel": "floor_all"}
    wanted = [name for name in commands if name in what or ("floor" in what and name in floors.values()
                                                            and any(floors[w] == name for w in what if w in floors))]
    if "scan" in wanted and "train" not in wanted and not (model_dir / "model.json").exists():
        wanted.insert(0, "train")
    for i in range(runs):
        for name in wanted:
            shutil.rmtree(out, ignore_errors=True)
            key = f"sparse_{name}"
            run = timed(commands[name](), workdir / f"{key}_{len(results.get(key, {}).get('runs', []))}.log")
            run["load"] = os.getloadavg()[0]
            entry = results.setdefault(key, {"runs": []})
            entry["runs"].append(run)
            entry["events"] = run["events"]
            print(f"{key} run {i + 1}/{runs}: {run['seconds']:.1f} s, {run['peak_rss_mib']:.0f} MiB, "
                  f"{run['events']:,} events (load {run['load']:.2f})", flush=True)
            save_results(workdir, results)


def stages(workdir: Path, logs: Path, model_dir: Path) -> dict[str, float]:
    """The scan's work timed stage by stage, in this process (the calls ``scan`` makes, in order).

    Scoring a slice (``detection.score``) is timed whole; its parts are then timed again on the same
    slice and reported "of which" (that second pass is not counted in the total). Stages run one
    after the other here; ``scan`` builds the next slice's windows while it scores this one's, so
    its wall time is less than the sum.
    """
    import polars as pl

    from detector import api
    from detector.attribution import attribute
    from detector.detection import findings_of, lean_windows, profiles_of
    from detector.features import feature_columns
    from detector.findings import rank
    from detector.incidents import assign_incidents
    from detector.model_store import load_model
    from detector.scoring import SeenCells
    from detector.signals import SignalState, event_signals
    from detector.slices import remember
    from detector.spill import EventSpill, slice_length

    trained = load_model(model_dir)
    config = trained.settings
    times: dict[str, float] = {}

    def add(stage: str, began: float) -> float:
        now = time.perf_counter()
        times[stage] = times.get(stage, 0.0) + now - began
        return now

    run = api.plan(logs)
    spill = EventSpill.temporary(slice_length(config.features.window_length))
    try:
        began = time.perf_counter()
        for chunk in run.chunks():  # parse, by format (a chunk is timed with the file it comes from)
            began = add(f"parse {run.reports[-1].format}", began)
            spill.add(chunk.events)
            began = add("write spill", began)
        last_seen: dict[str, pl.DataFrame] = {}
        sessions = None
        state = SignalState.empty()
        profiles = profiles_of(trained)  # the whole profiles, as score_slices reads them
        # Forest cells met in earlier slices, as score_slices keeps them (one set for the timed
        # scoring, one for the parts timed again, so that neither sees this slice's cells twice).
        seen = {kind: SeenCells() for kind in trained.scorers}
        seen_again = {kind: SeenCells() for kind in trained.scorers}
        parts = []
        for _, _, lazy in spill.slices():
            began = time.perf_counter()
            events = lazy.collect()
            began = add("read spill", began)
            events, sessions = attribute(events, sessions)
            began = add("attribution", began)
            windows = lean_windows(events, trained, config, profiles=profiles, earlier=last_seen)
            parts.append(findings_of(windows, events, trained, config, profiles=profiles, state=state, links=True,
                                     seen=seen))
            began = add("score slices", began)
            remember(last_seen, events)
            add("carry state", began)
            # The parts of scoring, again (not counted in the total; signals see the state as updated).
            began = time.perf_counter()
            windows = lean_windows(events, trained, config, profiles=profiles, earlier=last_seen)
            began = add("  of which: account and device windows", began)
            for kind, frame in windows.items():
                trained.scorers[kind].combined(frame.select(feature_columns(kind)).to_numpy(), seen_again[kind])
            began = add("  of which: forest and tail scores", began)
            event_signals(events, profiles, config.features.window, SignalState(state.created, state.firsts))
            add("  of which: security signals", began)
        found = api.Findings(assign_incidents(rank(pl.concat(parts))), events=spill.scan(), model=trained)
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
        floor_wall = median(f"floor_{size}", "seconds")
        if floor_wall:
            print(f"<!-- {size}: floor {floor_wall:.1f} s, scan / floor {wall / floor_wall:.1f}x -->")
        naive_wall, naive_rss = median(f"naive_{size}", "seconds"), median(f"naive_{size}", "peak_rss_mib")
        naive = (f"{naive_wall:.1f} | {naive_rss:,.0f} | {naive_wall / wall:.2f}x" if naive_wall and naive_rss
                 else "not run | | ")
        print(f"| {size} | {events:,} | {len(results[f'scan_{size}']['runs'])} | {wall:.1f} | {events / wall:,.0f} | "
              f"{rss:,.0f} | {naive} |")
        points.append((events, wall, rss))
    sparse = [(name, floor) for name, floor in (("train", "floor_baseline"), ("scan", "floor_scored"),
                                                 ("scan-nomodel", "floor_all"), ("naive", "floor_all"))
              if results.get(f"sparse_{name}")]
    if sparse:
        print("\nSparse shape (medians):\n")
        print("| command | events | runs | wall s | events/s | peak RSS MiB | floor s | floor events/s | x floor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, floor in sparse:
            key = f"sparse_{name}"
            wall, rss = median(key, "seconds"), median(key, "peak_rss_mib")
            events = results[key]["events"]
            base = median(f"sparse_{floor}", "seconds")
            floor_cells = (f"{base:.1f} | {results[f'sparse_{floor}']['events'] / base:,.0f} | {wall / base:.1f}x"
                           if base else "not run | | ")
            print(f"| {name} | {events:,} | {len(results[key]['runs'])} | {wall:.1f} | {events / wall:,.0f} | "
                  f"{rss:,.0f} | {floor_cells} |")
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
    parser.add_argument("--floor", nargs="*", default=[], choices=sorted(SIZES),
                        help="the floor (benchmarks/floor.py) on these sizes' corpora")
    parser.add_argument("--sparse", nargs="*", default=[],
                        choices=["train", "scan", "floor", "scan-nomodel", "naive"],
                        help="the sparse shape's commands (floor: the floor of each command named)")
    parser.add_argument("--sparse-stages", action="store_true", help="per-stage split of the sparse shape's scan")
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
    if args.floor:
        run_scans(args.workdir, args.floor, args.runs, naive=False, floor=True)
    for size in args.stages:
        results = load_results(args.workdir)
        results[f"stages_{size}"] = stages(args.workdir, corpus(args.workdir, size), model(args.workdir))
        save_results(args.workdir, results)
        print(f"stages {size}: {results[f'stages_{size}']}", flush=True)
    if args.sparse:
        run_sparse(args.workdir, args.sparse, args.runs)
    if args.sparse_stages:
        results = load_results(args.workdir)
        dirs = sparse_corpus(args.workdir)
        results["stages_sparse"] = stages(args.workdir, Path(dirs["scored"]), args.workdir / "sparse_model")
        save_results(args.workdir, results)
        print(f"stages sparse: {results['stages_sparse']}", flush=True)
    if args.report or args.plot:
        report(args.workdir, args.plot)


if __name__ == "__main__":
    main()
