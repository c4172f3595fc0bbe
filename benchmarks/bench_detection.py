"""Detection quality on simulated, labelled logs: ami-detector against two simple baselines.

For each seed: simulate a utility (``detector.simulate``), parse it with ``read_logs``, split at the
labels' ``generator.baseline_until``, learn on the baseline, score the incident period and match
findings to the planted incidents the way ``tests/test_detection.py`` does (entity_id in the
incident's accounts or devices, and the finding's window overlaps [start, end]).

Methods
-------
ours        ``detector.detection.train`` / ``score`` with the default config.
A (event)   "loglizer-style": one row per event, one-hot of action, category, source_system, outcome
            and UTC hour of day; IsolationForest(n_estimators=200, random_state=0) fit on baseline
            events. An event's calibrated score is the share of baseline events with a lower anomaly
            score; events >= 0.995 are medium+, >= 0.99 low+. Flagged events become findings per
            (account, else target_id; 1-hour window) with score = max event score.
B (counts)  one row per (account, 1-hour window): counts of each category and each action; no
            baseline-relative or novelty features. IsolationForest on baseline windows, calibrated the
            same way; windows >= 0.995 are medium+.

Metrics (per method, per seed and averaged over seeds): recall per incident kind at medium+
(malicious incidents only), overall malicious recall, precision at medium+ (share of medium+
findings matching any labelled incident, benign included, and matching a malicious one),
precision@20 over the top 20 findings by score (ties broken by raw anomaly score), and the number of
medium+ findings. No network access.

    python benchmarks/bench_detection.py                       # seeds 7 11 23, 28 days, 1500 meters
    python benchmarks/bench_detection.py --seeds 7 --verbose   # also list medium+ false positives
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from detector.detection import score, train
from detector.pipeline import read_logs
from detector.schema import ACTIONS, CATEGORIES, OUTCOMES, SOURCE_SYSTEMS
from detector.simulate import simulate

MEDIUM = 0.995
LOW = 0.99
METHODS = ("ours", "A: event IF", "B: count IF")
WINDOW = timedelta(hours=1)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- baselines


def _calibrate(baseline_anomaly: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
    """Share of baseline rows with a strictly lower anomaly score."""
    ordered = np.sort(baseline_anomaly)
    return np.searchsorted(ordered, anomaly, side="left") / len(ordered)


def _forest(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train_x)
    base = -forest.score_samples(train_x)
    raw = -forest.score_samples(test_x)
    return _calibrate(base, raw), raw


def _event_matrix(events: pl.DataFrame) -> np.ndarray:
    cols = [(pl.col("action").cast(pl.String) == a).cast(pl.Float32) for a in ACTIONS]
    cols += [(pl.col("category").cast(pl.String) == c).cast(pl.Float32) for c in CATEGORIES]
    cols += [(pl.col("source_system").cast(pl.String) == s).cast(pl.Float32) for s in SOURCE_SYSTEMS]
    cols += [(pl.col("outcome").cast(pl.String) == o).cast(pl.Float32) for o in OUTCOMES]
    cols += [(pl.col("time").dt.hour() == h).cast(pl.Float32) for h in range(24)]
    return events.select([c.fill_null(0).alias(f"f{i}") for i, c in enumerate(cols)]).to_numpy()


def baseline_events(base: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Method A. Returns every (entity, hour) of the incident period as a finding with its max score."""
    calibrated, raw = _forest(_event_matrix(base), _event_matrix(test))
    scored = test.select(
        pl.coalesce(pl.col("account"), pl.col("target_id")).alias("entity_id"),
        pl.col("time").dt.truncate("1h").alias("window_start"),
        pl.col("action").cast(pl.String),
    ).with_columns(pl.Series("score", calibrated), pl.Series("raw", raw))
    return (scored.filter(pl.col("entity_id").is_not_null())
            .sort("raw", descending=True)
            .group_by("entity_id", "window_start")
            .agg(pl.col("score").max(), pl.col("raw").max(), pl.col("action").first().alias("top_action"),
                 pl.len().alias("event_count"))
            .with_columns((pl.col("window_start") + WINDOW).alias("window_end")))


def _count_windows(events: pl.DataFrame) -> pl.DataFrame:
    feats = [(pl.col("category").cast(pl.String) == c).sum().alias(f"cat_{c}") for c in CATEGORIES]
    feats += [(pl.col("action").cast(pl.String) == a).sum().alias(f"act_{a}") for a in ACTIONS]
    return (events.filter(pl.col("account").is_not_null())
            .group_by(pl.col("account").alias("entity_id"), pl.col("time").dt.truncate("1h").alias("window_start"))
            .agg(*feats, pl.len().alias("event_count"))
            .with_columns((pl.col("window_start") + WINDOW).alias("window_end"))
            .sort("entity_id", "window_start"))  # group_by order is not stable: the forest's subsamples depend on it


