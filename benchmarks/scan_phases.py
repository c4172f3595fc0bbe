"""The phases of one scan (parse, score, write), wall and CPU seconds, and what loading the model costs them.

``api.scan`` runs in this process with its two heavy stages (:func:`detector.runner.parse` and
:func:`detector.runner.score`) timed; ``Findings.write`` is timed after it. The modes compare the same
scan with the model loaded two ways:

- ``path``: as ``ami-detector scan --model DIR`` does it, the model read while the logs are parsed
  (:class:`detector.model_store.ModelLoading`), scikit-learn imported if the forests' walks need it
  (:mod:`detector.lazy_sklearn`);
- ``preloaded``: the model read, its profiles prepared and scikit-learn imported before the clock
  starts, so the difference to ``path`` is what loading costs the scan.

    python benchmarks/scan_phases.py LOGS --model M --modes path preloaded --runs 5

Runs alternate between the modes (mode after mode, then again), each in a fresh process, so that a
change in the machine's load hits them alike; every run prints one JSON line, and the medians per mode
end the output.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("path", "preloaded")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(logs: str, model: str, mode: str) -> dict[str, object]:
    """One scan in this process, in *mode*: wall and CPU seconds per phase."""
    from detector import runner
    from detector.model_store import load_model

    given: object = model
    if mode == "preloaded":
        from detector.features import prepare

        loaded = load_model(model)
        prepare(loaded.profiles)
        import sklearn.tree._tree  # noqa: F401 - what the forests' compiled walk needs

        for scorer in loaded.scorers.values():
            _ = scorer.forest_._compiled
        given = loaded
    phases: dict[str, tuple[float, float]] = {}

    def timed(name: str) -> None:
        stage = getattr(runner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            wall, cpu = time.perf_counter(), _cpu()
            try:
                return stage(*args, **kwargs)
            finally:
                phases[name] = (time.perf_counter() - wall, _cpu() - cpu)

        setattr(runner, name, wrapper)

    for name in ("parse", "score"):
        timed(name)
    from detector import api

    start, start_cpu = time.perf_counter(), _cpu()
    found = api.scan(logs, given)
    scanned = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scan-phases-") as out:
        written_cpu = _cpu()
        found.write(out)
        phases["write"] = (time.perf_counter() - scanned, _cpu() - written_cpu)
    found.close()
    result: dict[str, object] = {"mode": mode, "findings": found.df.height,
                                 "seconds": round(time.perf_counter() - start, 3),
                                 "cpu_seconds": round(_cpu() - start_cpu, 3),
                                 "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    for name, (wall, cpu) in phases.items():
        result[f"{name}_s"], result[f"{name}_cpu_s"] = round(wall, 3), round(cpu, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs")
    parser.add_argument("--model", required=True)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a single run, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_once(args.logs, args.model, args.one)), flush=True)
        return
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
    for _ in range(args.runs):
        for mode in args.modes:
            line = subprocess.run([sys.executable, str(Path(__file__).resolve()), args.logs, "--model", args.model,
                                   "--one", mode], check=True, capture_output=True, text=True).stdout.strip()
            print(line, flush=True)
            runs[mode].append(json.loads(line))
    for mode, results in runs.items():
        keys = [k for k in results[0] if k.endswith("_s") or k == "seconds" or k == "peak_rss_mib"]
        medians = {k: round(statistics.median(float(r[k]) for r in results), 2) for k in keys}
        print(json.dumps({"mode": mode, "runs": len(results), "median": medians}), flush=True)


if __name__ == "__main__":
    main()
