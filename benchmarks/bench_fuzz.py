"""Damage stays local: every non-blank line of a damaged export is an event or a reject.

Generates N lines per format with :mod:`bench_parse`'s generators (the same varied, mostly valid
records), then damages a share of them (default one in ten) in the ways real exports break: an
offset-less timestamp, bytes that are not UTF-8, a line cut in half, a stray double quote, a NUL
byte. Each format is parsed in a fresh interpreter **without** ``--tz`` (so a naive timestamp is a
damaged line, not a zone question) and reports lines, events, rejects and peak RSS. Not a timed
test: a check to run by hand after touching the readers or parsers.

    python benchmarks/bench_fuzz.py                          # 100k lines per format, one in ten damaged
    python benchmarks/bench_fuzz.py --lines 110000 --share 0.5 --formats winsec_jsonl
    python benchmarks/bench_fuzz.py --evtx ../shared/data/evtx/*.evtx   # EVTX files as they are

``accounted`` is events + rejects (the CSV header line is neither and is not counted in ``lines``). A
valid CSV record that spans lines (a quoted cell holding a line break) is one event for several lines;
the generated files hold none, so ``accounted`` must equal ``lines`` for every format. A broken record
that spans lines is one reject per line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_parse

FORMATS = bench_parse.FORMATS
_ISO_Z = re.compile(rb"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?)Z")
_GIB = 1024


def _damage(line: bytes, kind: int, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(0, max(1, len(line))))
    if kind == 0:  # a timestamp without its offset
        naive = _ISO_Z.sub(rb"\1", line, count=1)
        return naive if naive != line else line[:at] + b"\xff" + line[at:]
    if kind == 1:  # bytes that are not UTF-8
        return line[:at] + b"\xff\xfe" + line[at:]
    if kind == 2:  # cut off
        return line[: max(1, len(line) // 2)]
    if kind == 3:  # a stray quote
        return line[:at] + b'"' + line[at:]
    return line[:at] + b"\x00" + line[at:]  # a NUL byte


def generate(name: str, n: int, share: float, path: Path) -> None:
    clean = Path(str(path) + ".clean")
    bench_parse.generate(name, n, clean)
    rng = np.random.default_rng(FORMATS.index(name) + 100)
    lines = clean.read_bytes().split(b"\n")
    clean.unlink()
    if lines and lines[-1] == b"":
        lines.pop()
    damaged = rng.random(len(lines)) < share
    damaged[0] = name != "hes_audit_csv" and damaged[0]  # keep the CSV header
    kinds = rng.integers(0, 5, len(lines))
    out = [(_damage(line, int(k), rng) if d else line) for line, d, k in zip(lines, damaged, kinds)]
    path.write_bytes(b"\n".join(out) + b"\n")


def measure(name: str, path: Path) -> dict[str, object]:
    from detector.errors import DetectorError
    from detector.parsers import PARSERS, ParseOptions, parse_file, sniff

    parser = sniff(path) if name == "evtx" else PARSERS[name]
    events = rejects = 0
    stopped = None
    try:
        for chunk in parse_file(path, parser, ParseOptions(reference_time=bench_parse.REFERENCE)):
            events += chunk.events.height
            rejects += chunk.rejects.height
    except DetectorError as exc:
        stopped = str(exc)
    raw = path.read_bytes()
    if name == "evtx":
        lines = None
    else:
        lines = sum(1 for line in raw.split(b"\n") if line.strip()) - (name == "hes_audit_csv")
    return {"format": name, "file": path.name, "MiB": round(len(raw) / 2**20, 1), "lines": lines,
            "events": events, "rejects": rejects, "accounted": events + rejects, "stopped": stopped,
            "peak_rss_mib": round(bench_parse._peak_rss_mib())}


def _child(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.1, help="share of lines damaged (default 0.1)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--evtx", nargs="*", type=Path, default=[], help="EVTX files to read as they are")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]))))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_fuzz_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.formats:
        path = workdir / f"fuzz_{args.lines}_{args.share}_{bench_parse.FILE_NAMES[name]}"
        if not path.exists():
            generate(name, args.lines, args.share, path)
        rows.append(_child(name, str(path)))
        print(json.dumps(rows[-1]), file=sys.stderr)
    for path in args.evtx:
        rows.append(_child("evtx", str(path)))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print("| format | file | MiB | non-blank lines | events | rejects | accounted | stopped early | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        lines = "" if r["lines"] is None else f"{r['lines']:,}"
        print(f"| {r['format']} | {r['file']} | {r['MiB']} | {lines} | {r['events']:,} | {r['rejects']:,} | "
              f"{r['accounted']:,} | {r['stopped'] or 'no'} | {r['peak_rss_mib']} |")
    over = [r for r in rows if int(r["peak_rss_mib"]) >= _GIB]  # type: ignore[call-overload]
    lost = [r for r in rows if r["lines"] is not None and r["accounted"] != r["lines"]]
    if over or lost:
        print(f"FAILED: over 1 GiB: {[r['format'] for r in over]}; lines unaccounted: {[r['format'] for r in lost]}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