def baseline_counts(base: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Method B. Returns every (account, hour) of the incident period with its calibrated score."""
    tr, te = _count_windows(base), _count_windows(test)
    names = [c for c in tr.columns if c.startswith(("cat_", "act_"))]
    calibrated, raw = _forest(tr.select(names).to_numpy().astype(float), te.select(names).to_numpy().astype(float))
    top = te.select(names).to_numpy()
    top_action = [names[j] for j in np.argmax(np.where([n.startswith("act_") for n in names], top, -1), axis=1)]
    return te.select("entity_id", "window_start", "window_end", "event_count").with_columns(
        pl.Series("score", calibrated), pl.Series("raw", raw), pl.Series("top_action", top_action))


# --------------------------------------------------------------------------- matching and metrics


def _matches(finding: dict[str, Any], incident: dict[str, Any]) -> bool:
    return (finding["entity_id"] in incident["entities"] and finding["window_start"] <= incident["end"]
            and finding["window_end"] >= incident["start"])


def evaluate(rows: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """*rows*: all findings of a method, each with entity_id, window_start/end, score, medium (bool),
    sorted best first."""
    malicious = [i for i in incidents if not i["benign"]]
    medium = [r for r in rows if r["medium"]]
    any_match = [any(_matches(r, i) for i in incidents) for r in medium]
    mal_match = [any(_matches(r, i) for i in malicious) for r in medium]
    top = rows[:20]
    found = {i["id"]: any(_matches(r, i) for r in medium) for i in malicious}
    missed = [(i["kind"], max((r["score"] for r in rows if _matches(r, i)), default=None))
              for i in malicious if not found[i["id"]]]
    false_pos = [r for r, hit in zip(medium, any_match, strict=True) if not hit]
    benign_hits = [r for r, a, m in zip(medium, any_match, mal_match, strict=True) if a and not m]
    return {
        "kinds": {i["kind"]: found[i["id"]] for i in malicious},
        "recall": sum(found.values()) / len(found) if found else float("nan"),
        "n_medium": len(medium),
        "precision_any": sum(any_match) / len(medium) if medium else float("nan"),
        "precision_mal": sum(mal_match) / len(medium) if medium else float("nan"),
        "p20_any": sum(any(_matches(r, i) for i in incidents) for r in top) / 20,
        "p20_mal": sum(any(_matches(r, i) for i in malicious) for r in top) / 20,
        "n_low": sum(r["low"] for r in rows),
        "false_pos": false_pos,
        "benign_hits": benign_hits,
        "missed": missed,
    }


def run_seed(seed: int, days: int, meters: int, operators: int) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"bench_detection_{seed}_"))
    times: dict[str, float] = {}
    try:
        t = time.perf_counter()
        simulate(out, days=days, seed=seed, meters=meters, operators=operators)
        times["simulate"] = time.perf_counter() - t
        labels = json.loads((out / "labels.json").read_text())
        t = time.perf_counter()
        events, rejects = read_logs(out)
        times["parse"] = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    until = _ts(labels["generator"]["baseline_until"])
    base, test = events.filter(pl.col("time") < until), events.filter(pl.col("time") >= until)
    incidents = [dict(i, start=_ts(i["start"]), end=_ts(i["end"]), entities=set(i["accounts"]) | set(i["devices"]))
                 for i in labels["incidents"]]

    t = time.perf_counter()
    model = train(base)
    times["train"] = time.perf_counter() - t
    t = time.perf_counter()
    ours = score(test, model)
    times["score"] = time.perf_counter() - t
    ours_rows = [dict(r, medium=r["severity"] in ("medium", "high", "critical"), low=True,
                      top_action=(r["reasons"][0] if r["reasons"] else ""))
                 for r in ours.select("entity_id", "window_start", "window_end", "score", "severity", "reasons",
                                      "event_count").to_dicts()]

    t = time.perf_counter()
    a = baseline_events(base, test).sort(["score", "raw", "entity_id", "window_start"], descending=[True, True, False, False])
    times["A"] = time.perf_counter() - t
    t = time.perf_counter()
    b = baseline_counts(base, test).sort(["score", "raw", "entity_id", "window_start"], descending=[True, True, False, False])
    times["B"] = time.perf_counter() - t

    def rows_of(frame: pl.DataFrame) -> list[dict[str, Any]]:
        return [dict(r, medium=r["score"] >= MEDIUM, low=r["score"] >= LOW) for r in frame.to_dicts()]

    results = {"ours": evaluate(ours_rows, incidents), "A: event IF": evaluate(rows_of(a), incidents),
               "B: count IF": evaluate(rows_of(b), incidents)}
    return {"seed": seed, "events": events.height, "baseline_events": base.height, "test_events": test.height,
            "rejects": rejects.height, "n_incidents": len(incidents),
            "n_malicious": sum(not i["benign"] for i in incidents), "times": times, "results": results}


# --------------------------------------------------------------------------- reporting


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.0f}%"


def report(runs: list[dict[str, Any]], verbose: bool) -> str:
    seeds = [r["seed"] for r in runs]
    lines: list[str] = []
    lines.append("| seed | events | baseline / incident-period events | incidents (malicious) | simulate s | parse s "
                 "| train s | score s | A s | B s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        t = r["times"]
        lines.append(f"| {r['seed']} | {r['events']} | {r['baseline_events']} / {r['test_events']} | "
                     f"{r['n_incidents']} ({r['n_malicious']}) | {t['simulate']:.1f} | {t['parse']:.1f} | "
                     f"{t['train']:.1f} | {t['score']:.1f} | {t['A']:.1f} | {t['B']:.1f} |")

    lines += ["", f"**Summary, mean over seeds {', '.join(map(str, seeds))}** (medium+ = calibrated score >= 0.995)",
              "", "| method | malicious recall | precision (any incident) | precision (malicious only) "
              "| P@20 (any) | P@20 (malicious) | medium+ findings | low+ findings |", "|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        res = [r["results"][m] for r in runs]

        def mean(key: str, res: list[dict[str, Any]] = res) -> float:
            vals = [x[key] for x in res if x[key] == x[key]]
            return sum(vals) / len(vals) if vals else float("nan")

        lines.append(f"| {m} | {_pct(mean('recall'))} | {_pct(mean('precision_any'))} | "
                     f"{_pct(mean('precision_mal'))} | {_pct(mean('p20_any'))} | {_pct(mean('p20_mal'))} | "
                     f"{mean('n_medium'):.1f} | {mean('n_low'):.1f} |")

    lines += ["", "**Per seed**", "", "| seed | method | malicious recall | precision (any) | precision (malicious) "
              "| P@20 (any) | P@20 (malicious) | medium+ findings |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for m in METHODS:
            x = r["results"][m]
            lines.append(f"| {r['seed']} | {m} | {_pct(x['recall'])} | {_pct(x['precision_any'])} | "
                         f"{_pct(x['precision_mal'])} | {_pct(x['p20_any'])} | {_pct(x['p20_mal'])} | "
                         f"{x['n_medium']} |")

    kinds: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for m in METHODS:
            for kind, hit in r["results"][m]["kinds"].items():
                kinds[kind][m].append(hit)
    lines += ["", "**Recall per malicious incident kind at medium+** (incidents found / planted, over all seeds)", "",
              "| kind | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for kind in sorted(kinds):
        lines.append(f"| {kind} | " + " | ".join(
            f"{sum(kinds[kind][m])}/{len(kinds[kind][m])}" for m in METHODS) + " |")

    if verbose:
        for r in runs:
            for m in METHODS:
                x = r["results"][m]
                lines += ["", f"seed {r['seed']} {m}: {len(x['false_pos'])} medium+ findings match no incident, "
                          f"{len(x['benign_hits'])} match only a benign one"]
                lines.append("    missed (best score of a matching finding): " + ", ".join(
                    f"{k} {'none' if s is None else f'{s:.5f}'}" for k, s in x["missed"]))
                for f in x["false_pos"][:12]:
                    lines.append(f"    FP {f['entity_id']:<22} {f['window_start']:%m-%d %H:%M} score={f['score']:.4f} "
                                 f"events={f['event_count']} {str(f['top_action'])[:120]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--meters", type=int, default=1500)
    parser.add_argument("--operators", type=int, default=12)
    parser.add_argument("--verbose", action="store_true", help="list medium+ findings that match no incident")
    args = parser.parse_args(argv)
    runs = []
    for seed in args.seeds:
        began = time.perf_counter()
        runs.append(run_seed(seed, args.days, args.meters, args.operators))
        print(f"seed {seed}: done in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    print(report(runs, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
