"""Detection quality on simulated, labelled worlds: ami-detector against two simple baselines.

Worlds
------
utility     a utility drawn per seed by ``Settings.random(seed)`` (sizes, shifts, account and host naming,
            time zone, baseline length 10-35 days + 7 scored, incident timing and sizes, benign
            scenarios present or not, the extended catalogue and benign routine), in the five
            reference formats (``detector.simulate.simulate``).
classic     today's default utility (``--classic-seeds``), for continuity with earlier results.
fleet       the logon fleet (``detector.simulate.fleet``): ~1,000 employees' Windows logons, admins
            logging on to many PCs, removable media logged by ``PC$``, CERT r4.2-style insider incidents.

For each world: parse with ``read_logs``, split at ``labels.json`` ``generator.baseline_until``, learn on
the baseline (``detector.detection.train``), score the rest (``detector.detection.score``) and match
findings to the labelled scenarios: a finding matches a scenario when its ``entity_id`` is one of the
scenario's accounts, devices or hosts (case-insensitive; a host also by its short name) and its window
overlaps [start, end].

Methods
-------
ours        ``detector.detection.train`` / ``score`` with the default config; findings in the order
            ``score`` returns them (severity, then score), never re-sorted.
A (event)   "loglizer-style": one row per event, one-hot of action, category, source_system, outcome
            and UTC hour of day; IsolationForest(n_estimators=200, random_state=0) fit on baseline
            events. An event's calibrated score is the share of baseline events with a lower anomaly
            score; events >= 0.995 are medium+, >= 0.99 low+. Flagged events become findings per
            (account, else target_id; 1-hour window) with score = max event score.
B (counts)  one row per (account, 1-hour window): counts of each category and each action; no
            baseline-relative or novelty features. IsolationForest on baseline windows, calibrated the
            same way; windows >= 0.995 are medium+.

Metrics (per world and averaged over worlds of a family)
-------------------------------------------------------
recall      share of malicious scenarios matched by a medium+ finding.
any         share of malicious scenarios matched by any finding (ours: any severity; A/B: low+).
prec        precision at medium+: share of medium+ findings matching any labelled scenario (benign
            included); ``prec mal``: matching a malicious one.
P@20        share of the first 20 findings in rank order matching any scenario (of 20).
/10k        medium+ findings per 10,000 scored events.
benign max  highest severity of a finding matching each benign scenario and no malicious one (target:
            not above medium); per family, the worst over its worlds.
If the findings have an ``incident_id`` column, the same metrics per incident: an incident matches a
scenario if any of its findings does, its severity is its findings' highest, its rank its first finding's.

    python benchmarks/bench_detection.py --quick                  # 2 drawn utilities + a 300-person fleet
    python benchmarks/bench_detection.py                          # 8 drawn utilities + a ~1,000-person fleet
    python benchmarks/bench_detection.py --json out.json --verbose
"""

from __future__ import annotations

import argparse
import json
import math
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

from detector.config import Config
from detector.detection import score, train
from detector.features import FeatureConfig
from detector.pipeline import read_logs
from detector.schema import ACTIONS, CATEGORIES, OUTCOMES, SOURCE_SYSTEMS
from detector.simulate import simulate

MEDIUM = 0.995
LOW = 0.99
METHODS = ("ours", "A: event IF", "B: count IF")
WINDOW = timedelta(hours=1)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


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

SEVERITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITY_NAME = {v: k for k, v in SEVERITY_RANK.items()}


def scenarios_of(labels: dict[str, Any]) -> pl.DataFrame:
    """One row per labelled scenario: id, kind, benign, start, end, and its entities (lower case; a
    host also by its short name)."""
    rows = []
    for i in labels["incidents"]:
        names = {str(n).lower() for n in (*i["accounts"], *i.get("devices", []), *i.get("hosts", []))}
        names |= {str(h).lower().split(".", 1)[0] for h in i.get("hosts", [])}
        rows.append({"scenario": i["id"], "kind": i["kind"], "benign": bool(i["benign"]), "start": _ts(i["start"]),
                     "end": _ts(i["end"]), "entities": sorted(names)})
    schema = {"scenario": pl.String, "kind": pl.String, "benign": pl.Boolean, "start": pl.Datetime("us", "UTC"),
              "end": pl.Datetime("us", "UTC"), "entities": pl.List(pl.String)}
    return pl.DataFrame(rows, schema=schema)


