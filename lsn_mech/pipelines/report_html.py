"""``report.html`` beside each job's ``report.md``: the same report, with its PNG figures,
for a browser opening the folder offline.

Rendered by python-markdown (tables, fenced code); raw HTML in the Markdown is shown as
escaped text, never interpreted, so a name in a report cannot inject a script.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from lsn_mech.files import atomic_write_text

__all__ = ["markdown_to_html", "write_report_html"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
  sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5;
  color: #1f2328; background: #fff; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f8fa; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; }
code { background: #f6f8fa; padding: 0 0.2rem; }
img { max-width: 100%; border: 1px solid #eaeef2; }
blockquote { border-left: 4px solid #d0d7de; margin: 0; padding: 0 1rem; color: #59636e; }
"""


def _converter() -> Any:
    """python-markdown with the report's extensions, and raw HTML in the text (a model id,
    a corpus line) shown as text: its HTML block and inline patterns are removed."""
    import markdown

    converter = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"])
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    return converter


def markdown_to_html(text: str, *, title: str = "report") -> str:
    """A whole HTML page (inline style, no scripts, nothing fetched) for report Markdown."""
    body = _converter().convert(text)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + body
        + "\n</body>\n</html>\n"
    )


def write_report_html(markdown_path: str | Path) -> Path:
    """Write ``report.html`` beside ``report.md`` (same name, ``.html``); its images and
    links are the Markdown's relative paths, so the folder opens offline as it is."""
    source = Path(markdown_path)
    text = source.read_text(encoding="utf-8")
    heading = next((line[2:] for line in text.splitlines() if line.startswith("# ")), source.stem)
    return atomic_write_text(source.with_suffix(".html"), markdown_to_html(text, title=heading))
