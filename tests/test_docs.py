"""The documentation site builds in strict mode (broken links, bad docstrings fail), loads
nothing from the network, and its pages show their maths and figures offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Tags and the attribute with which each makes the browser fetch something.
FETCHING = {
    "script": "src",
    "link": "href",
    "img": "src",
    "iframe": "src",
    "source": "src",
    "video": "src",
    "audio": "src",
    "embed": "src",
    "object": "data",
}
#: ``<link rel=...>`` kinds that the browser loads with the page.
LOADED_LINKS = {"stylesheet", "icon", "preload", "modulepreload", "manifest", "apple-touch-icon"}
#: Pages the browser test opens: one with maths, one with measured figures, a tutorial.
MATHS_PAGE = "landermt/index.html"
FIGURE_PAGE = "lape/index.html"
TUTORIAL_PAGE = "tutorials/01_language_specific_neurons/index.html"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once for this module (about 10 s), strictly."""
    pytest.importorskip("mkdocs", reason="install the docs extra: pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


class _Fetches(HTMLParser):
    """Collects (tag, URL) for every resource a page makes the browser fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attribute = FETCHING.get(tag)
        values = dict(attrs)
        relations = set(str(values.get("rel") or "").split())
        if tag == "link" and not relations & LOADED_LINKS:
            return  # rel="prev", "next", "canonical": links to follow, not resources
        if attribute and values.get(attribute):
            self.found.append((tag, str(values[attribute])))
        if tag in ("img", "source") and values.get("srcset"):
            for candidate in str(values["srcset"]).split(","):
                self.found.append((tag, candidate.strip().split(" ")[0]))


def fetched_urls(page: Path) -> list[tuple[str, str]]:
    parser = _Fetches()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.found


def _is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https")


def test_docs_build_strict(built_site: Path) -> None:
    assert (built_site / "index.html").exists()


def test_built_site_loads_nothing_from_the_network(built_site: Path) -> None:
    pages = sorted(built_site.rglob("*.html"))
    assert len(pages) > 20
    remote = [
        f"{page.relative_to(built_site)}: <{tag}> {url}"
        for page in pages
        for tag, url in fetched_urls(page)
        if _is_remote(url)
    ]
    assert not remote, "resources from the network (the site must render offline):\n" + "\n".join(
        remote[:20]
    )
    css_remote = [
        f"{sheet.relative_to(built_site)}: {match}"
        for sheet in built_site.rglob("*.css")
        for match in re.findall(
            r"(?:url\(|@import)\s*['\"]?(?:https?:)?//[^)'\";]*", sheet.read_text()
        )
    ]
    assert not css_remote, css_remote[:20]


def test_every_local_resource_of_a_page_is_in_the_site(built_site: Path) -> None:
    """Scripts (MathJax, plotly.js), stylesheets and images resolve to built files."""
    missing = []
    for page in sorted(built_site.rglob("*.html")):
        if page.name == "404.html":
            continue  # its URLs are absolute: it is served from the server's root
        for tag, url in fetched_urls(page):
            parts = urlsplit(url)
            if _is_remote(url) or parts.scheme or not parts.path:
                continue  # data: URIs and fragments fetch nothing from the site
            if not (page.parent / unquote(parts.path)).is_file():
                missing.append(f"{page.relative_to(built_site)}: <{tag}> {url}")
    assert not missing, "\n".join(missing[:20])


def test_maths_and_figures_are_wired_into_the_pages(built_site: Path) -> None:
    """The maths page loads the local MathJax after its settings; the method pages embed
    their measured figures as images."""
    scripts = [url for tag, url in fetched_urls(built_site / MATHS_PAGE) if tag == "script"]
    config = next(i for i, url in enumerate(scripts) if url.endswith("mathjax-config.js"))
    mathjax = next(i for i, url in enumerate(scripts) if url.endswith("mathjax/tex-svg.js"))
    assert config < mathjax
    assert (built_site / MATHS_PAGE).read_text(encoding="utf-8").count('class="arithmatex"') >= 2
    for page in ("lape", "landermt", "transfer"):
        images = [
            url
            for tag, url in fetched_urls(built_site / page / "index.html")
            if tag == "img" and url.endswith(".png")
        ]
        assert len(images) >= 2, (page, images)
        for url in images:
            image = built_site / page / unquote(url)
            assert 10_000 < image.stat().st_size < 400_000, (image, image.stat().st_size)


# ---------------------------------------------------------------- in a real browser

_IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  const sizes = Array.from(document.images).map((image) => image.naturalWidth);
  document.body.setAttribute("data-image-widths", sizes.join(","));
});
</script>"""


def _decoded_image_widths(page: Path, probe: Path) -> list[int]:
    """The decoded width of every image of ``page`` in headless Chromium (0: not loaded),
    read through a copy of the page with a probe script; the copy lies outside the site,
    its <base> resolving the page's relative URLs."""
    from browser import rendered_dom

    html = page.read_text(encoding="utf-8")
    base = f'<head><base href="{page.parent.as_uri()}/">'
    probe.write_text(
        html.replace("<head>", base, 1).replace("</body>", _IMAGE_PROBE + "</body>", 1),
        encoding="utf-8",
    )
    widths = re.search(r'data-image-widths="([0-9,]*)"', rendered_dom(probe))
    assert widths, "the probe did not run"
    return [int(w) for w in widths.group(1).split(",") if w]


@pytest.mark.slow
def test_pages_render_offline_in_chromium(built_site: Path, tmp_path: Path) -> None:
    """Opened from disk, with no network: the maths is typeset, the measured figures load
    and a tutorial page (with its stored figures) is not blank."""
    from browser import assert_not_blank, rendered_dom, screenshot

    maths_page = built_site / MATHS_PAGE
    formulas = maths_page.read_text(encoding="utf-8").count('class="arithmatex"')
    maths = rendered_dom(maths_page)
    assert maths.count("<mjx-container") == formulas, "MathJax left formulas untypeset"
    assert "data-mjx-error" not in maths and "<mjx-merror" not in maths

    # the figure page: every measured figure it references decodes
    figure_page = built_site / FIGURE_PAGE
    decoded = _decoded_image_widths(figure_page, tmp_path / "figure-probe.html")
    expected = sum(1 for tag, _ in fetched_urls(figure_page) if tag == "img")
    assert len(decoded) == expected and expected >= 2
    assert all(w > 100 for w in decoded), f"images that did not load: widths {decoded}"

    assert_not_blank(screenshot(figure_page, tmp_path / "figure-page.png"))

    # the tutorial: its stored PNG figures decode, and any plotly figure draws with the
    # site's own plotly.js
    tutorial = built_site / TUTORIAL_PAGE
    notebook = ROOT / "tutorials" / (Path(TUTORIAL_PAGE).parent.name + ".ipynb")
    stored_pngs = notebook.read_text(encoding="utf-8").count('"image/png"')
    widths = _decoded_image_widths(tutorial, tmp_path / "tutorial-probe.html")
    assert sum(1 for w in widths if w > 100) >= stored_pngs >= 1, (
        f"{stored_pngs} stored PNG figures, decoded image widths {widths}"
    )
    figures = len(re.findall(r'class="plotly-graph-div"', tutorial.read_text(encoding="utf-8")))
    drawn = rendered_dom(tutorial, wait_ms=8000).count('class="main-svg"')
    assert drawn >= figures, f"{drawn} plotly figures drawn of {figures}"
    assert_not_blank(screenshot(tutorial, tmp_path / "tutorial.png"))
