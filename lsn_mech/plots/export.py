"""Figure files that open anywhere: the one place lsn_mech writes a plotly figure to disk.

* ``stem.html`` loads plotly.js from ``plotly.min.js`` beside it (written once per folder),
  never from a CDN, so a report folder opens offline; a folder of ten figures carries
  one 4.6 MB copy of plotly.js instead of ten. ``self_contained=True`` embeds it instead,
  for a single file to mail around.
* ``stem.png`` (and ``stem.svg`` on request) through plotly's kaleido exporter, which
  drives an installed Chrome or Chromium, so that Markdown reports, GitHub and notebooks
  show the figure without running JavaScript. Where no exporter works, the images are
  skipped and the process is told once how to get them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "HTML_RENDERER",
    "IMAGES_FIX",
    "PLOTLY_JS",
    "PNG_RENDERER",
    "SavedFigure",
    "StaticImagesSkippedWarning",
    "notebook_figures",
    "remote_scripts",
    "save_figure",
    "save_figures",
    "skipped_images_message",
    "static_images_available",
    "static_images_problem",
]

PLOTLY_JS = "plotly.min.js"
"""The file name of the plotly.js bundle the HTML figures of a folder share."""

IMAGES_FIX = (
    "pip install 'lsn-mech[images]' and install Chrome or Chromium "
    "(Debian/Ubuntu: apt-get install chromium; or set BROWSER_PATH to its executable)"
)
"""What a user installs to get PNG/SVG figures."""

BROWSER_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "msedge",
    "microsoft-edge",
)
"""Executables kaleido can drive, looked up on ``PATH`` (kaleido's own list is longer;
``BROWSER_PATH`` names any other)."""


class StaticImagesSkippedWarning(UserWarning):
    """Figures were written as HTML only: no static image exporter works here."""


@dataclasses.dataclass(frozen=True)
class SavedFigure:
    """The files one figure was written to; ``png``/``svg`` are None where skipped."""

    html: Path
    png: Path | None = None
    svg: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """Every file written, HTML first."""
        return [p for p in (self.html, self.png, self.svg) if p is not None]


# ----------------------------------------------------------------- is an exporter here?

_problem: str | None = None
_checked = False
_told = False
_lock = threading.Lock()


def _kaleido_problem() -> str | None:
    if importlib.util.find_spec("kaleido") is None:
        return "plotly's static exporter kaleido is not installed"
    version = importlib.metadata.version("kaleido")
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 1:
        return f"kaleido {version} is installed, but lsn_mech needs kaleido 1.0 or newer"
    return None


def browser_path() -> str | None:
    """The Chrome or Chromium executable kaleido would drive: ``BROWSER_PATH`` when set
    (None when it names nothing), else the first of `BROWSER_NAMES` on ``PATH``. The tests
    and benchmarks that screenshot pages use the same one."""
    named = os.environ.get("BROWSER_PATH")
    if named:
        return named if Path(named).exists() else None
    return next(filter(None, map(shutil.which, BROWSER_NAMES)), None)


def _browser_problem() -> str | None:
    if browser_path() is not None:
        return None
    named = os.environ.get("BROWSER_PATH")
    if named:
        return f"BROWSER_PATH={named} does not exist"
    return "no Chrome or Chromium was found for kaleido to drive"


def static_images_problem() -> str | None:
    """Why PNG/SVG figures cannot be written here, or None when they can.

    Cheap (no browser is started) and cached for the process; an export that then fails
    anyway (a browser that does not start) replaces the answer with its error.
    """
    global _problem, _checked
    with _lock:
        if not _checked:
            _problem = _kaleido_problem() or _browser_problem()
            _checked = True
        return _problem


def static_images_available() -> bool:
    """Whether `save_figure` can write PNG/SVG images here (see `static_images_problem`)."""
    return static_images_problem() is None


def _mark_unavailable(problem: str) -> None:
    global _problem, _checked
    with _lock:
        _problem, _checked = problem, True


def _reset_for_tests() -> None:
    """Forget the cached answer and the one-time message (tests monkeypatch both)."""
    global _problem, _checked, _told
    with _lock:
        _problem, _checked, _told = None, False, False


def skipped_images_message(problem: str) -> str:
    """The one line that says images were skipped, why, and how to get them."""
    return f"static images (PNG) of figures were skipped: {problem}. To get them: {IMAGES_FIX}."


def _tell_once(problem: str) -> None:
    global _told
    with _lock:
        if _told:
            return
        _told = True
    warnings.warn(
        skipped_images_message(problem) + " The interactive .html figures open offline.",
        StaticImagesSkippedWarning,
        stacklevel=4,
    )


# --------------------------------------------------------------------- rendering


def _figure_json(figure: Any) -> dict[str, Any]:
    """The figure as plain JSON data (numpy arrays become lists, as plotly encodes them)."""
    import plotly.io as pio

    return json.loads(figure.to_json() if hasattr(figure, "to_json") else pio.to_json(figure))


def _size(figure: dict[str, Any]) -> tuple[int, int]:
    """The figure's own layout size, else plotly's default (700 × 500)."""
    layout = figure.get("layout", {})
    return int(layout.get("width") or 700), int(layout.get("height") or 500)


def _in_own_thread(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a fresh thread: its ``asyncio.run`` then works under Jupyter too,
    whose own event loop is already running in the main thread."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=run, name="lsn-mech-figure-export")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _render(jobs: list[tuple[dict[str, Any], str]]) -> list[bytes]:
    """Each ``(figure JSON, format)`` as image bytes, all from one browser start (a
    browser start is most of the ~2 s an image costs). MathJax is off: it would be
    fetched from a CDN, and no lsn_mech figure uses LaTeX."""
    import kaleido

    async def render() -> list[bytes]:
        async with kaleido.Kaleido(mathjax=False) as exporter:
            images = []
            for figure, kind in jobs:
                width, height = _size(figure)
                options = {"format": kind, "width": width, "height": height, "scale": 1}
                images.append(await exporter.calc_fig(figure, opts=options))
            return images

    return _in_own_thread(lambda: asyncio.run(render()))


def _exporter_failures() -> tuple[type[BaseException], ...]:
    """Errors of the exporter itself: a browser that is missing, fails to start, dies or
    times out, or a render page whose scripts were not ready (kaleido's JavascriptError
    "kaleido_scopes is not defined", seen under heavy load). Bugs elsewhere (a
    ZeroDivisionError, a figure that does not serialise) are not among them and raise."""
    failures: list[type[BaseException]] = [ImportError, TimeoutError, OSError, RuntimeError]
    try:
        from kaleido import errors

        failures += [errors.KaleidoError, errors.BrowserFailedError, errors.BrowserClosedError]
    except ImportError:
        pass
    return tuple(failures)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'…' if len(text) > 160 else ''}"


def _static_images(jobs: list[tuple[dict[str, Any], str]]) -> list[bytes] | None:
    """Rendered images, or None (after the one-time message) where no exporter works.

    A failed render is tried once more with a fresh browser (a loaded machine can fail
    one start); two failures in a row turn images off for the process, with the error in
    the message, instead of failing the job that drew the figures.
    """
    problem = static_images_problem()
    if problem is None:
        failures = _exporter_failures()
        try:
            return _render(jobs)
        except failures:
            pass
        try:
            return _render(jobs)
        except failures as error:
            problem = f"kaleido failed twice ({_short(error)})"
            _mark_unavailable(problem)
    _tell_once(problem)
    return None


# ------------------------------------------------------------------------ writing


def _html(figure: Any, *, self_contained: bool) -> str:
    import plotly.io as pio

    return pio.to_html(
        figure,
        include_plotlyjs=True if self_contained else "directory",
        include_mathjax=False,
        full_html=True,
        config={"displaylogo": False},
    )


def _write_plotly_js(folder: Path) -> Path:
    """``folder/plotly.min.js``, the installed plotly's bundle; rewritten only when it
    differs (another plotly version wrote it), so a folder keeps one matching copy."""
    from plotly.offline import get_plotlyjs

    from lsn_mech.files import atomic_write_text  # deferred: it imports torch

    target = folder / PLOTLY_JS
    bundle = get_plotlyjs()
    if not (target.is_file() and target.read_text(encoding="utf-8") == bundle):
        atomic_write_text(target, bundle)
    return target


def save_figures(
    figures: Mapping[str, Any],
    folder: str | os.PathLike[str],
    *,
    png: bool = True,
    svg: bool = False,
    self_contained: bool = False,
) -> dict[str, SavedFigure]:
    """Write each ``{stem: figure}`` as ``folder/stem.html`` and, where a static exporter
    works, ``stem.png`` (and ``stem.svg`` with ``svg=True``), all images from one browser
    start.

    The HTML loads plotly.js from ``folder/plotly.min.js`` (written once, shared) or, with
    ``self_contained=True``, embeds it; either way no script comes from the network.
    Where no exporter works the images are skipped with one `StaticImagesSkippedWarning`
    per process that says how to get them (`IMAGES_FIX`).
    """
    from lsn_mech.files import atomic_write, atomic_write_text  # deferred: it imports torch

    target = Path(folder)
    html_paths = {}
    for stem, figure in figures.items():
        html_paths[stem] = atomic_write_text(
            target / f"{stem}.html", _html(figure, self_contained=self_contained)
        )
    if html_paths and not self_contained:
        _write_plotly_js(target)
    kinds = [kind for kind, wanted in (("png", png), ("svg", svg)) if wanted]
    jobs = [(_figure_json(figure), kind) for figure in figures.values() for kind in kinds]
    images = _static_images(jobs) if jobs else None
    saved = {}
    rendered = iter(images or [])
    for stem in figures:
        paths: dict[str, Path] = {}
        if images is not None:
            for kind in kinds:
                data = next(rendered)
                paths[kind] = atomic_write(
                    target / f"{stem}.{kind}", lambda temporary, d=data: _write_bytes(temporary, d)
                )
        saved[stem] = SavedFigure(html_paths[stem], paths.get("png"), paths.get("svg"))
    return saved


def _write_bytes(path: Path, data: bytes | str) -> None:
    if isinstance(data, str):  # kaleido returns SVG as text in some versions
        data = data.encode("utf-8")
    path.write_bytes(data)


def save_figure(
    figure: Any,
    stem: str | os.PathLike[str],
    *,
    png: bool = True,
    svg: bool = False,
    self_contained: bool = False,
) -> list[Path]:
    """Write ``stem.html`` (opens offline) and, where an exporter works, ``stem.png``
    (``stem.svg`` with ``svg=True``); return the paths written, HTML first. One figure of
    `save_figures`: prefer that for several, which starts the browser once."""
    path = Path(stem)
    saved = save_figures(
        {path.name: figure}, path.parent, png=png, svg=svg, self_contained=self_contained
    )
    return saved[path.name].paths


# ---------------------------------------------------------------------- notebooks


def _png_renderer() -> Any:
    """A plotly renderer that shows a figure as ``image/png`` made by `_render` (one
    browser per figure, MathJax off, one retry), or as one line of text where that fails."""
    import base64

    from plotly.io.base_renderers import MimetypeRenderer

    class PngRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
            images = _static_images([(_figure_json(fig_dict), "png")])
            if images is None:
                return {"text/plain": f"(figure not shown: {static_images_problem()})"}
            return {"image/png": base64.b64encode(images[0]).decode("ascii")}

    return PngRenderer()


def _html_renderer() -> Any:
    """plotly's "notebook" renderer (plotly.js embedded once in the notebook) without the
    MathJax script it loads from a CDN for every figure."""
    import plotly.io as pio
    from plotly.io.base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
            page = pio.to_html(
                fig_dict,
                config=self.config,
                auto_play=self.auto_play,
                include_plotlyjs=self.include_plotlyjs,
                include_mathjax=False,
                full_html=False,
                animation_opts=self.animation_opts,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            return {"text/html": page}

    return OfflineNotebookRenderer()


PNG_RENDERER = "lsn_mech_png"
"""The name `notebook_figures` registers its PNG renderer under in ``plotly.io.renderers``."""

HTML_RENDERER = "lsn_mech_notebook"
"""The name of its interactive renderer (plotly.js embedded in the notebook, no CDN)."""


def notebook_figures(interactive: bool = False) -> str:
    """Make plotly figures in a notebook show as images that render everywhere; returns
    the renderer set as plotly's default.

    * default: ``"lsn_mech_png"``, so stored outputs carry ``image/png`` that GitHub,
      nbviewer and the docs show without JavaScript;
    * ``interactive=True``: ``"lsn_mech_notebook+lsn_mech_png"``: plotly.js embedded once
      in the notebook (nothing from a CDN) for zoom and hover, plus the PNG in the same
      output (viewers that prefer HTML, like GitHub's, may show the HTML part, which needs
      JavaScript);
    * without a static exporter: ``"lsn_mech_notebook"`` (interactive, opens offline) and
      the one-time message saying how to get images.
    """
    import plotly.io as pio

    if HTML_RENDERER not in pio.renderers:
        pio.renderers[HTML_RENDERER] = _html_renderer()
    problem = static_images_problem()
    if problem is None:
        if PNG_RENDERER not in pio.renderers:
            pio.renderers[PNG_RENDERER] = _png_renderer()
        renderer = f"{HTML_RENDERER}+{PNG_RENDERER}" if interactive else PNG_RENDERER
    else:
        renderer = HTML_RENDERER
        _tell_once(problem)
    pio.renderers.default = renderer
    return renderer


def _iter_scripts(html: str) -> Iterator[str]:
    """The ``src`` of every ``<script>`` in ``html`` (for checks that nothing is remote)."""
    for match in re.finditer(r"<script\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", html, re.I):
        yield match.group(1)


def remote_scripts(html: str) -> list[str]:
    """Script sources in ``html`` that a browser would fetch from the network."""
    return [src for src in _iter_scripts(html) if "://" in src or src.startswith("//")]
