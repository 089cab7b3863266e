"""Headless Chromium for the tests that check what a person sees: screenshots of pages
opened offline (``file://``) and the DOM after their scripts ran.

One owner for finding and driving the browser, so the report, dashboard and docs tests
share it. Where no Chromium is installed the tests skip, except under CI (``CI`` set),
where ``.ci/run`` installs one and a missing browser is a failure.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from lsn_mech.plots.export import browser_path


def chromium_path() -> str | None:
    """The browser the library's figure export uses (``BROWSER_PATH`` or one on ``PATH``),
    or None when none is installed."""
    return browser_path()


def require_chromium() -> str:
    """The browser, or skip the test (fail under CI, which installs one)."""
    found = chromium_path()
    if found is None:
        message = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it, so CI must have it")
        pytest.skip(message)
    return found


def _url(page: str | Path) -> str:
    text = str(page)
    return text if "://" in text else Path(text).resolve().as_uri()


def _run(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    browser = require_chromium()
    with tempfile.TemporaryDirectory(prefix="lsn-chromium-") as profile:
        command = [
            browser,
            "--headless=new",
            "--no-sandbox",  # tests run as root in CI
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            *arguments,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def screenshot(
    page: str | Path,
    output: str | Path,
    *,
    width: int = 1200,
    height: int = 900,
    wait_ms: int = 5000,
    timeout: float = 120.0,
) -> Path:
    """A PNG screenshot of ``page`` (a file path or URL) after ``wait_ms`` of virtual time
    for its scripts; raises AssertionError when Chromium wrote none."""
    target = Path(output)
    result = _run(
        [
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={target}",
            _url(page),
        ],
        timeout,
    )
    assert target.exists() and target.stat().st_size > 0, result.stderr[-2000:]
    return target


def rendered_dom(page: str | Path, *, wait_ms: int = 5000, timeout: float = 120.0) -> str:
    """The page's DOM (HTML text) after its scripts ran for ``wait_ms`` of virtual time."""
    result = _run([f"--virtual-time-budget={wait_ms}", "--dump-dom", _url(page)], timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def distinct_colours(png: str | Path, *, step: int = 4) -> int:
    """How many distinct colours a PNG has (sampled every ``step`` pixels): a blank page
    has one or two, a chart or a table many."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        pixels = rgb.load()
        return len({pixels[x, y] for x in range(0, width, step) for y in range(0, height, step)})


def non_background_fraction(png: str | Path, *, step: int = 4) -> float:
    """The share of sampled pixels that differ from the most common colour (the page's
    background): near 0 for a blank page."""
    from collections import Counter

    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        width, height = rgb.size
        pixels = rgb.load()
        counts = Counter(
            pixels[x, y] for x in range(0, width, step) for y in range(0, height, step)
        )
    total = sum(counts.values())
    return 1.0 - counts.most_common(1)[0][1] / total


def assert_not_blank(png: str | Path, *, min_colours: int = 8, min_ink: float = 0.01) -> None:
    """Fail when a screenshot is (nearly) one colour: the page did not render."""
    colours = distinct_colours(png)
    ink = non_background_fraction(png)
    assert colours >= min_colours and ink >= min_ink, (
        f"{png} looks blank: {colours} colours, {ink:.2%} of pixels off the background"
    )
