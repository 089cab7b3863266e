"""How lsn_mech objects look in a notebook: the one owner of their HTML.

Every result, neuron set and statistics object shows itself (``_repr_html_``) as a
one-line summary over a compact table: at most `MAX_ROWS` rows, then a line that says
how many more there are. Matrix-shaped results colour their cells: the colours are
computed here in Python (pandas' ``Styler.background_gradient`` would need matplotlib,
which lsn_mech does not depend on), sequential for counts and shares, diverging around a
centre (0 for log ratios and differences) for changes. Every text is HTML-escaped.

```python
table = Table(["language", "0", "1"], [["fr", 3, 0], ["es", 1, 2]], heat=numeric_heat(rows))
html = render("LanguageNeurons (lape)", "2 languages, 6 neurons", table)
```
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_ROWS = 20
"""Rows a notebook table shows before "… N more rows" (``to_pandas()`` has them all)."""

MAX_CELL_CHARS = 80
"""Longer texts (prompts, generations) are cut with "…" in the notebook view."""

RGB = tuple[int, int, int]
Heat = float | int | None
"""The number a cell's colour encodes, or ``None`` for an uncoloured cell."""

SEQUENTIAL: tuple[RGB, ...] = ((247, 251, 255), (107, 174, 214), (8, 48, 107))
"""Light to dark blue: the smallest value is lightest, the largest darkest."""

DIVERGING: tuple[RGB, ...] = ((33, 102, 172), (247, 247, 247), (178, 24, 43))
"""Blue below the centre, near-white at it, red above it."""


@dataclasses.dataclass(frozen=True)
class Table:
    """A table to show: its header, its rows and, optionally, the colour of its cells.

    ``heat`` has one entry per cell of ``rows`` (same shape): the number its background
    encodes, or ``None`` for an uncoloured cell (labels, the diagonal of an overlap
    matrix). ``diverging`` centres the scale on ``center`` (blue below, red above);
    otherwise it runs from the smallest to the largest value. ``legend`` says what the
    colour means; ``label_columns`` leading columns are row labels (left-aligned, bold).
    """

    header: Sequence[Any]
    rows: Sequence[Sequence[Any]]
    heat: Sequence[Sequence[Heat]] | None = None
    diverging: bool = False
    center: float = 0.0
    legend: str = ""
    label_columns: int = 1
    max_rows: int = MAX_ROWS


