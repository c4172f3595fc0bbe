"""Make docs/report.png: a real scan of sample_logs/, its report, and a screenshot by headless Chromium.

    python scripts/report_screenshot.py                 # writes docs/report.png (1280 x 3000)
    python scripts/report_screenshot.py --measure       # also prints the page's height at 1,280 px

Needs Chromium from the system packages (``apt-get install chromium``); nothing else uses this
script (not the tests, not CI). It runs ``ami-detector scan`` and ``ami-detector report`` as a user
would. When the scan's findings carry no ``incident_id`` yet (before the incident grouping of the
detection stage), ``--group-by-entity`` groups each entity's findings that are less than 12 hours apart
into one incident, so that the picture shows the incident layout; the README caption says which.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def group_by_entity(findings_dir: Path, gap: timedelta = timedelta(hours=12)) -> int:
    """Give findings an ``incident_id``: one per entity and run of windows less than *gap* apart."""
    path = findings_dir / "findings.parquet"
    frame = pl.read_parquet(path)
    if "incident_id" in frame.columns:
        return 0
    by = ["entity_kind", "entity_id"]
    ordered = frame.with_row_index("_row").sort(*by, "window_start")
    split = (pl.col("window_start") - pl.col("window_end").shift(1).over(by)) > gap
    grouped = ordered.with_columns(_part=split.fill_null(True).cast(pl.Int32).cum_sum().over(by)).with_columns(
        incident_id=pl.concat_str([pl.lit("demo"), pl.col("entity_kind"), pl.col("entity_id"),
                                   pl.col("_part").cast(pl.String)], separator="-"))
    grouped.sort("_row").drop("_row", "_part").write_parquet(path)
    return grouped.get_column("incident_id").n_unique()


def screenshot(page: Path, png: Path, width: int, height: int, chromium: str) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size={width},{height}", page.resolve().as_uri()],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)


def page_size(page: Path, width: int, chromium: str) -> tuple[int, int]:
    """The page's height and its body's scroll width in CSS pixels in a window *width* wide.

    Measured on a copy of the page with its Content-Security-Policy taken out and one line of script
    added that puts ``scrollHeight`` in the title (``--dump-dom`` prints the DOM after it ran). The
    report itself never carries a script.
    """
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1)
    text = text.replace("</body>", "<script>document.title='height='+document.documentElement.scrollHeight+"
                                   "' width='+document.body.scrollWidth</script></body>")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, \
            tempfile.NamedTemporaryFile("w", suffix=".html", encoding="utf-8", dir=page.parent) as copy:
        copy.write(text)
        copy.flush()
        dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              f"--window-size={width},900", Path(copy.name).as_uri()],
                             check=True, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r"<title>height=(\d+) width=(\d+)</title>", dom)
    return (int(found.group(1)), int(found.group(2))) if found else (-1, -1)


def _shrink(png: Path) -> None:
    """256 colours are plenty for a page of text: a third of the bytes in the repository."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=ROOT / "sample_logs")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--display-tz", default="America/Chicago")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--no-group-by-entity", dest="group", action="store_false",
                        help="Show the scan's findings as they are (each its own incident without incident ids).")
    parser.add_argument("--measure", action="store_true", help="Print the report's size and height at --width.")
    parser.add_argument("--keep", type=Path, help="Keep the scan's output directory here.")
    args = parser.parse_args()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("needs Chromium: apt-get install chromium", file=sys.stderr)
        return 2
    cli = [sys.executable, "-c", "from detector.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        out = args.keep or Path(tmp) / "scan"
        # Run from the repository, so that evidence reads sample_logs/...:LINE as a user's would.
        logs = args.logs.resolve()
        shown = logs.relative_to(ROOT) if logs.is_relative_to(ROOT) else logs
        scan = subprocess.run([*cli, "scan", str(shown), "--model", str(args.model), "--out", str(out),
                               "--display-tz", args.display_tz, "--quiet"], check=False, cwd=ROOT)
        if scan.returncode not in (0, 1):  # 1: findings at the alert severity, as expected here
            return scan.returncode
        if args.group:
            incidents = group_by_entity(out)
            if incidents:
                print(f"grouped the findings into {incidents} incidents by entity (12 h gap)", file=sys.stderr)
        report = subprocess.run([*cli, "report", str(out), "--display-tz", args.display_tz, "--quiet", "--title",
                                 f"ami-detector findings: {args.logs.name}/"], check=False)
        if report.returncode not in (0, 1):  # 1: the findings hold alerts, as for scan
            return report.returncode
        page = out / "report.html"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, args.out, args.width, args.height, chromium)
        _shrink(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
        if args.measure:
            height, wide = page_size(page, args.width, chromium)
            print(f"report.html: {page.stat().st_size:,} bytes, {height:,} px high and {wide:,} px wide "
                  f"in a {args.width} px window")
    return 0


if __name__ == "__main__":
    sys.exit(main())
