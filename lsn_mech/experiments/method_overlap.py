"""How much two detectors agree: per language, the overlap of their neuron sets and where
each set sits in the model (Mondal et al. 2025, Figs. 18–19: LAPE and Act Prob 90p
select largely disjoint neurons)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.errors import MissingLanguageError
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance


@dataclasses.dataclass
class MethodOverlap(Result):
    """Per-language overlap of the neurons two methods (``names``) select.

    Attributes:
        names: the two methods, ``A`` then ``B`` (e.g. ``["LAPE", "Act-Prob-90p"]``).
        languages: languages both methods have, in ``A``'s order.
        size_a, size_b, intersection: ``|A|``, ``|B|`` and ``|A ∩ B|`` per language.
        per_layer_a, per_layer_b, per_layer_intersection: the same counts per layer,
            ``[language][layer]`` (Mondal et al., Figs. 14–19).
        d_mlp: neurons per layer of the model (for the chance baseline).
        provenance: this comparison, with both methods' own provenance in
            ``parameters["methods"]``.
    """

    names: list[str]
    languages: list[str]
    size_a: list[int]
    size_b: list[int]
    intersection: list[int]
    per_layer_a: list[list[int]]
    per_layer_b: list[list[int]]
    per_layer_intersection: list[list[int]]
    d_mlp: int
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def n_layers(self) -> int:
        """Layers of the model."""
        return len(self.per_layer_a[0]) if self.per_layer_a else 0

    def union(self) -> list[int]:
        """``|A ∪ B|`` per language."""
        return [a + b - i for a, b, i in zip(self.size_a, self.size_b, self.intersection)]

    def jaccard(self) -> list[float]:
        """``|A ∩ B| / |A ∪ B|`` per language (0 when both sets are empty)."""
        return [i / u if u else 0.0 for i, u in zip(self.intersection, self.union())]

    def overlap_coefficient(self) -> list[float]:
        """``|A ∩ B| / min(|A|, |B|)`` per language (0 when a set is empty): 1 when the
        smaller set lies inside the larger one, whatever their sizes."""
        return [
            i / min(a, b) if min(a, b) else 0.0
            for a, b, i in zip(self.size_a, self.size_b, self.intersection)
        ]

    def chance_intersection(self) -> list[float]:
        """Expected ``|A ∩ B|`` if, in every layer, each method had picked its neurons of
        that layer uniformly at random: ``Σ_layer a_layer · b_layer / d_mlp``.

        An observed intersection near this value means the methods agree no more than
        their layer distributions force them to.
        """
        return [
            sum(x * y for x, y in zip(pa, pb)) / self.d_mlp
            for pa, pb in zip(self.per_layer_a, self.per_layer_b)
        ]

    def _index(self, language: str) -> int:
        if language not in self.languages:
            raise MissingLanguageError(
                f"Language {language!r} is not in this comparison ({', '.join(self.languages)})."
            )
        return self.languages.index(language)

    def row(self, language: str) -> dict[str, Any]:
        """Every number of one language as a dict."""
        i = self._index(language)
        return {
            "language": language,
            "size_a": self.size_a[i],
            "size_b": self.size_b[i],
            "intersection": self.intersection[i],
            "jaccard": self.jaccard()[i],
            "overlap_coefficient": self.overlap_coefficient()[i],
            "chance_intersection": self.chance_intersection()[i],
        }

    def _rows(self) -> list[list[Any]]:
        return [
            [lang, a, b, i, j, o, c]
            for lang, a, b, i, j, o, c in zip(
                self.languages,
                self.size_a,
                self.size_b,
                self.intersection,
                self.jaccard(),
                self.overlap_coefficient(),
                self.chance_intersection(),
            )
        ]

    def _header(self) -> list[str]:
        a, b = self.names
        return ["language", f"|{a}|", f"|{b}|", "|A∩B|", "Jaccard", "overlap coef.", "chance |A∩B|"]

    def tabulate(self) -> ResultTable:
        """One row per language with every count and ratio."""
        header = ["language", "size_a", "size_b", "intersection", "jaccard"]
        header += ["overlap_coefficient", "chance_intersection"]
        return ResultTable(header, self._rows())

    def _display_summary(self) -> str:
        a, b = self.names
        jaccard = ", ".join(f"{x} {j:.3f}" for x, j in zip(self.languages, self.jaccard()))
        languages = display.plural(len(self.languages), "language")
        return f"A = {a}, B = {b}, {languages}; Jaccard {jaccard}"

    def plot(self, language: str | None = None) -> Any:
        """Plotly figure with two panels: ``|A|``, ``|B|``, ``|A ∩ B|`` per language, and
        their per-layer distribution (Mondal et al., Figs. 18–19) for ``language``, or
        summed over all languages when ``language`` is ``None``."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        a, b = self.names
        if language is None:
            layers_a = _column_sums(self.per_layer_a, self.n_layers)
            layers_b = _column_sums(self.per_layer_b, self.n_layers)
            layers_i = _column_sums(self.per_layer_intersection, self.n_layers)
            which = "all languages"
        else:
            index = self._index(language)
            layers_a = self.per_layer_a[index]
            layers_b = self.per_layer_b[index]
            layers_i = self.per_layer_intersection[index]
            which = language
        figure = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=["neurons per language", f"neurons per layer ({which})"],
        )
        colors = {"a": "#1f77b4", "b": "#ff7f0e", "both": "#2ca02c"}
        jaccard = self.jaccard()
        for key, name, counts in (
            ("a", a, self.size_a),
            ("b", b, self.size_b),
            ("both", f"{a} ∩ {b}", self.intersection),
        ):
            figure.add_trace(
                go.Bar(
                    x=self.languages,
                    y=counts,
                    name=name,
                    legendgroup=key,
                    marker_color=colors[key],
                    text=[f"J={j:.2f}" for j in jaccard] if key == "both" else None,
                    textposition="outside",
                ),
                row=1,
                col=1,
            )
        layers = list(range(self.n_layers))
        for key, name, counts in (
            ("a", a, layers_a),
            ("b", b, layers_b),
            ("both", f"{a} ∩ {b}", layers_i),
        ):
            figure.add_trace(
                go.Scatter(
                    x=layers,
                    y=counts,
                    mode="lines+markers",
                    name=name,
                    legendgroup=key,
                    showlegend=False,
                    line={"color": colors[key]},
                ),
                row=1,
                col=2,
            )
        figure.update_layout(barmode="group", title=f"Neurons selected by {a} and by {b}")
        figure.update_xaxes(title_text="language", row=1, col=1)
        figure.update_xaxes(title_text="layer", row=1, col=2)
        figure.update_yaxes(title_text="neurons", row=1, col=1)
        figure.update_yaxes(title_text="neurons", row=1, col=2)
        return figure

    def __str__(self) -> str:
        a, b = self.names
        lines = [f"Overlap of {a} (A) and {b} (B) neurons per language"]
        lines.append(table(self._header(), self._rows(), digits=3))
        return "\n".join(lines)


