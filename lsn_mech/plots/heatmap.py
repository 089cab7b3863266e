"""Plotly heatmaps for language-by-language results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def heatmap(
    values: Sequence[Sequence[float]],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    row_title: str,
    column_title: str,
    colorbar: str,
    text_format: str = ".2f",
    diverging: bool = False,
    hover: Sequence[Sequence[str]] | None = None,
) -> Any:
    """A labelled heatmap with the values printed in the cells; ``hover`` adds one line
    per cell to its hover text (e.g. the value's confidence interval)."""
    import plotly.graph_objects as go

    matrix = [list(map(float, row)) for row in values]
    extra = "" if hover is None else "<br>%{customdata}"
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(columns),
            y=list(rows),
            colorscale="RdBu_r" if diverging else "Viridis",
            zmid=0.0 if diverging else None,
            colorbar={"title": colorbar},
            text=[[format(v, text_format) for v in row] for row in matrix],
            texttemplate="%{text}",
            customdata=None if hover is None else [list(row) for row in hover],
            hovertemplate=(
                f"{row_title}=%{{y}}<br>{column_title}=%{{x}}<br>{colorbar}=%{{z}}{extra}"
                "<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        title=title,
        xaxis={"title": column_title, "side": "bottom"},
        yaxis={"title": row_title, "autorange": "reversed"},
        width=120 + 60 * max(len(columns), 4),
        height=140 + 50 * max(len(rows), 4),
    )
    return figure
