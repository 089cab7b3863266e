"""Where language-specific neurons sit: counts per language per layer (Tang et al., Fig. 5,
Table 10)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.errors import WrongInputError
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance


@dataclasses.dataclass
class LayerDistribution(Result):
    """Neuron counts per layer for every language, their union and the shared neurons.

    Attributes:
        languages: language order.
        counts: ``counts[i][layer]``: neurons of ``languages[i]`` in ``layer``.
        union: neurons of any language per layer (a neuron shared by several languages
            counts once: Fig. 5 of Tang et al. plots this).
        shared: neurons that belong to at least two languages, per layer.
        d_mlp: neurons per layer of the model (to turn counts into shares).
        provenance: the experiment, plus the neurons' own method and parameters.
    """

    languages: list[str]
    counts: list[list[int]]
    union: list[int]
    shared: list[int]
    d_mlp: int
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def n_layers(self) -> int:
        """Layers of the model."""
        return len(self.union)

    def totals(self) -> dict[str, int]:
        """Neurons per language over all layers (Tang et al., Table 3), plus ``"union"``."""
        result = {lang: sum(row) for lang, row in zip(self.languages, self.counts)}
        result["union"] = sum(self.union)
        return result

    def of(self, language: str) -> list[int]:
        """Per-layer counts of one language (``"union"`` and ``"shared"`` work too)."""
        if language == "union":
            return list(self.union)
        if language == "shared":
            return list(self.shared)
        return list(self.counts[self.languages.index(language)])

    table_forms = ("wide", "long")

    def tabulate(self, *, form: str = "wide") -> ResultTable:
        """``form="wide"``: one row per layer; columns: the languages, ``union``,
        ``shared``. ``form="long"``: one row per (layer, language) with its ``neurons``
        and their ``share`` of the layer's ``d_mlp`` neurons."""
        if form == "long":
            rows_long = [
                [layer, language, row[layer], row[layer] / self.d_mlp if self.d_mlp else 0.0]
                for layer in range(self.n_layers)
                for language, row in zip(self.languages, self.counts)
            ]
            return ResultTable(["layer", "language", "neurons", "share"], rows_long)
        rows = [
            [layer, *(row[layer] for row in self.counts), self.union[layer], self.shared[layer]]
            for layer in range(self.n_layers)
        ]
        return ResultTable(["layer", *self.languages, "union", "shared"], rows)

    def _display_summary(self) -> str:
        totals = self.totals()
        union = totals.pop("union")
        total = self.n_layers * self.d_mlp
        share = f" ({100 * union / total:.2f} % of {total:,} MLP neurons)" if total else ""
        return (
            f"{display.plural(len(self.languages), 'language')} over {self.n_layers} layers; "
            f"{union:,} distinct neurons{share}; {display.counts_line(list(totals.items()))}"
        )

    def _display_table(self) -> display.Table:
        header, rows = self.tabulate()
        last = 1 + len(self.languages)  # colour the languages' counts, not union/shared
        heat = [[v if 1 <= i < last else None for i, v in enumerate(r)] for r in rows]
        return display.Table(header, rows, heat=heat, legend="colour: neurons per language")

    def plot(self, *, union: bool = True, share: bool = False) -> Any:
        """Plotly line chart: one line per language (+ the union), x = layer.

        ``share=True`` plots the percentage of the layer's ``d_mlp`` neurons instead.
        """
        import plotly.graph_objects as go

        scale = 100.0 / self.d_mlp if share and self.d_mlp else 1.0
        layers = list(range(self.n_layers))
        figure = go.Figure()
        for language, row in zip(self.languages, self.counts):
            figure.add_trace(
                go.Scatter(x=layers, y=[v * scale for v in row], mode="lines", name=language)
            )
        if union:
            figure.add_trace(
                go.Scatter(
                    x=layers,
                    y=[v * scale for v in self.union],
                    mode="lines",
                    name="union",
                    line={"color": "black", "width": 3, "dash": "dot"},
                )
            )
        figure.update_layout(
            title="Language-specific neurons per layer",
            xaxis={"title": "layer", "dtick": max(1, self.n_layers // 20)},
            yaxis={"title": "% of the layer's neurons" if share else "neurons"},
        )
        return figure

    def __str__(self) -> str:
        header = ["layer", *self.languages, "union", "shared"]
        rows: list[list[Any]] = [
            [str(i), *(row[i] for row in self.counts), self.union[i], self.shared[i]]
            for i in range(self.n_layers)
        ]
        totals = self.totals()
        rows.append(
            ["total", *(totals[x] for x in self.languages), totals["union"], sum(self.shared)]
        )
        return table(header, rows)


def layer_distribution(neurons: LanguageNeurons) -> LayerDistribution:
    """Count each language's neurons per layer (Tang et al., Fig. 5 and Table 10).

    Example:
        >>> from lsn_mech.neurons import LanguageNeurons, NeuronSet
        >>> n = LanguageNeurons({"en": NeuronSet([[0, 1], [2]], d_mlp=4),
        ...                      "fr": NeuronSet([[1], []], d_mlp=4)})
        >>> d = layer_distribution(n)
        >>> d.counts, d.union, d.shared
        ([[2, 1], [1, 0]], [2, 1], [1, 0])
    """
    if not isinstance(neurons, LanguageNeurons):
        raise WrongInputError(
            f"layer_distribution needs LanguageNeurons (one set per language), got "
            f"{type(neurons).__name__}; wrap one set as LanguageNeurons({{'fr': neuron_set}})."
        )
    source = neurons.provenance
    return LayerDistribution(
        languages=list(neurons.languages),
        counts=[list(row) for row in neurons.per_layer().values()],
        union=neurons.union().per_layer(),
        shared=neurons.shared(2).per_layer(),
        d_mlp=neurons.d_mlp,
        provenance=Provenance(
            model_id=neurons.model_id,
            corpus=source.corpus if source else None,
            corpus_hash=source.corpus_hash if source else None,
            method="layer_distribution",
            parameters=canonical(
                {
                    "site": neurons.site,
                    "neurons_method": source.method if source else None,
                    "neurons_parameters": dict(source.parameters) if source else {},
                }
            ),
            library_version=__version__,
        ),
    )