def _column_sums(rows: list[list[int]], width: int) -> list[int]:
    return [sum(row[i] for row in rows) for i in range(width)]


def pair_counts(a: NeuronSet, b: NeuronSet) -> tuple[int, int, int]:
    """``(|a|, |b|, |a ∩ b|)`` of two compatible neuron sets."""
    return len(a), len(b), len(a & b)


def method_overlap(
    a: LanguageNeurons,
    b: LanguageNeurons,
    *,
    names: Sequence[str] = ("LAPE", "Act-Prob-90p"),
    languages: Sequence[str] | None = None,
) -> MethodOverlap:
    """Per-language overlap of two methods' neurons (Mondal et al., Figs. 18–19).

    Args:
        a: neurons of the first method (e.g. `lsn_mech.detect.lape`).
        b: neurons of the second method (e.g. `lsn_mech.detect.act_prob_90p`), of the
            same model and site.
        names: labels of ``a`` and ``b`` in tables and plots.
        languages: languages to compare (default: those both have, in ``a``'s order).

    Raises:
        MissingLanguageError: no language in common, or a requested one is missing.
        NeuronShapeMismatchError: the two methods' neurons belong to different models
            or sites.

    Example:
        >>> from lsn_mech.neurons import LanguageNeurons, NeuronSet
        >>> lape_n = LanguageNeurons({"zh": NeuronSet([[0, 1, 2], [3]], d_mlp=8)})
        >>> act_n = LanguageNeurons({"zh": NeuronSet([[2], [3, 4, 5]], d_mlp=8)})
        >>> r = method_overlap(lape_n, act_n)
        >>> r.intersection, r.jaccard()
        ([2], [0.3333333333333333])
    """
    names = [str(n) for n in names]
    if len(names) != 2:
        raise ValueError(f"names must hold two labels (A, B), got {names!r}.")
    if languages is None:
        chosen = [x for x in a.languages if x in b]
        if not chosen:
            raise MissingLanguageError(
                f"{names[0]} ({', '.join(a.languages)}) and {names[1]} "
                f"({', '.join(b.languages)}) share no language; detect both on the same "
                "languages, or pass languages=[...]."
            )
    else:
        chosen = list(languages)
    counts = [pair_counts(a[x], b[x]) for x in chosen]  # a[x] / b[x] name missing languages
    return MethodOverlap(
        names=names,
        languages=chosen,
        size_a=[c[0] for c in counts],
        size_b=[c[1] for c in counts],
        intersection=[c[2] for c in counts],
        per_layer_a=[a[x].per_layer() for x in chosen],
        per_layer_b=[b[x].per_layer() for x in chosen],
        per_layer_intersection=[(a[x] & b[x]).per_layer() for x in chosen],
        d_mlp=a.d_mlp,
        provenance=Provenance(
            model_id=a.model_id or b.model_id,
            corpus=_first_attr(a, b, "corpus"),
            corpus_hash=_first_attr(a, b, "corpus_hash"),
            method="method_overlap",
            parameters=canonical(
                {
                    "names": names,
                    "languages": chosen,
                    "site": a.site,
                    "methods": {
                        names[0]: _source(a),
                        names[1]: _source(b),
                    },
                }
            ),
            library_version=__version__,
        ),
    )


def _source(neurons: LanguageNeurons) -> dict[str, Any]:
    """Method, parameters and corpus of a detector's output, for provenance."""
    p = neurons.provenance
    if p is None:
        return {"method": None, "parameters": {}}
    return {
        "method": p.method,
        "parameters": dict(p.parameters),
        "corpus": p.corpus,
        "corpus_hash": p.corpus_hash,
    }


def _first_attr(a: LanguageNeurons, b: LanguageNeurons, name: str) -> str | None:
    for neurons in (a, b):
        if neurons.provenance is not None and getattr(neurons.provenance, name):
            return getattr(neurons.provenance, name)
    return None
