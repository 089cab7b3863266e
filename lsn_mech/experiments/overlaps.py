"""How many neurons languages share (Tang et al. §3.2: about a quarter of the Chinese and
Japanese neurons overlap)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance

OverlapKind = Literal["jaccard", "intersection", "fraction"]
KINDS: tuple[str, ...] = ("jaccard", "intersection", "fraction")


@dataclasses.dataclass
class OverlapResult(Result):
    """Pairwise overlap of the languages' neuron sets.

    Stores the raw intersection sizes, from which every view is computed:

    * ``jaccard``: ``|A ∩ B| / |A ∪ B|`` (0 when both sets are empty);
    * ``intersection``: ``|A ∩ B|`` (the set sizes on the diagonal);
    * ``fraction``: ``|A ∩ B| / |A|``: the share of the *row* language's neurons that
      the column language also has (not symmetric; 0 for an empty row set).

    ``kind`` is the default view of `values`, `pairs_sorted`, `plot` and ``str``.
    """

    languages: list[str]
    intersection: list[list[int]]
    kind: str = "jaccard"
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def __post_init__(self) -> None:
        _check_kind(self.kind)

    @property
    def sizes(self) -> list[int]:
        """Neurons per language (the diagonal of the intersection matrix)."""
        return [self.intersection[i][i] for i in range(len(self.languages))]

    def values(self, kind: str | None = None) -> list[list[float]]:
        """The matrix in one view (default: ``self.kind``)."""
        kind = _check_kind(kind or self.kind)
        sizes = self.sizes
        out = []
        for i, row in enumerate(self.intersection):
            cells = []
            for j, inter in enumerate(row):
                if kind == "intersection":
                    cells.append(float(inter))
                elif kind == "fraction":
                    cells.append(inter / sizes[i] if sizes[i] else 0.0)
                else:
                    union = sizes[i] + sizes[j] - inter
                    cells.append(inter / union if union else 0.0)
            out.append(cells)
        return out

    def __getitem__(self, pair: tuple[str, str]) -> float:
        """``result["zh", "ja"]`` in the default view."""
        a, b = pair
        return self.values()[self.languages.index(a)][self.languages.index(b)]

    def pairs_sorted(self, kind: str | None = None) -> list[tuple[str, str, float]]:
        """Every pair of different languages, most overlapping first.

        For the symmetric views each unordered pair appears once (in language order);
        for ``fraction`` both directions appear. Ties keep language order.
        """
        kind = _check_kind(kind or self.kind)
        matrix = self.values(kind)
        n = len(self.languages)
        pairs = [
            (self.languages[i], self.languages[j], matrix[i][j])
            for i in range(n)
            for j in range(n)
            if (j > i if kind != "fraction" else j != i)
        ]
        return sorted(pairs, key=lambda p: -p[2])

    table_forms = ("wide", "long")

    def tabulate(self, kind: str | None = None, *, form: str = "wide") -> ResultTable:
        """The matrix as a table.

        ``form="wide"``: one row per language, one column per language, the values in
        ``kind`` (default ``self.kind``; the first column's name is the kind).
        ``form="long"``: one row per ordered pair (``language_a``, ``language_b``), the
        diagonal included, with ``intersection``, ``jaccard`` and ``fraction``
        (``|A ∩ B| / |A|``, ``A`` the row language).
        """
        if form == "long":
            views = {k: self.values(k) for k in KINDS}
            rows = [
                [a, b, self.intersection[i][j], views["jaccard"][i][j], views["fraction"][i][j]]
                for i, a in enumerate(self.languages)
                for j, b in enumerate(self.languages)
            ]
            header = ["language_a", "language_b", "intersection", "jaccard", "fraction"]
            return ResultTable(header, rows)
        matrix = self.values(kind)
        rows = [[lang, *row] for lang, row in zip(self.languages, matrix)]
        return ResultTable([kind or self.kind, *self.languages], rows)

    def _display_summary(self) -> str:
        sizes = display.counts_line(list(zip(self.languages, self.sizes)))
        top = self.pairs_sorted()[:1]
        most = f"; most overlapping {top[0][0]}–{top[0][1]} {top[0][2]:.3g}" if top else ""
        languages = display.plural(len(self.languages), "language")
        return f"{self.kind} overlap of {languages} (neurons: {sizes}){most}"

    def _display_table(self) -> display.Table:
        """The matrix coloured off the diagonal (a language with itself would dominate)."""
        header, rows = self.tabulate()
        heat = [
            [None, *(None if i == j else v for j, v in enumerate(row[1:]))]
            for i, row in enumerate(rows)
        ]
        return display.Table(
            header, rows, heat=heat, legend=f"colour: {self.kind} (diagonal uncoloured)"
        )

    def plot(self, kind: str | None = None) -> Any:
        """A plotly heatmap of the matrix in one view."""
        from lsn_mech.plots import heatmap

        kind = _check_kind(kind or self.kind)
        return heatmap(
            self.values(kind),
            self.languages,
            self.languages,
            title=f"Neuron overlap between languages ({kind})",
            row_title="language",
            column_title="language",
            colorbar=kind,
            text_format=".0f" if kind == "intersection" else ".3f",
        )

    def __str__(self) -> str:
        matrix = self.values()
        digits = 0 if self.kind == "intersection" else 3
        rows = [[lang, *row] for lang, row in zip(self.languages, matrix)]
        lines = [f"{self.kind} overlap", table([self.kind, *self.languages], rows, digits=digits)]
        top = self.pairs_sorted()[:5]
        if top:
            lines.append(
                "most overlapping: " + ", ".join(f"{a}–{b} {v:.{digits}f}" for a, b, v in top)
            )
        return "\n".join(lines)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"Unknown overlap kind {kind!r}; choose from {', '.join(KINDS)}.")
    return kind


def overlap(neurons: LanguageNeurons, kind: OverlapKind = "jaccard") -> OverlapResult:
    """Pairwise overlap of all languages' neurons (wraps `LanguageNeurons.overlap_matrix`).

    Example:
        >>> from lsn_mech.neurons import LanguageNeurons, NeuronSet
        >>> n = LanguageNeurons({"zh": NeuronSet([[0, 1, 2]], d_mlp=8),
        ...                      "ja": NeuronSet([[1, 2, 3]], d_mlp=8),
        ...                      "fr": NeuronSet([[7]], d_mlp=8)})
        >>> overlap(n).pairs_sorted()[0]
        ('zh', 'ja', 0.5)
    """
    _check_kind(kind)
    inter = neurons.overlap_matrix("intersection").values
    source = neurons.provenance
    return OverlapResult(
        languages=list(neurons.languages),
        intersection=[[round(v) for v in row] for row in inter.tolist()],
        kind=kind,
        provenance=Provenance(
            model_id=neurons.model_id,
            corpus=source.corpus if source else None,
            corpus_hash=source.corpus_hash if source else None,
            method="overlap",
            parameters=canonical(
                {
                    "kind": kind,
                    "site": neurons.site,
                    "neurons_method": source.method if source else None,
                    "neurons_parameters": dict(source.parameters) if source else {},
                }
            ),
            library_version=__version__,
        ),
    )
