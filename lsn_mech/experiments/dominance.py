"""Language dominance (Tang et al. §3.3.3, Eq. 6, Fig. 7): how well the texts of every other
language align with a target language once moved into its region of the space."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lsn_mech import display
from lsn_mech.experiments._results import Result, ResultTable, table
from lsn_mech.experiments.embeddings import (
    Pooling,
    embeddings_for,
    named_embeddings,
)
from lsn_mech.models.protocol import HookedModel
from lsn_mech.provenance import Provenance


def dominance_matrix(
    embeddings: Float[Tensor, "lang layer text d_model"],
) -> Float[Tensor, "target source layer"]:
    """``D[c, k, i]``: mean SES between the texts of ``k`` moved towards ``c`` and ``c``'s.

    With ``v_k^i`` the mean sentence embedding of language ``k`` at layer ``i`` (its
    language vector), each text of ``k`` is mapped by Eq. 6,
    ``ĥ = h − v_k^i + v_c^i``, and ``D[c, k, i] = (1/T) Σ_t cos(ĥ(k, t), h(c, t))`` over
    the ``T`` aligned pairs. ``D[c, c, i]`` is the self-similarity (1 for non-zero
    embeddings). Computed in float64, one target at a time.
    """
    n_lang, n_layers = embeddings.shape[0], embeddings.shape[1]
    vectors = embeddings.mean(dim=2, keepdim=True, dtype=torch.float64)  # language vectors v_k
    out = torch.empty(n_lang, n_lang, n_layers, dtype=torch.float64, device=embeddings.device)
    for c in range(n_lang):  # one [layer, text, d] pair of tensors at a time
        target = embeddings[c].double()
        for k in range(n_lang):
            moved = embeddings[k].double() - vectors[k] + vectors[c]
            cosine = F.cosine_similarity(moved, target, dim=-1, eps=1e-12)
            out[c, k] = cosine.mean(dim=-1)
    return out


def dominance_scores(
    matrix: Float[Tensor, "target source layer"],
) -> Float[Tensor, "target layer"]:
    """Dominance of each target per layer: the mean of ``D[c, k]`` over sources ``k ≠ c``."""
    n = matrix.shape[0]
    if n < 2:
        raise ValueError("Language dominance needs at least two languages.")
    off = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return (matrix * off.unsqueeze(-1)).sum(dim=1) / (n - 1)


@dataclasses.dataclass
class LanguageDominance(Result):
    """Dominance of each language as the target of Eq. 6, per layer (Fig. 7).

    Attributes:
        languages: language order (targets and sources alike).
        matrix: ``matrix[c][k][layer]``: mean SES between language ``k``'s texts moved
            towards target ``c`` and ``c``'s texts.
        scores: ``scores[c][layer]``: mean of ``matrix[c][k][layer]`` over ``k ≠ c``;
            a larger value means ``c`` dominates more.
        n_texts: aligned texts per language.
        pooling: how token residuals became a sentence embedding.
        centered: whether the embeddings were centred first (`center_embeddings`).
    """

    languages: list[str]
    matrix: list[list[list[float]]]
    scores: list[list[float]]
    n_texts: int
    pooling: str
    centered: bool = False
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def n_layers(self) -> int:
        """Layers (blocks) of the model."""
        return len(self.scores[0]) if self.scores else 0

    def score(self, target: str) -> list[float]:
        """Per-layer dominance of one target language."""
        return list(self.scores[self.languages.index(target)])

    def ranking(self, layer: int | None = None) -> list[tuple[str, float]]:
        """Targets by dominance, highest first: at one layer, or averaged over layers."""
        if layer is None:
            values = [sum(row) / len(row) for row in self.scores]
        else:
            values = [row[layer] for row in self.scores]
        return sorted(zip(self.languages, values), key=lambda kv: -kv[1])

    table_forms = ("wide", "long")

    def tabulate(self, *, form: str = "wide") -> ResultTable:
        """``form="wide"``: one row per layer, one column per target language (the
        scores). ``form="long"``: one row per (layer, target) with its ``dominance``."""
        if form == "long":
            rows_long = [
                [layer, language, row[layer]]
                for layer in range(self.n_layers)
                for language, row in zip(self.languages, self.scores)
            ]
            return ResultTable(["layer", "target", "dominance"], rows_long)
        rows = [[layer, *(row[layer] for row in self.scores)] for layer in range(self.n_layers)]
        return ResultTable(["layer", *self.languages], rows)

    def _display_summary(self) -> str:
        ranked = ", ".join(f"{x} {v:.3f}" for x, v in self.ranking()[:5])
        return (
            f"{display.plural(len(self.languages), 'language')}, {self.n_texts} aligned texts, "
            f"{self.n_layers} layers; most dominant (mean over layers): {ranked}"
        )

    def _display_table(self) -> display.Table:
        header, rows = self.tabulate()
        legend = "colour: dominance (mean SES after moving the other languages to the target)"
        return display.Table(header, rows, heat=display.numeric_heat(rows), legend=legend)

    def plot(self) -> Any:
        """One line per target language: its dominance score over the layers (Fig. 7)."""
        import plotly.graph_objects as go

        layers = list(range(self.n_layers))
        figure = go.Figure()
        for language, row in zip(self.languages, self.scores):
            figure.add_trace(go.Scatter(x=layers, y=row, mode="lines", name=language))
        figure.update_layout(
            title="Language dominance: mean SES after moving other languages towards the target",
            xaxis={"title": "layer"},
            yaxis={"title": "mean SES (dominance)"},
            legend={"title": "target"},
        )
        return figure

    def __str__(self) -> str:
        rows = [
            [str(layer), *(row[layer] for row in self.scores)] for layer in range(self.n_layers)
        ]
        rows.append(["mean", *(sum(row) / len(row) for row in self.scores)])
        ranked = ", ".join(f"{x} {v:.3f}" for x, v in self.ranking())
        return (
            f"Language dominance (target = column), {self.n_texts} aligned texts\n"
            + table(["layer", *self.languages], rows)
            + f"\nranking (mean over layers): {ranked}"
        )


def dominance_from_embeddings(
    embeddings: Float[Tensor, "lang layer text d_model"],
    languages: Sequence[str],
    *,
    pooling: str = "mean",
    center: bool = False,
    provenance: Provenance | None = None,
) -> LanguageDominance:
    """`LanguageDominance` of ready embeddings (``[lang, layer, text, d_model]``); ``center``
    subtracts the mean over all texts at each layer first (`center_embeddings`)."""
    matrix = dominance_matrix(named_embeddings(embeddings, languages, center=center))
    return LanguageDominance(
        languages=list(languages),
        matrix=matrix.tolist(),
        scores=dominance_scores(matrix).tolist(),
        n_texts=int(embeddings.shape[2]),
        pooling=pooling,
        centered=center,
        provenance=provenance or Provenance(method="language_dominance"),
    )


def language_dominance(
    model: HookedModel | None,
    aligned: Mapping[str, Sequence[str]],
    *,
    pooling: Pooling = "mean",
    embeddings: Float[Tensor, "lang layer text d_model"] | None = None,
    center: bool = False,
    batch_size: int = 16,
    max_length: int = 256,
    progress: bool = True,
) -> LanguageDominance:
    """Dominance of every language as the target of Eq. 6, per layer (Tang et al., Fig. 7).

    Each text embedding ``h`` of language ``k`` at layer ``i`` is moved into the region
    of the target ``c``: ``ĥ = h − v_k^i + v_c^i`` with ``v_x^i`` the mean embedding of
    language ``x`` (over its aligned texts); the score of ``c`` is the mean cosine
    between ``ĥ`` and the aligned text of ``c``, over the texts and over all ``k ≠ c``.

    Arguments as for `lsn_mech.experiments.sentence_similarity` (``center`` included);
    pass the same ``embeddings`` to both to run the model once.
    """
    languages, embeddings, provenance = embeddings_for(
        model,
        aligned,
        embeddings,
        method="language_dominance",
        pooling=pooling,
        center=center,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
        extra={"equation": "h_hat = h - v_k + v_c (Tang et al. Eq. 6)"},
    )
    return dominance_from_embeddings(
        embeddings, languages, pooling=pooling, center=center, provenance=provenance
    )
