"""Does a report folder show its figures offline? Opens every page of it in headless
Chromium from disk and prints one row per file.

    python benchmarks/check_report_offline.py lsn_runs/lape [--shots shots/]

* each figure ``*.html``: no script from the network, plotly.js ran (the DOM has plotly's
  ``main-svg``), and a screenshot is not blank;
* ``report.html``: no script from the network, every ``<img>`` it shows exists, and a
  screenshot is not blank;
* each ``*.png``: a real PNG that is not blank;
* ``report.md``: every image it embeds exists.

Screenshots go to ``--shots`` (default: a temporary folder, printed). Exits 1 when any row
fails. Chromium: ``apt-get install chromium`` (or ``BROWSER_PATH=/path``).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

# tests/browser.py owns driving Chromium; this script reuses it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import (
    chromium_path,
    distinct_colours,
    non_background_fraction,
    rendered_dom,
    screenshot,
)

from lsn_mech.plots.export import PLOTLY_JS, remote_scripts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_COLOURS = 8
MIN_INK = 0.01


def _looks_drawn(png: Path) -> tuple[bool, str]:
    colours, ink = distinct_colours(png), non_background_fraction(png)
    return colours >= MIN_COLOURS and ink >= MIN_INK, f"{colours} colours, {ink:.1%} ink"


def check_html(page: Path, shots: Path) -> tuple[bool, str]:
    """A figure page or report.html, opened from disk."""
    text = page.read_text(encoding="utf-8")
    remote = remote_scripts(text)
    if remote:
        return False, f"loads scripts from the network: {', '.join(remote)}"
    problems = []
    dom = rendered_dom(page)
    if page.name == "report.html":
        images = re.findall(r'<img[^>]* src="([^"]+)"', dom)
        missing = [src for src in images if not (page.parent / src).is_file()]
        if missing:
            problems.append(f"missing images {missing}")
        detail = f"{len(images)} images"
        size = (1100, 2400)
    else:
        drawn = 'class="main-svg"' in dom
        if not drawn:
            problems.append("plotly.js did not draw (no main-svg)")
        detail = "plotly drawn" if drawn else "not drawn"
        size = (1000, 800)
    shot = screenshot(page, shots / f"{page.stem}.png", width=size[0], height=size[1])
    drawn_ok, ink = _looks_drawn(shot)
    if not drawn_ok:
        problems.append("blank screenshot")
    return not problems, "; ".join([detail, ink, *problems])


def check_png(image: Path) -> tuple[bool, str]:
    if not image.read_bytes().startswith(PNG_MAGIC):
        return False, "not a PNG"
    ok, ink = _looks_drawn(image)
    return ok, ink + ("" if ok else "; blank")


def check_markdown(report: Path) -> tuple[bool, str]:
    text = report.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    missing = [src for src in images if not (report.parent / src).is_file()]
    skipped = "images were skipped" in text
    detail = f"{len(images)} images embedded" + ("; says images were skipped" if skipped else "")
    return not missing, detail + (f"; missing {missing}" if missing else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a job's output folder, e.g. lsn_runs/lape")
    parser.add_argument("--shots", type=Path, default=None, help="where screenshots go")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        print("no Chromium found: apt-get install chromium (or set BROWSER_PATH)")
        return 2
    folder: Path = args.folder
    shots = args.shots or Path(tempfile.mkdtemp(prefix="lsn-report-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, bool, str]] = []
    if (folder / "report.md").is_file():
        rows.append(("report.md", "markdown", *check_markdown(folder / "report.md")))
    pages = sorted(folder.glob("*.html"), key=lambda p: (p.name != "report.html", p.name))
    for page in pages:
        kind = "report" if page.name == "report.html" else "figure html"
        rows.append((page.name, kind, *check_html(page, shots)))
    for image in sorted(folder.glob("*.png")):
        rows.append((image.name, "figure png", *check_png(image)))
    if not pages:
        rows.append(("(no .html)", "-", False, f"no HTML pages in {folder}"))
    if any(p.name != "report.html" for p in pages) and not (folder / PLOTLY_JS).is_file():
        rows.append((PLOTLY_JS, "script", False, "missing beside the figures"))

    width = max(len(name) for name, *_ in rows)
    print(f"{'file':<{width}}  {'kind':<11}  {'status':<6}  detail")
    for name, kind, ok, detail in rows:
        print(f"{name:<{width}}  {kind:<11}  {'ok' if ok else 'FAIL':<6}  {detail}")
    failed = sum(not ok for _, _, ok, _ in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} ok; screenshots in {shots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
