"""HTML of the neuron dashboard: plain data in, self-contained page text out.

Pages carry their style inline and draw charts as inline SVG, so they open offline from
``file://`` with no script, CDN or file beside them. Every text that comes from a corpus,
a tokenizer or a language name goes through `esc`.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence

__all__ = [
    "Context",
    "IndexData",
    "NeuronPage",
    "esc",
    "index_html",
    "neuron_html",
    "page_name",
    "svg_bars",
]

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")
"""Language colours, in the order of the dashboard's languages."""

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 8px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:1em;margin:16px 0 6px}
.muted{color:#59636e}.small{font-size:.85em}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;vertical-align:middle}
th{background:#f6f8fa}td.left,th.left{text-align:left}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
.badge{display:inline-block;padding:1px 7px;margin:1px 2px;border-radius:10px;color:#fff;
font-size:.85em}
.charts{display:flex;flex-wrap:wrap;gap:24px}
.context{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Noto Sans Mono CJK SC",
monospace;font-size:.9em;line-height:1.9;margin:2px 0;white-space:pre-wrap;
word-break:break-all}
.contexts td.left{width:100%}
.token{border-radius:2px;padding:1px 0}
.token.peak{outline:2px solid #cf222e}
nav{margin:6px 0 14px}nav a{margin-right:14px}
"""


def esc(value: object) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


@dataclasses.dataclass(frozen=True)
class Context:
    """One top activation: the tokens around it and the neuron's activation on each.

    ``activations[i]`` is ``None`` where the token does not count (padding, BOS).
    ``peak`` is the index of the kept token in ``tokens``.
    """

    value: float
    window: int
    position: int
    tokens: list[str]
    activations: list[float | None]
    peak: int


@dataclasses.dataclass(frozen=True)
class NeuronPage:
    """Everything one neuron's page shows."""

    layer: int
    index: int
    site: str
    sets: list[str]
    probability: Mapping[str, float | None]
    mean: Mapping[str, float | None]
    contexts: Mapping[str, list[Context]]


@dataclasses.dataclass(frozen=True)
class IndexData:
    """Everything the index shows."""

    title: str
    facts: list[tuple[str, str]]
    languages: list[str]
    n_layers: int
    d_mlp: int
    per_layer: Mapping[str, list[int]]
    exclusive: Mapping[str, int]
    intersections: list[list[int]]
    jaccard: list[list[float]]
    pages: list[NeuronPage]
    more: int


def page_name(layer: int, index: int) -> str:
    """The file of a neuron's page, relative to the site's root."""
    return f"neurons/L{layer}_N{index}.html"


def _colour(languages: Sequence[str], language: str) -> str:
    return PALETTE[list(languages).index(language) % len(PALETTE)]


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def svg_bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    colours: Sequence[str] | None = None,
    width: int = 360,
    height: int = 210,
    digits: int = 3,
) -> str:
    """A vertical bar chart as inline SVG (a zero line when values are negative).

    ``None`` values draw no bar and are labelled "—".
    """
    top, bottom, left, right = 38, 34, 8, 8
    finite = [v for v in values if v is not None and math.isfinite(v)]
    high = max([0.0, *finite])
    low = min([0.0, *finite])
    span = (high - low) or 1.0
    plot_height = height - top - bottom
    slot = (width - left - right) / max(1, len(labels))

    def y(value: float) -> float:
        return top + (high - value) / span * plot_height

    parts = [
        f'<svg class="bar-chart" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="600">{esc(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values)):
        x = left + i * slot + slot * 0.15
        bar_width = slot * 0.7
        colour = colours[i % len(colours)] if colours else PALETTE[0]
        if value is not None and math.isfinite(value):
            y0, y1 = sorted((y(0.0), y(value)))
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y0:.1f}" width="{bar_width:.1f}" '
                f'height="{max(y1 - y0, 0.5):.1f}" fill="{colour}">'
                f"<title>{esc(label)}: {_number(value, digits)}</title></rect>"
            )
            text_y = y0 - 3 if value >= 0 else y1 + 11
        else:
            text_y = y(0.0) - 3
        parts.append(
            f'<text x="{x + bar_width / 2:.1f}" y="{text_y:.1f}" text-anchor="middle" '
            f'font-size="10">{_number(value, digits)}</text>'
        )
        parts.append(
            f'<text x="{x + bar_width / 2:.1f}" y="{height - 6:.1f}" '
            f'text-anchor="middle" font-size="12">{esc(label)}</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
        'stroke="#59636e" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _spark(counts: Sequence[int], colour: str, *, width: int = 220, height: int = 28) -> str:
    """Counts per layer as a row of thin bars (one table cell)."""
    peak = max([1, *counts])
    slot = width / max(1, len(counts))
    bars = "".join(
        f'<rect x="{i * slot:.1f}" y="{height - c / peak * height:.1f}" '
        f'width="{max(slot - 1, 1):.1f}" height="{c / peak * height:.1f}" fill="{colour}">'
        f"<title>layer {i}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    return (
        f'<svg class="bar-chart spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{bars}</svg>'
    )


def _badges(sets: Sequence[str], languages: Sequence[str]) -> str:
    return "".join(
        f'<span class="badge" style="background:{_colour(languages, s)}">{esc(s)}</span>'
        for s in sets
    )


def _shade(value: float | int, peak: float | int) -> str:
    """Cell background whose intensity follows ``value / peak``."""
    alpha = 0.0 if peak <= 0 else min(1.0, max(0.0, value / peak)) * 0.6
    return f"background:rgba(9,105,218,{alpha:.2f})"


def index_html(data: IndexData) -> str:
    """The site's front page: the sets per layer, their overlaps, the neuron pages."""
    languages = data.languages
    facts = "".join(
        f'<tr><th class="left">{esc(k)}</th><td class="left">{esc(v)}</td></tr>'
        for k, v in data.facts
    )
    layer_heads = "".join(f"<th>{layer}</th>" for layer in range(data.n_layers))
    peak = max([1, *(c for row in data.per_layer.values() for c in row)])
    set_rows = []
    for language in languages:
        counts = data.per_layer[language]
        cells = "".join(f'<td style="{_shade(c, peak)}">{c}</td>' for c in counts)
        set_rows.append(
            f'<tr><th class="left">{_badges([language], languages)}</th><td>{sum(counts)}</td>'
            f"<td>{data.exclusive[language]}</td>"
            f'<td class="left">{_spark(counts, _colour(languages, language))}</td>{cells}</tr>'
        )
    sets_table = (
        '<table class="sets"><thead><tr><th class="left">language</th><th>neurons</th>'
        f'<th>only this language</th><th class="left">per layer</th>{layer_heads}</tr></thead>'
        f"<tbody>{''.join(set_rows)}</tbody></table>"
    )
    header = "".join(f"<th>{esc(x)}</th>" for x in languages)
    overlap_rows = []
    for i, a in enumerate(languages):
        cells = []
        for j in range(len(languages)):
            shared, jac = data.intersections[i][j], data.jaccard[i][j]
            style = _shade(jac, 1.0) if i != j else "background:#f6f8fa"
            cells.append(f'<td style="{style}" title="Jaccard {jac:.3f}">{shared}</td>')
        overlap_rows.append(f'<tr><th class="left">{esc(a)}</th>{"".join(cells)}</tr>')
    overlaps = (
        f'<table class="overlaps"><thead><tr><th></th>{header}</tr></thead>'
        f"<tbody>{''.join(overlap_rows)}</tbody></table>"
    )
    neuron_rows = []
    for page in data.pages:
        probabilities = "".join(
            f'<td style="{_shade(page.probability.get(x) or 0.0, 1.0)}">'
            f"{_number(page.probability.get(x), 2)}</td>"
            for x in languages
        )
        neuron_rows.append(
            f'<tr><td class="left"><a href="{esc(page_name(page.layer, page.index))}">'
            f"L{page.layer} N{page.index}</a></td><td>{page.layer}</td><td>{page.index}</td>"
            f'<td class="left">{_badges(page.sets, languages)}</td>{probabilities}</tr>'
        )
    more = (
        f'<p class="muted">{data.more} more neurons of the sets have no page '
        "(raise max_neurons / --max-neurons to write them).</p>"
        if data.more
        else ""
    )
    neurons = (
        '<table class="neurons"><thead><tr><th class="left">neuron</th><th>layer</th>'
        f'<th>index</th><th class="left">sets</th>{header}</tr></thead>'
        f"<tbody>{''.join(neuron_rows)}</tbody></table>{more}"
    )
    body = (
        f"<h1>{esc(data.title)}</h1>"
        f'<table class="facts">{facts}</table>'
        '<h2>Sets</h2><p class="muted small">Neurons of each language\'s set per layer '
        f"(of {data.d_mlp} per layer); darker cells hold more.</p>{sets_table}"
        '<h2>Overlaps</h2><p class="muted small">Neurons two languages\' sets share; '
        f"shading and the tooltip give the Jaccard index.</p>{overlaps}"
        '<h2>Neurons</h2><p class="muted small">The columns per language give the '
        f"activation probability (share of tokens where the neuron is &gt; 0).</p>{neurons}"
    )
    return _document(data.title, body)


def _groups(context: Context) -> list[tuple[str, float | None, bool]]:
    """(text, activation, holds the peak) per visible piece of the context.

    A token that adds no text of its own (a byte of a character the next token
    completes) joins the token that completes it, and the group shows its largest
    activation; replacement characters of bytes cut off at the context's edge are dropped.
    """
    groups: list[tuple[str, float | None, bool]] = []
    pending: list[tuple[float | None, bool]] = []
    for i, (token, value) in enumerate(zip(context.tokens, context.activations)):
        pending.append((value, i == context.peak))
        text = token.replace("\ufffd", "")
        if not text:
            continue
        values = [v for v, _ in pending if v is not None]
        groups.append((text, max(values) if values else None, any(p for _, p in pending)))
        pending = []
    if pending:
        values = [v for v, _ in pending if v is not None]
        groups.append(("…", max(values) if values else None, any(p for _, p in pending)))
    return groups


def _token_spans(context: Context, peak: float) -> str:
    spans = []
    for text, value, is_peak in _groups(context):
        shown = esc(text.replace("\n", "↵"))
        if value is None:
            spans.append(f'<span class="token muted">{shown}</span>')
            continue
        alpha = 0.0 if peak <= 0 else min(1.0, max(0.0, value / peak))
        classes = "token peak" if is_peak else "token"
        spans.append(
            f'<span class="{classes}" style="background:rgba(255,110,0,{alpha:.2f})" '
            f'title="{_number(value)}">{shown}</span>'
        )
    return "".join(spans)


def neuron_html(
    page: NeuronPage,
    languages: Sequence[str],
    *,
    title: str,
    previous: NeuronPage | None = None,
    following: NeuronPage | None = None,
) -> str:
    """One neuron's page: its sets, statistics per language and top contexts."""
    colours = [_colour(languages, x) for x in languages]
    links = ['<a href="../index.html">index</a>']
    for label, other in (("previous", previous), ("next", following)):
        if other is not None:
            target = page_name(other.layer, other.index).removeprefix("neurons/")
            links.append(f'<a href="{esc(target)}">{label}: L{other.layer} N{other.index}</a>')
    charts = (
        '<div class="charts">'
        + svg_bars(
            languages,
            [page.probability.get(x) for x in languages],
            title="activation probability (mlp_pre > 0)",
            colours=colours,
        )
        + svg_bars(
            languages,
            [page.mean.get(x) for x in languages],
            title=f"mean activation ({page.site})",
            colours=colours,
        )
        + "</div>"
    )
    peak = max(
        [0.0, *(c.value for contexts in page.contexts.values() for c in contexts)],
    )
    sections = []
    for language in languages:
        contexts = page.contexts.get(language, [])
        if not contexts:
            rows = '<p class="muted">No token of this language was read.</p>'
        else:
            rows = (
                '<table class="contexts"><thead><tr><th>activation</th><th>window</th>'
                '<th>position</th><th class="left">context</th></tr></thead><tbody>'
                + "".join(
                    f"<tr><td>{_number(c.value)}</td><td>{c.window}</td><td>{c.position}</td>"
                    f'<td class="left"><div class="context">{_token_spans(c, peak)}</div></td>'
                    "</tr>"
                    for c in contexts
                )
                + "</tbody></table>"
            )
        sections.append(f"<h3>{_badges([language], languages)} top contexts</h3>{rows}")
    sets = _badges(page.sets, languages) or '<span class="muted">none</span>'
    body = (
        f"<nav>{''.join(links)}</nav>"
        f"<h1>Layer {page.layer}, neuron {page.index}</h1>"
        f'<p class="muted">{esc(title)}</p>'
        f'<table class="facts"><tr><th class="left">layer</th><td>{page.layer}</td></tr>'
        f'<tr><th class="left">index</th><td>{page.index}</td></tr>'
        f'<tr><th class="left">site</th><td>{esc(page.site)}</td></tr>'
        f'<tr><th class="left">sets</th><td class="left">{sets}</td></tr></table>'
        f"<h2>Per language</h2>{charts}"
        '<h2>Top-activating contexts</h2><p class="muted small">Orange shading follows the '
        "neuron's activation on each token (darkest: its highest kept activation); the "
        "outlined token is the one the row is ranked by.</p>" + "".join(sections)
    )
    return _document(f"L{page.layer} N{page.index} — {title}", body)