def match(findings: pl.DataFrame, scenarios: pl.DataFrame) -> pl.DataFrame:
    """(rank, scenario) pairs: the finding of that rank matches that scenario.

    *findings* needs ``rank``, ``entity_id``, ``window_start`` and ``window_end``.
    """
    keys = findings.select(
        "rank", "window_start", "window_end",
        pl.concat_list(pl.col("entity_id").str.to_lowercase(),
                       pl.col("entity_id").str.to_lowercase().str.split(".").list.first()).list.unique().alias("key"),
    ).explode("key")
    entities = scenarios.select("scenario", "start", "end", pl.col("entities").alias("key")).explode("key")
    return (keys.join(entities, on="key", how="inner")
            .filter((pl.col("window_start") <= pl.col("end")) & (pl.col("window_end") >= pl.col("start")))
            .select("rank", "scenario").unique().sort("rank", "scenario"))


def evaluate(units: pl.DataFrame, pairs: pl.DataFrame, scenarios: pl.DataFrame, scored_events: int
             ) -> dict[str, Any]:
    """Metrics of one method on one world.

    *units* (findings or incidents), ranked best first by ``rank``: ``rank``, ``flagged`` (low+),
    ``medium`` (medium+), ``severity`` (0-4), ``score``. *pairs*: (rank, scenario) matches.
    """
    units = units.sort("rank")
    hits = pairs.join(scenarios.select("scenario", "kind", "benign"), on="scenario").join(
        units.select("rank", "flagged", "medium", "severity", "score"), on="rank")
    malicious = scenarios.filter(~pl.col("benign"))
    n_mal = malicious.height
    found = set(hits.filter(pl.col("medium") & ~pl.col("benign")).get_column("scenario"))
    touched = set(hits.filter(pl.col("flagged") & ~pl.col("benign")).get_column("scenario"))
    medium = units.filter(pl.col("medium"))
    matched_any = set(hits.get_column("rank"))
    matched_mal = set(hits.filter(~pl.col("benign")).get_column("rank"))
    n_medium = medium.height
    top = units.head(20).get_column("rank").to_list()
    benign_max = {}
    # A finding that also matches a malicious scenario (the same administrator in the same hour) says
    # nothing about the benign one: only findings matching nothing malicious count against it.
    benign_only = hits.filter(pl.col("flagged") & ~pl.col("rank").is_in(list(matched_mal_of(hits))))
    for row in scenarios.filter(pl.col("benign")).iter_rows(named=True):
        best = benign_only.filter(pl.col("scenario") == row["scenario"]).get_column("severity").max()
        benign_max.setdefault(row["kind"], []).append(int(best or 0))
    best_score = hits.group_by("scenario").agg(pl.col("score").max())
    best = dict(best_score.iter_rows())
    nan = float("nan")
    return {
        "per_scenario": [{"id": r["scenario"], "kind": r["kind"], "found": r["scenario"] in found,
                          "any": r["scenario"] in touched, "best_score": best.get(r["scenario"])}
                         for r in malicious.iter_rows(named=True)],
        "recall": len(found) / n_mal if n_mal else nan,
        "any_share": len(touched) / n_mal if n_mal else nan,
        "n_medium": n_medium,
        "precision_any": sum(r in matched_any for r in medium.get_column("rank")) / n_medium if n_medium else nan,
        "precision_mal": sum(r in matched_mal for r in medium.get_column("rank")) / n_medium if n_medium else nan,
        "p20_any": sum(r in matched_any for r in top) / 20,
        "p20_mal": sum(r in matched_mal for r in top) / 20,
        "per_10k": 10_000 * n_medium / scored_events if scored_events else nan,
        "benign_max": {k: SEVERITY_NAME[max(v)] for k, v in benign_max.items()},
        "benign_over_medium": sum(max(v) > SEVERITY_RANK["medium"] for v in benign_max.values()),
        "unmatched_medium": medium.filter(~pl.col("rank").is_in(list(matched_any))).head(12).to_dicts(),
    }