def is_number(value: Any) -> bool:
    """A real, finite number (not a bool): what a heat cell can encode."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def numeric_heat(rows: Sequence[Sequence[Any]], *, first_column: int = 1) -> list[list[Heat]]:
    """A heat grid of ``rows``: each number from ``first_column`` on, ``None`` elsewhere."""
    return [
        [float(v) if i >= first_column and is_number(v) else None for i, v in enumerate(row)]
        for row in rows
    ]


def _mix(stops: Sequence[RGB], t: float) -> RGB:
    """The colour at ``t`` in [0, 1] along evenly spaced ``stops`` (linear in RGB)."""
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    frac = t - i
    a, b = stops[i], stops[i + 1]
    return (
        round(a[0] + (b[0] - a[0]) * frac),
        round(a[1] + (b[1] - a[1]) * frac),
        round(a[2] + (b[2] - a[2]) * frac),
    )


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def cell_colours(
    values: Sequence[Sequence[Heat]], *, diverging: bool = False, center: float = 0.0
) -> list[list[str | None]]:
    """Background colours (``"#rrggbb"``) for a heat grid; ``None`` cells stay uncoloured.

    Sequential: the smallest value gets `SEQUENTIAL`'s first colour, the largest its
    last (all equal: the first). Diverging: ``center`` gets the middle colour and the
    value farthest from it the end colour on its side, so equal distances below and
    above the centre get equally strong colours.
    """
    numbers = [float(v) for row in values for v in row if v is not None and math.isfinite(v)]
    low, high = min(numbers, default=0.0), max(numbers, default=0.0)
    reach = max(abs(high - center), abs(low - center))

    def position(v: float) -> float:
        if diverging:
            return 0.5 if reach == 0 else 0.5 + 0.5 * (v - center) / reach
        return 0.0 if high == low else (v - low) / (high - low)

    stops = DIVERGING if diverging else SEQUENTIAL
    return [
        [
            _hex(_mix(stops, position(float(v)))) if v is not None and math.isfinite(v) else None
            for v in row
        ]
        for row in values
    ]


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``"#rrggbb"``)."""
    r, g, b = (int(background[i : i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#000000" if luminance > 0.45 else "#ffffff"


def format_cell(value: Any) -> str:
    """A cell's text: 4 significant digits for floats, lists joined, long texts cut."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return f"{value:.0f}"
        return f"{value:.4g}"
    text = " | ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


STYLE = (
    "<style>.lsn-mech table{border-collapse:collapse;font-size:12px}"
    ".lsn-mech th,.lsn-mech td{padding:2px 6px;border:1px solid #ddd;text-align:right}"
    ".lsn-mech .label{text-align:left;font-weight:bold}"
    ".lsn-mech .more{text-align:left;font-style:italic}"
    ".lsn-mech .legend{margin:2px 0;font-size:11px;color:#555}</style>"
)
"""Shared cell styles, scoped to the ``lsn-mech`` block; each cell's colour is inline."""


def table_html(table: Table) -> str:
    """``table`` as an HTML ``<table>``: the first ``max_rows`` rows, a "… N more rows"
    line if there are more, cells coloured by ``heat`` (over all rows, not only those
    shown, so the scale does not change with ``max_rows``) and the legend below."""
    colours = (
        cell_colours(table.heat, diverging=table.diverging, center=table.center)
        if table.heat is not None
        else None
    )
    label = ' class="label"'
    head = "".join(
        f"<th{label if i < table.label_columns else ''}>{html.escape(str(name))}</th>"
        for i, name in enumerate(table.header)
    )
    lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    shown = list(table.rows)[: max(table.max_rows, 0)]
    for r, row in enumerate(shown):
        cells = []
        for i, value in enumerate(row):
            attributes = label if i < table.label_columns else ""
            background = colours[r][i] if colours is not None and i < len(colours[r]) else None
            if background is not None:
                attributes += (
                    f' style="background-color:{background};color:{text_colour(background)}"'
                )
            cells.append(f"<td{attributes}>{html.escape(format_cell(value))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    hidden = len(table.rows) - len(shown)
    if hidden > 0:
        lines.append(
            f'<tr><td class="more" colspan="{max(len(table.header), 1)}">'
            f"… {plural(hidden, 'more row')} (to_pandas() has them all)"
            "</td></tr>"
        )
    lines.append("</tbody></table>")
    if table.legend:
        lines.append(f'<p class="legend">{html.escape(table.legend)}</p>')
    return "\n".join(lines)


def title_of(kind: str, provenance: Any = None) -> str:
    """``"PPLChangeMatrix (ppl_change_matrix, model gemma-3-270m, corpus bible)"``: the
    class and what its provenance records of where it came from."""
    facts = []
    method = getattr(provenance, "method", None)
    if method:
        facts.append(str(method))
    for label, name in (("model", "model_id"), ("corpus", "corpus")):
        value = getattr(provenance, name, None)
        if value:
            facts.append(f"{label} {value}")
    return kind + (f" ({', '.join(facts)})" if facts else "")


def render(title: str, summary: str, table: Table | None = None) -> str:
    """The notebook view: ``title`` in bold and ``summary`` on one line, then ``table``."""
    line = f"<b>{html.escape(title)}</b>" + (f": {html.escape(summary)}" if summary else "")
    parts = ['<div class="lsn-mech">', STYLE, f'<p style="margin:2px 0">{line}</p>']
    if table is not None:
        parts.append(table_html(table))
    parts.append("</div>")
    return "\n".join(parts)


def counts_line(counts: Sequence[tuple[str, int]], *, limit: int = 12) -> str:
    """``"fr 120, es 98, … (3 more)"``: named counts for a summary line."""
    shown = [f"{name} {n:,}" for name, n in counts[:limit]]
    if len(counts) > limit:
        shown.append(f"… ({len(counts) - limit} more)")
    return ", ".join(shown)


def plural(n: int, word: str) -> str:
    """``"1 language"``, ``"7 languages"``, ``"1,024 neurons"``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def check_form(
    form: str, forms: Mapping[str, str], owner: str, error: type[Exception] = ValueError
) -> str:
    """``form`` if it is one of ``forms`` (form → what its rows are), else ``error`` naming
    each form with its rows, for the objects whose ``to_pandas`` is not `Result`'s."""
    if form not in forms:
        named = [f"{name!r} ({rows})" for name, rows in forms.items()]
        listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " or " + named[-1]
        raise error(f"{owner}.to_pandas(form={form!r}): form must be {listed}.")
    return form
