"""MkDocs hook: the built site loads every script from itself, so it renders offline.

Two scripts would otherwise come from a CDN: MathJax, which typesets the maths that
``pymdownx.arithmatex`` marks up, and plotly.js, which the tutorials' stored figure
outputs load. Both are copied into the site from installed Python packages (MathJax from
``django-static-mathjax`` of the ``docs`` extra, plotly.js from ``plotly``, a dependency),
and the notebook pages' CDN ``<script>`` tags are pointed at those copies.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.offline_assets")

#: Where the copies live in the site (``extra_javascript`` in mkdocs.yml names the first).
MATHJAX_URI = "assets/javascripts/mathjax/tex-svg.js"
PLOTLY_URI = "assets/javascripts/plotly.min.js"

# The notebook pages' own MathJax loaders (nbconvert's template, with an empty URL here, and
# plotly's stored outputs, from a CDN); mkdocs.yml loads the local MathJax on every page.
_CDN_MATHJAX = re.compile(
    r'<script[^>]*\bsrc="(https?://[^"]*mathjax[^"]*)?"[^>]*>\s*</script>', re.I
)
_CDN_PLOTLY = re.compile(
    r'<script[^>]*\bsrc="https?://cdn\.plot\.ly/plotly-[^"]*\.js"[^>]*>\s*</script>', re.I
)


def _mathjax_source() -> Path:
    try:
        import mathjax  # django-static-mathjax: MathJax 3's files as package data
    except ImportError as error:
        raise PluginError(
            "MathJax is not installed, so the site's maths would not render offline; "
            "install the docs extra: pip install -e '.[docs]' (it brings django-static-mathjax)."
        ) from error
    path = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not path.is_file():
        raise PluginError(
            f"{path} is missing from the installed django-static-mathjax; reinstall it: "
            "pip install --force-reinstall django-static-mathjax"
        )
    return path


def _plotly_source() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise PluginError(
            f"{path} is missing; reinstall plotly: pip install --force-reinstall plotly"
        )
    return path


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the local MathJax and plotly.js to the files the site is built from."""
    for uri, source in ((MATHJAX_URI, _mathjax_source()), (PLOTLY_URI, _plotly_source())):
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files


def on_post_page(output: str, page: Page, config: MkDocsConfig) -> str:
    """Point a notebook page's CDN scripts at the site's own copies."""
    plotly = get_relative_url(PLOTLY_URI, page.url)
    # integrity/crossorigin go too: a file:// page cannot make the CORS request they ask for
    output, replaced = _CDN_PLOTLY.subn(f'<script charset="utf-8" src="{plotly}"></script>', output)
    output, dropped = _CDN_MATHJAX.subn("", output)
    if replaced or dropped:
        log.debug(
            "%s: %d plotly.js and %d MathJax CDN scripts made local", page.url, replaced, dropped
        )
    return output