def matched_mal_of(hits: pl.DataFrame) -> set[int]:
    return set(hits.filter(~pl.col("benign")).get_column("rank"))


def ours_units(findings: pl.DataFrame) -> pl.DataFrame:
    """Our findings as ranked units, in the order ``score`` returned them."""
    sev = pl.col("severity").cast(pl.String).replace_strict(SEVERITY_RANK, default=0, return_dtype=pl.Int64)
    return findings.with_row_index("rank").select(
        pl.col("rank").cast(pl.Int64), "entity_id", "window_start", "window_end", "score", sev.alias("severity"),
        pl.lit(True).alias("flagged"), (sev >= SEVERITY_RANK["medium"]).alias("medium"),
        pl.col("reasons").list.first().alias("note"),
        *([pl.col("incident_id")] if "incident_id" in findings.columns else []))


def incident_units(units: pl.DataFrame, pairs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Findings grouped by ``incident_id`` (a finding without one is its own incident): an incident's
    rank is its first finding's, its severity the highest, and it matches what any finding matches."""
    keyed = units.with_columns(pl.coalesce(pl.col("incident_id").cast(pl.String),
                                           pl.concat_str(pl.lit("finding-"), pl.col("rank"))).alias("_incident"))
    incidents = (keyed.group_by("_incident").agg(
        pl.col("rank").min(), pl.col("severity").max(), pl.col("score").max(), pl.col("entity_id").first(),
        pl.col("window_start").min(), pl.col("window_end").max(), pl.col("note").first())
        .with_columns(pl.lit(True).alias("flagged"), (pl.col("severity") >= SEVERITY_RANK["medium"]).alias("medium"))
        .sort("rank"))
    lead = keyed.select("rank", "_incident").join(incidents.select("_incident", pl.col("rank").alias("lead")),
                                                  on="_incident")
    inc_pairs = pairs.join(lead, on="rank").select(pl.col("lead").alias("rank"), "scenario").unique()
    return incidents.drop("_incident"), inc_pairs


def baseline_units(frame: pl.DataFrame) -> pl.DataFrame:
    ranked = frame.sort(["score", "raw", "entity_id", "window_start"], descending=[True, True, False, False])
    return ranked.with_row_index("rank").select(
        pl.col("rank").cast(pl.Int64), "entity_id", "window_start", "window_end", "score",
        pl.when(pl.col("score") >= MEDIUM).then(2).when(pl.col("score") >= LOW).then(1).otherwise(0)
        .alias("severity"), (pl.col("score") >= LOW).alias("flagged"), (pl.col("score") >= MEDIUM).alias("medium"),
        pl.col("top_action").cast(pl.String).alias("note"))


# --------------------------------------------------------------------------- worlds


def _settings_note(generator: dict[str, Any]) -> str:
    s = generator.get("settings", {})
    if generator.get("tool") == "detector.simulate.fleet":
        return (f"fleet {s.get('employees')} employees + {s.get('admins')} admins, {generator['tz']}, "
                f"{s.get('baseline_days')}+{s.get('scored_days')} d, 6416 logon id: {s.get('usb_logon_id')}")
    if not s:
        return f"classic {generator['meters']} meters, {generator['operators']} operators, {generator['tz']}"
    return (f"{s['meters']} m, {s['operators']} ops/{s['admins']} adm/{s['vendors']} vnd, {s['shifts']}@"
            f"{s['shift_start']:g}{'' if s['weekend_work'] else ' no-wkend'}, {s['account_names']}"
            f"{'+dom' if s['domain_prefix'] else ''}, {s['host_names']} hosts, {s['tz']}, "
            f"{s['baseline_days']}+{s['days'] - s['baseline_days']} d, burst {s['burst_size']}, "
            f"{'benign' if s['benign'] else 'no benign'}")


def make_world(world: str, seed: int, out: Path, quick: bool, fleet_usb_id: str = "user") -> None:
    if world == "utility":
        from detector.simulate import Settings

        settings = Settings.random(seed, **({"meters": 1000} if quick else {}))
        simulate(out, seed=seed, settings=settings)
    elif world == "classic":
        simulate(out, days=28, seed=seed, meters=1500, operators=12)
    elif world == "fleet":
        from detector.simulate.fleet import FleetSettings, simulate_fleet

        fleet = FleetSettings.random(seed, usb_logon_id=fleet_usb_id,
                                     **({"employees": 300, "baseline_days": 10} if quick else {}))
        simulate_fleet(out, seed=seed, settings=fleet)
    else:
        raise ValueError(world)


# --utc: read habits in UTC as an unconfigured install does (the default config).
LOCAL_TIME = True


def run_world(world: str, seed: int, *, quick: bool = False, baselines: bool = True, fleet_usb_id: str = "user"
              ) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"bench_detection_{world}_{seed}_"))
    times: dict[str, float] = {}
    try:
        t = time.perf_counter()
        make_world(world, seed, out, quick, fleet_usb_id)
        times["simulate"] = time.perf_counter() - t
        labels = json.loads((out / "labels.json").read_text())
        t = time.perf_counter()
        events, rejects = read_logs(out)
        times["parse"] = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    until = _ts(labels["generator"]["baseline_until"])
    base, test = events.filter(pl.col("time") < until), events.filter(pl.col("time") >= until)
    scenarios = scenarios_of(labels)

    t = time.perf_counter()
    # Configured as the utility would be: hour and weekday habits in its own time zone.
    zone = labels["generator"].get("tz", "UTC") if LOCAL_TIME else "UTC"
    model = train(base, Config(features=FeatureConfig(timezone=zone)))
    times["train"] = time.perf_counter() - t
    t = time.perf_counter()
    ours = score(test, model)
    times["score"] = time.perf_counter() - t
    units = ours_units(ours)
    pairs = match(units, scenarios)
    results = {"ours": evaluate(units, pairs, scenarios, test.height)}
    if "incident_id" in units.columns:
        incidents, inc_pairs = incident_units(units, pairs)
        results["ours (incidents)"] = evaluate(incidents, inc_pairs, scenarios, test.height)
    if baselines:
        for name, method in (("A: event IF", baseline_events), ("B: count IF", baseline_counts)):
            t = time.perf_counter()
            rows = baseline_units(method(base, test))
            times[name[0]] = time.perf_counter() - t
            results[name] = evaluate(rows, match(rows, scenarios), scenarios, test.height)
    return {"world": world, "seed": seed, "note": _settings_note(labels["generator"]), "events": events.height,
            "baseline_events": base.height, "test_events": test.height, "rejects": rejects.height,
            "n_malicious": int((~scenarios.get_column("benign")).sum()),
            "n_benign": int(scenarios.get_column("benign").sum()), "times": times, "results": results}


