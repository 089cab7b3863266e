"""``report.html`` beside each job's ``report.md``: the same report, with its PNG figures,
for a browser opening the folder offline.

The reports are written by lsn_mech in a small Markdown subset (headings, paragraphs,
pipe tables, ``-`` lists, fenced blocks, ``>`` notes, inline code, bold, images and
links), so this renders exactly that subset rather than pulling in a Markdown package.
Everything else is shown as escaped text, never interpreted as HTML.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

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

_CODE = re.compile(r"`([^`]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    """Escape ``text`` and render code spans, images, links and bold in it."""
    parts = _CODE.split(text)  # even: prose, odd: code span contents
    out = []
    for i, part in enumerate(parts):
        escaped = html.escape(part)
        if i % 2:
            out.append(f"<code>{escaped}</code>")
            continue
        escaped = _IMAGE.sub(r'<img src="\2" alt="\1">', escaped)
        escaped = _LINK.sub(r'<a href="\2">\1</a>', escaped)
        out.append(_BOLD.sub(r"<strong>\1</strong>", escaped))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    header, *rows = [line for line in lines if not re.fullmatch(r"\|?[\s:|-]+\|?", line)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(header))
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(lines: list[str]) -> str:
    """A ``-`` list; items indented by two spaces nest one level."""
    out = ["<ul>"]
    nested = False
    for line in lines:
        inner = line.startswith("  ")
        if inner and not nested:
            out[-1] = out[-1].removesuffix("</li>")
            out.append("<ul>")
        elif not inner and nested:
            out.append("</ul></li>")
        nested = inner
        out.append(f"<li>{_inline(line.strip()[2:])}</li>")
    if nested:
        out.append("</ul></li>")
    out.append("</ul>")
    return "".join(out)


def markdown_to_html(text: str, *, title: str = "report") -> str:
    """A whole HTML page (inline style, no scripts, nothing fetched) for report Markdown."""
    lines = text.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            end = len(lines) if end is None else end
            body.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
        elif heading := re.match(r"(#{1,6}) (.*)", line):
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
        else:
            kind = _kind(line)
            j = i
            while j < len(lines) and lines[j].strip() and _kind(lines[j]) == kind:
                if j > i and (lines[j].startswith(("```", "#"))):
                    break
                j += 1
            block = lines[i:j]
            if kind == "table":
                body.append(_table(block))
            elif kind == "list":
                body.append(_list(block))
            elif kind == "quote":
                quoted = " ".join(line.lstrip(">").strip() for line in block)
                body.append(f"<blockquote><p>{_inline(quoted)}</p></blockquote>")
            else:
                body.append(f"<p>{_inline(' '.join(s.strip() for s in block))}</p>")
            i = j
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _kind(line: str) -> str:
    if line.lstrip().startswith("|"):
        return "table"
    if line.startswith("- ") or (line.startswith("  - ")):
        return "list"
    if line.startswith(">"):
        return "quote"
    if line.startswith(("```", "#")):
        return "other"
    return "paragraph"


def write_report_html(markdown_path: str | Path) -> Path:
    """Write ``report.html`` beside ``report.md`` (same name, ``.html``); its images and
    links are the Markdown's relative paths, so the folder opens offline as it is."""
    source = Path(markdown_path)
    text = source.read_text(encoding="utf-8")
    heading = next((line[2:] for line in text.splitlines() if line.startswith("# ")), source.stem)
    return atomic_write_text(source.with_suffix(".html"), markdown_to_html(text, title=heading))
