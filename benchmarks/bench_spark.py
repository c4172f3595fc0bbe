"""The scan on Spark in local mode against the single-machine scan, on one simulated corpus.

A corpus is simulated once (``--days`` of ``--meters`` meters), a model trained on its baseline days
and saved; then, alternating for ``--runs`` rounds:

* ``local``: ``ami-detector scan LOGS --model M --out D -q`` in its own process (wall time);
* ``spark``: the same scan through :func:`detector.api.scan` on a :class:`SparkEngine` (``--master``,
  ``local[2]`` by default) in this process, the session started once and timed apart (start-up), the
  parse and score stages timed separately (progress callbacks), the outputs written as the command does.

The findings of both are checked to be the same. Results go to ``results.json`` in the work directory
and a table to stdout.

With ``--train``, training is timed instead: ``ami-detector train LOGS --model-dir D --baseline-until U -q``
in its own process against :func:`detector.api.train` on the Spark engine (the parse, then each day's
profiles and training windows in tasks, the fit on the driver; start-up timed apart), and the two
models' profiles and forests are checked to be the same, byte for byte. Results go to ``results-train.json``.

    python benchmarks/bench_spark.py --workdir /tmp/bench_spark --days 14 --meters 20000 --runs 2
    python benchmarks/bench_spark.py --workdir /tmp/bench_spark --masters 'local[1]' 'local[2]'
    python benchmarks/bench_spark.py --workdir /tmp/bench_spark --train --runs 1

Needs the ``spark`` extra and Java 17+: ``pip install -e '.[spark]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


def _corpus(workdir: Path, days: int, meters: int, seed: int) -> tuple[Path, Path]:
    """The simulated logs and the model trained on their baseline days."""
    from detector import api
    from detector.model_store import save_model
    from detector.simulate import simulate

    logs, model_dir = workdir / "logs", workdir / "model"
    if not (logs / "labels.json").exists():
        simulate(logs, days=days, seed=seed, meters=meters)
    until = json.loads((logs / "labels.json").read_text())["generator"]["baseline_until"]
    if not model_dir.exists():
        events, _ = api.read_logs(logs)
        save_model(api.train(events, baseline_until=_time(until)), model_dir)
    return logs, model_dir


def _time(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime
    return datetime.fromisoformat(text)


def _command(args: list[str], exit_codes: tuple[int, ...]) -> float:
    """Seconds ``ami-detector ARGS`` took in its own process; another exit status stops the run."""
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "ami-detector"), *args, "-q"], check=False)
    if done.returncode not in exit_codes:
        raise SystemExit(f"local {args[0]} failed ({done.returncode})")
    return time.perf_counter() - start


def _stage_marks() -> tuple[dict[str, float], Callable[[str, float, float | None], None]]:
    """When each progress stage was first reported, and the progress callback that records it."""
    marks: dict[str, float] = {}

    def progress(stage: str, done: float, total: float | None) -> None:
        marks.setdefault(stage, time.perf_counter())

    return marks, progress


def _local(logs: Path, model_dir: Path, out: Path) -> float:
    return _command(["scan", str(logs), "--model", str(model_dir), "--out", str(out)], (0, 1))


def _spark(engine, logs: Path, model_dir: Path, out: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from detector import api
    from detector.model_store import load_model

    marks, progress = _stage_marks()
    start = time.perf_counter()
    found = api.scan(logs, load_model(model_dir), engine=engine, progress=progress)
    scored = time.perf_counter()
    try:
        found.write(out)
    finally:
        found.close()
    end = time.perf_counter()
    # The scan reports "scoring" when parsing is done; what is before it is the parse.
    parse_end = marks.get("scoring", scored)
    return {"total": end - start, "parse": parse_end - start, "score": scored - parse_end, "write": end - scored,
            "events": found.events_scored}


def _local_train(logs: Path, until: str, model_dir: Path) -> float:
    return _command(["train", str(logs), "--model-dir", str(model_dir), "--baseline-until", until], (0,))


def _spark_train(engine, logs: Path, until: str, model_dir: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from detector import api
    from detector.model_store import save_model

    marks, progress = _stage_marks()
    start = time.perf_counter()
    model = api.train(logs, baseline_until=_time(until), engine=engine, progress=progress)
    learned = time.perf_counter()
    save_model(model, model_dir)
    parse_end = marks.get("training", learned)
    return {"total": time.perf_counter() - start, "parse": parse_end - start, "learn": learned - parse_end,
            "events": model.metadata["training_events"]}


def _alternate(args: argparse.Namespace, local: Callable[[], float], spark: Callable[[Any], dict[str, float]],
               same: Callable[[], bool], differs: str) -> dict[str, Any]:
    """For each ``--masters`` in turn: a session started and timed apart (start-up), then ``--runs`` rounds
    of *local* and *spark* one after the other; the outputs checked with *same* (else exit saying *differs*)."""
    from detector.engines.spark import SparkEngine

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": os.getloadavg(), "corpus": {"days": args.days, "meters": args.meters},
        "local": [], "spark": {}}
    for master in args.masters:
        start = time.perf_counter()
        engine = SparkEngine(master)
        engine.session  # noqa: B018 - started here, timed apart
        startup = time.perf_counter() - start
        runs = []
        for run in range(args.runs):
            results["local"].append(local())
            runs.append(spark(engine))
            print(f"{master} run {run + 1}: local {results['local'][-1]:.1f} s, spark {runs[-1]}", flush=True)
        engine.close()
        results["spark"][master] = {"startup": startup, "runs": runs}
        if not same():
            raise SystemExit(differs)
    results["load_average_at_end"] = os.getloadavg()
    return results


def _train_main(args: argparse.Namespace, logs: Path) -> None:

    until = json.loads((logs / "labels.json").read_text())["generator"]["baseline_until"]
    local_dir, spark_dir = args.workdir / "model-local", args.workdir / "model-spark"

    def same() -> bool:
        # Profiles and forests byte for byte (the command line adds the file count to the metadata, the API does not).
        tables = sorted(p.relative_to(local_dir) for p in local_dir.rglob("*") if p.suffix in (".parquet", ".npz"))
        return bool(tables) and all((local_dir / t).read_bytes() == (spark_dir / t).read_bytes() for t in tables)

    results = _alternate(args, lambda: _local_train(logs, until, local_dir),
                         lambda engine: _spark_train(engine, logs, until, spark_dir),
                         same, "the model trained on Spark differs from the local one")
    (args.workdir / "results-train.json").write_text(json.dumps(results, indent=2))
    events = results["spark"][args.masters[0]]["runs"][0]["events"]
    best_local = min(results["local"])
    print(f"\n{events:,} baseline events; local train (best of {len(results['local'])}): {best_local:.1f} s")
    for master, spark in results["spark"].items():
        best = min(spark["runs"], key=lambda r: r["total"])
        print(f"{master}: start-up {spark['startup']:.1f} s; train (best) {best['total']:.1f} s = parse "
              f"{best['parse']:.1f} + learn {best['learn']:.1f}; the same profiles and forests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--meters", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--masters", nargs="+", default=["local[2]"])
    parser.add_argument("--train", action="store_true", help="time training instead of the scan")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.train:
        from detector.simulate import simulate
        logs = args.workdir / "logs"
        if not (logs / "labels.json").exists():
            simulate(logs, days=args.days, seed=args.seed, meters=args.meters)
        _train_main(args, logs)
        return
    logs, model_dir = _corpus(args.workdir, args.days, args.meters, args.seed)

    out_local, out_spark = args.workdir / "out-local", args.workdir / "out-spark"

    def same() -> bool:
        return pl.read_parquet(out_local / "findings.parquet").drop("score").equals(
            pl.read_parquet(out_spark / "findings.parquet").drop("score"))

    results = _alternate(args, lambda: _local(logs, model_dir, out_local),
                         lambda engine: _spark(engine, logs, model_dir, out_spark),
                         same, "the Spark scan's findings differ from the local scan's")
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))

    events = results["spark"][args.masters[0]]["runs"][0]["events"]
    best_local = min(results["local"])
    print(f"\n{events:,} events; local scan (best of {len(results['local'])}): {best_local:.1f} s, "
          f"{events / best_local:,.0f} events/s")
    for master, spark in results["spark"].items():
        best = min(spark["runs"], key=lambda r: r["total"])
        print(f"{master}: start-up {spark['startup']:.1f} s; scan (best) {best['total']:.1f} s = parse "
              f"{best['parse']:.1f} + score {best['score']:.1f} + write {best['write']:.1f}; "
              f"{events / best['total']:,.0f} events/s")


if __name__ == "__main__":
    main()