# --------------------------------------------------------------------------- reporting


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _benign(x: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(x["benign_max"].items())) or "n/a"


def _row(label: str, x: dict[str, Any]) -> str:
    return (f"| {label} | {_pct(x['recall'])} | {_pct(x['any_share'])} | {_pct(x['precision_any'])} | "
            f"{_pct(x['precision_mal'])} | {_pct(x['p20_any'])} | {x['per_10k']:.1f} | {x['n_medium']} | "
            f"{_benign(x)} |")


HEADER = [("| world | recall medium+ | any finding | precision | precision (malicious) | P@20 | medium+ /10k events "
          "| medium+ | benign max severity |"), "|---|---|---|---|---|---|---|---|---|"]


def report(runs: list[dict[str, Any]], verbose: bool) -> str:
    lines = [("| world | seed | settings | events (baseline / scored) | scenarios malicious (benign) | rejects "
             "| simulate s | parse s | train s | score s |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r["times"]
        lines.append(f"| {r['world']} | {r['seed']} | {r['note']} | {r['baseline_events']} / {r['test_events']} | "
                     f"{r['n_malicious']} ({r['n_benign']}) | {r['rejects']} | {t['simulate']:.1f} | "
                     f"{t['parse']:.1f} | {t['train']:.1f} | {t['score']:.1f} |")
    methods = list(dict.fromkeys(m for r in runs for m in r["results"]))
    for m in methods:
        lines += ["", f"**{m}**", "", *HEADER]
        families: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            if m in r["results"]:
                lines.append(_row(f"{r['world']} {r['seed']}", r["results"][m]))
                families[r["world"]].append(r["results"][m])
        for family, res in families.items():
            mean = {k: _mean([x[k] for x in res]) for k in
                    ("recall", "any_share", "precision_any", "precision_mal", "p20_any", "per_10k")}
            worst: dict[str, str] = {}
            for x in res:
                for kind, sev in x["benign_max"].items():
                    if SEVERITY_RANK[sev] >= SEVERITY_RANK.get(worst.get(kind, "none"), 0):
                        worst[kind] = sev
            mean |= {"n_medium": f"{_mean([x['n_medium'] for x in res]):.1f}", "benign_max": worst}
            lines.append(_row(f"**{family}: mean of {len(res)}**", mean))

    kinds: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for m in methods:
            for s in r["results"].get(m, {}).get("per_scenario", []):
                kinds[s["kind"]][m].append(s["found"])
    lines += ["", "**Recall per malicious scenario kind at medium+** (found / planted, over all worlds)", "",
              "| kind | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for kind in sorted(kinds):
        lines.append(f"| {kind} | " + " | ".join(
            f"{sum(kinds[kind][m])}/{len(kinds[kind][m])}" for m in methods) + " |")

    if verbose:
        for r in runs:
            for m in methods:
                x = r["results"].get(m)
                if not x:
                    continue
                missed = [s for s in x["per_scenario"] if not s["found"]]
                lines += ["", f"{r['world']} {r['seed']} {m}: missed " + (", ".join(
                    f"{s['kind']} ({'none' if s['best_score'] is None else format(s['best_score'], '.4f')})"
                    for s in missed) or "none")]
                for f in x["unmatched_medium"]:
                    lines.append(f"    FP {f['entity_id']:<24} {f['window_start']:%m-%d %H:%M} score={f['score']:.4f} "
                                 f"sev={SEVERITY_NAME[f['severity']]} {str(f.get('note') or '')[:110]}")
    return "\n".join(lines)


def _jsonable(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k != "unmatched_medium"}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, datetime):
            return x.isoformat()
        return x
    return clean(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utilities", type=int, nargs="*", default=None,
                        help="seeds of drawn utilities (default 1-8; --quick: 1 2)")
    parser.add_argument("--fleet", type=int, nargs="*", default=None, help="seeds of logon fleets (default 1)")
    parser.add_argument("--classic-seeds", type=int, nargs="*", default=[],
                        help="also run today's default utility (28 days, 1,500 meters, 12 operators) per seed")
    parser.add_argument("--quick", action="store_true",
                        help="small worlds: utilities of 1,000 meters, a fleet of 300 employees and 10 baseline days")
    parser.add_argument("--fleet-usb-id", choices=("user", "system"), default="user",
                        help="the fleet's 6416 carry the user's logon id (default) or SYSTEM's 0x3e7, as Windows "
                             "usually writes them (attribution then needs the PC's open sessions)")
    parser.add_argument("--no-baselines", action="store_true", help="run only ours (skip methods A and B)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--verbose", action="store_true", help="list misses and medium+ findings that match nothing")
    parser.add_argument("--utc", action="store_true", help="read hour and weekday habits in UTC (the default "
                        "config) instead of each world's own zone, as a utility would configure it")
    args = parser.parse_args(argv)
    global LOCAL_TIME
    LOCAL_TIME = not args.utc
    utilities = args.utilities if args.utilities is not None else ([1, 2] if args.quick else list(range(1, 9)))
    fleets = args.fleet if args.fleet is not None else [1]
    plan = [("utility", s) for s in utilities] + [("classic", s) for s in args.classic_seeds] + [
        ("fleet", s) for s in fleets]
    runs = []
    began_all = time.perf_counter()
    for world, seed in plan:
        began = time.perf_counter()
        runs.append(run_world(world, seed, quick=args.quick, baselines=not args.no_baselines,
                              fleet_usb_id=args.fleet_usb_id))
        runs[-1]["times"]["total"] = time.perf_counter() - began
        print(f"{world} {seed}: done in {runs[-1]['times']['total']:.1f} s", file=sys.stderr)
    print(report(runs, args.verbose))
    print(f"\nTotal {time.perf_counter() - began_all:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps(_jsonable(runs), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
