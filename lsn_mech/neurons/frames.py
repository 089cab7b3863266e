"""Neuron sets as ``pandas`` frames and as notebook tables.

`NeuronSet.to_pandas`, `LanguageNeurons.to_pandas`, `OverlapMatrix.to_pandas` and their
``_repr_html_`` delegate here, so the classes keep only a one-line method each. The
functions take the objects as they are (no import of the classes: this module sits
below them).

Frames have a plain index and their label columns first, like every result's
``to_pandas()``; layer and neuron indices are ``int64``.
"""

from __future__ import annotations

from typing import Any

from lsn_mech import display
from lsn_mech.errors import InvalidSettingError

FORMS = {"long": "one row per neuron", "wide": "counts per language × layer"}
"""The forms of ``LanguageNeurons.to_pandas``, each with what its rows are."""

OVERLAP_FORMS = {"wide": "the matrix", "long": "one row per pair of languages"}
"""The forms of ``OverlapMatrix.to_pandas``."""


def neuron_rows(neuron_set: Any, *, include_site: bool = False) -> Any:
    """One row per neuron of ``neuron_set``: ``layer``, ``neuron`` (and ``site``)."""
    import pandas as pd

    pairs = neuron_set.to_pairs().numpy()
    frame = pd.DataFrame({"layer": pairs[:, 0], "neuron": pairs[:, 1]}).astype("int64")
    if include_site:
        frame["site"] = neuron_set.site
    return frame


def language_neuron_frame(neurons: Any, form: str = "long", *, include_site: bool = False) -> Any:
    """``form="long"``: one row per (language, layer, neuron); ``form="wide"``: one row
    per language, its neuron count in each layer (columns ``0 … n_layers - 1``)."""
    import pandas as pd

    display.check_form(form, FORMS, "LanguageNeurons", InvalidSettingError)
    if form == "wide":
        rows = [[language, *s.per_layer()] for language, s in neurons.items()]
        frame = pd.DataFrame(rows, columns=["language", *range(neurons.n_layers)])
        return frame.astype({layer: "int64" for layer in range(neurons.n_layers)})
    parts = []
    for language, neuron_set in neurons.items():
        part = neuron_rows(neuron_set, include_site=include_site)
        part.insert(0, "language", language)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _share(count: int, of: int) -> str:
    return f"{100 * count / of:.3g} %" if of else "–"


def neuron_set_html(neuron_set: Any) -> str:
    """Count and share of each layer, the counts coloured."""
    counts = neuron_set.per_layer()
    total = neuron_set.n_layers * neuron_set.d_mlp
    summary = (
        f"{display.plural(len(neuron_set), 'neuron')} ({_share(len(neuron_set), total)} of "
        f"{display.plural(neuron_set.n_layers, 'layer')} × {neuron_set.d_mlp}), "
        f"site {neuron_set.site}"
    )
    if neuron_set.model_id is not None:
        summary += f", model {neuron_set.model_id}"
    header = ["layer", *map(str, range(neuron_set.n_layers))]
    rows = [
        ["neurons", *counts],
        ["% of layer", *(100 * c / neuron_set.d_mlp if neuron_set.d_mlp else 0.0 for c in counts)],
    ]
    heat = [[None, *counts], [None] * len(header)]
    table = display.Table(header, rows, heat=heat, legend="colour: neurons in the layer")
    return display.render("NeuronSet", summary, table)


def language_neurons_html(neurons: Any) -> str:
    """Languages, totals and the share of MLP neurons on one line; counts per language ×
    layer below, coloured."""
    sizes = [(language, len(s)) for language, s in neurons.items()]
    distinct = len(neurons.union())
    neuron_count = sum(n for _, n in sizes)
    mlp = neurons.n_layers * neurons.d_mlp
    summary = (
        f"{display.plural(len(neurons), 'language')}, {display.plural(neuron_count, 'neuron')} "
        f"({distinct:,} distinct: {_share(distinct, mlp)} of the {mlp:,} MLP neurons), "
        f"site {neurons.site}; {display.counts_line(sizes)}"
    )
    header = ["language", *map(str, range(neurons.n_layers)), "total"]
    rows = [[language, *s.per_layer(), len(s)] for language, s in neurons.items()]
    heat = [[None, *row[1:-1], None] for row in rows]
    table = display.Table(header, rows, heat=heat, legend="colour: neurons per language and layer")
    title = display.title_of("LanguageNeurons", neurons.provenance)
    return display.render(title, summary, table)


def _overlap_cells(matrix: Any) -> list[list[Any]]:
    """The matrix's values as Python numbers: ints for ``"intersection"``, else floats."""
    cast = round if matrix.kind == "intersection" else float
    return [[cast(v) for v in row] for row in matrix.values.tolist()]


def overlap_matrix_frame(matrix: Any, form: str = "wide") -> Any:
    """``form="wide"``: one row per language, one column per language (the first
    column's name is the kind); ``form="long"``: one row per ordered pair
    (``language_a``, ``language_b``) with the value in a column named after the kind."""
    import pandas as pd

    display.check_form(form, OVERLAP_FORMS, "OverlapMatrix", InvalidSettingError)
    cells = _overlap_cells(matrix)
    languages = list(matrix.languages)
    if form == "long":
        rows = [
            [a, b, cells[i][j]] for i, a in enumerate(languages) for j, b in enumerate(languages)
        ]
        return pd.DataFrame(rows, columns=["language_a", "language_b", matrix.kind])
    return pd.DataFrame(
        [[a, *row] for a, row in zip(languages, cells)], columns=[matrix.kind, *languages]
    )


def overlap_matrix_html(matrix: Any) -> str:
    """The matrix, coloured off the diagonal (a language with itself would set the scale)."""
    cells = _overlap_cells(matrix)
    rows = [[a, *row] for a, row in zip(matrix.languages, cells)]
    heat = [[None, *(None if i == j else v for j, v in enumerate(r))] for i, r in enumerate(cells)]
    summary = f"{matrix.kind} overlap of {display.plural(len(matrix.languages), 'language')}"
    legend = f"colour: {matrix.kind} (diagonal uncoloured)"
    table = display.Table([matrix.kind, *matrix.languages], rows, heat=heat, legend=legend)
    return display.render("OverlapMatrix", summary, table)
