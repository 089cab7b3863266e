"""Sentence-embedding similarity (SES) of aligned texts across layers (Tang et al., Fig. 6).

The mean curve carries a percentile-bootstrap interval over the aligned texts (the units:
one text and its translations), computed by `lsn_mech.intervals`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lsn_mech import display, intervals
from lsn_mech.experiments._results import Result, ResultTable, table
from lsn_mech.experiments.embeddings import (
    Pooling,
    embeddings_for,
    named_embeddings,
)
from lsn_mech.experiments.layers import LayerDistribution
from lsn_mech.intervals import Bootstrap, Estimate, interval_header
from lsn_mech.models.protocol import HookedModel
from lsn_mech.provenance import Provenance


def pair_similarity(
    embeddings: Float[Tensor, "lang layer text d_model"],
) -> Float[Tensor, "lang lang layer"]:
    """``S[a, b, layer]``: mean cosine similarity of aligned texts of languages a and b.

    ``S[a, b, i] = (1/T) Σ_t cos(e[a, i, t], e[b, i, t])``, computed in float64. A zero
    embedding has cosine 0 with everything.
    """
    n_lang, n_layers, n_texts = embeddings.shape[:3]
    out = torch.empty(n_lang, n_lang, n_layers, dtype=torch.float64, device=embeddings.device)
    for layer in range(n_layers):  # float64 copies of one layer at a time
        normed = F.normalize(embeddings[:, layer].double(), dim=-1)
        out[:, :, layer] = torch.einsum("atd,btd->ab", normed, normed) / n_texts
    return out


def text_similarity(
    embeddings: Float[Tensor, "lang layer text d_model"],
) -> Float[Tensor, "text layer"]:
    """``s[t, layer]``: the cosine of text ``t``'s embeddings, averaged over the unordered
    pairs of different languages: the mean SES curve is ``s.mean(0)``, and the texts are
    the units its interval resamples."""
    n_lang, n_layers, n_texts = embeddings.shape[:3]
    if n_lang < 2:
        raise ValueError("A mean over language pairs needs at least two languages.")
    rows, cols = torch.triu_indices(n_lang, n_lang, offset=1, device=embeddings.device)
    out = torch.empty(n_texts, n_layers, dtype=torch.float64, device=embeddings.device)
    for layer in range(n_layers):
        normed = F.normalize(embeddings[:, layer].double(), dim=-1)  # [lang, text, d]
        out[:, layer] = (normed[rows] * normed[cols]).sum(-1).mean(0)
    return out


def mean_over_pairs(matrix: Float[Tensor, "lang lang layer"]) -> Float[Tensor, " layer"]:
    """Mean of ``matrix[a, b]`` over the unordered pairs ``a < b`` of different languages."""
    n = matrix.shape[0]
    if n < 2:
        raise ValueError("A mean over language pairs needs at least two languages.")
    rows, cols = torch.triu_indices(n, n, offset=1, device=matrix.device)
    return matrix[rows, cols].mean(dim=0)


@dataclasses.dataclass
class SentenceSimilarity(Result):
    """Mean sentence-embedding similarity of aligned texts, per language pair and layer.

    Attributes:
        languages: language order.
        matrix: ``matrix[a][b][layer]``: mean cosine of aligned texts of languages
            ``a`` and ``b`` after block ``layer`` (symmetric; 1 on the diagonal for
            non-zero embeddings).
        mean: the mean over all unordered pairs of different languages, per layer:
            the curve of Fig. 6.
        n_texts: aligned texts per language.
        pooling: how token residuals became a sentence embedding.
        centered: whether the embeddings were centred first (`center_embeddings`).
        mean_low, mean_high: the bounds of ``mean`` per layer, a percentile-bootstrap
            interval over the aligned texts (``None`` in files from before intervals).
    """

    languages: list[str]
    matrix: list[list[list[float]]]
    mean: list[float]
    n_texts: int
    pooling: str
    centered: bool = False
    mean_low: list[float] | None = None
    mean_high: list[float] | None = None
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def n_layers(self) -> int:
        """Layers (blocks) of the model."""
        return len(self.mean)

    def mean_estimates(self) -> list[Estimate]:
        """The mean SES per layer with its interval over texts (no interval when the
        result has no bounds)."""
        level = Bootstrap.from_dict(self.provenance.parameters.get("intervals")).level
        if self.mean_low is None or self.mean_high is None:
            return [Estimate.point(v, level) for v in self.mean]
        return [Estimate(*v, level) for v in zip(self.mean, self.mean_low, self.mean_high)]

    def pairs(self) -> list[tuple[str, str]]:
        """Unordered language pairs, in language order."""
        n = len(self.languages)
        return [(self.languages[i], self.languages[j]) for i in range(n) for j in range(i + 1, n)]

    def curve(self, a: str, b: str) -> list[float]:
        """Per-layer SES of one language pair."""
        return list(self.matrix[self.languages.index(a)][self.languages.index(b)])

    def peak_layer(self) -> int:
        """The layer where the mean SES is highest."""
        return max(range(self.n_layers), key=lambda i: self.mean[i])

    table_forms = ("wide", "long")

    def tabulate(self, *, form: str = "wide") -> ResultTable:
        """``form="wide"``: one row per layer, the mean over pairs with its interval bounds
        (``mean, mean_low, mean_high``), then one column per language pair (``"en-fr"``).
        ``form="long"``: one row per (layer, pair) with ``language_a``, ``language_b`` and
        ``similarity`` (unordered pairs, in language order, as the wide columns)."""
        pairs = self.pairs()
        if form == "long":
            rows_long = [
                [layer, a, b, self.curve(a, b)[layer]]
                for layer in range(self.n_layers)
                for a, b in pairs
            ]
            return ResultTable(["layer", "language_a", "language_b", "similarity"], rows_long)
        means = self.mean_estimates()
        rows = [
            [layer, *means[layer].cells(), *(self.curve(a, b)[layer] for a, b in pairs)]
            for layer in range(self.n_layers)
        ]
        header = ["layer", *interval_header("mean"), *(f"{a}-{b}" for a, b in pairs)]
        return ResultTable(header, rows)

    def _display_summary(self) -> str:
        peak = self.peak_layer() if self.n_layers else None
        where = (
            f"; mean highest at layer {peak} ({self.mean[peak]:.3f})" if peak is not None else ""
        )
        return (
            f"{display.plural(len(self.languages), 'language')}, {self.n_texts} aligned texts, "
            f"{self.n_layers} layers, {self.pooling} pooling"
            f"{', centred' if self.centered else ''}{where}"
        )

    def _display_table(self) -> display.Table:
        header, rows = self.tabulate()
        return display.Table(header, rows, heat=display.numeric_heat(rows), legend="colour: SES")

    def plot(self, distribution: LayerDistribution | None = None, *, pairs: bool = True) -> Any:
        """Mean SES per layer (bold), each pair's curve (thin), and optionally the number
        of language-specific neurons per layer on a second axis (Fig. 6)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        figure = make_subplots(specs=[[{"secondary_y": distribution is not None}]])
        layers = list(range(self.n_layers))
        if pairs:
            for a, b in self.pairs():
                figure.add_trace(
                    go.Scatter(
                        x=layers,
                        y=self.curve(a, b),
                        mode="lines",
                        name=f"{a}–{b}",
                        line={"width": 1},
                        opacity=0.45,
                        legendgroup="pairs",
                    ),
                    secondary_y=False,
                )
        means = self.mean_estimates()
        figure.add_trace(
            go.Scatter(
                x=layers,
                y=self.mean,
                mode="lines+markers",
                name="mean SES",
                line={"color": "black", "width": 3},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [e.high - e.value if e.has_interval else 0.0 for e in means],
                    "arrayminus": [e.value - e.low if e.has_interval else 0.0 for e in means],
                },
                hovertext=[f"layer {i}: mean SES {e.format('.3f')}" for i, e in enumerate(means)],
            ),
            secondary_y=False,
        )
        if distribution is not None:
            figure.add_trace(
                go.Bar(
                    x=list(range(distribution.n_layers)),
                    y=distribution.union,
                    name="language-specific neurons",
                    opacity=0.35,
                    marker={"color": "firebrick"},
                ),
                secondary_y=True,
            )
            figure.update_yaxes(title_text="neurons (union)", secondary_y=True)
        figure.update_yaxes(title_text="mean SES (cosine)", secondary_y=False)
        figure.update_xaxes(title_text="layer")
        figure.update_layout(title="Sentence-embedding similarity of aligned texts across layers")
        return figure

    def __str__(self) -> str:
        pairs = self.pairs()
        shown = pairs[:8]
        header = ["layer", "mean", *(f"{a}-{b}" for a, b in shown)]
        means = self.mean_estimates()
        rows = [
            [str(layer), means[layer].format(".3f"), *(self.curve(a, b)[layer] for a, b in shown)]
            for layer in range(self.n_layers)
        ]
        hidden = len(pairs) - len(shown)
        more = f" ({hidden} more pairs in .matrix)" if hidden else ""
        return (
            f"Mean SES over {len(pairs)} language pairs, {self.n_texts} aligned texts, "
            f"{self.pooling} pooling{more}\n" + table(header, rows)
        )


def similarity_from_embeddings(
    embeddings: Float[Tensor, "lang layer text d_model"],
    languages: Sequence[str],
    *,
    pooling: str = "mean",
    center: bool = False,
    provenance: Provenance | None = None,
    bootstrap: Bootstrap | None = None,
) -> SentenceSimilarity:
    """`SentenceSimilarity` of ready embeddings (``[lang, layer, text, d_model]``); ``center``
    subtracts the mean over all texts at each layer first (`center_embeddings`).
    ``bootstrap`` sets the mean curve's interval over texts (default 1000 resamples, 95 %,
    seed 0); it is recorded in the provenance under ``"intervals"``."""
    settings = bootstrap or intervals.DEFAULT
    named = named_embeddings(embeddings, languages, center=center)
    matrix = pair_similarity(named)
    means = intervals.bootstrap_each(intervals.mean_of, text_similarity(named), settings)
    provenance = provenance or Provenance(method="sentence_similarity")
    provenance = dataclasses.replace(
        provenance, parameters={**provenance.parameters, "intervals": settings.to_dict()}
    )
    return SentenceSimilarity(
        languages=list(languages),
        matrix=matrix.tolist(),
        mean=mean_over_pairs(matrix).tolist(),
        n_texts=int(embeddings.shape[2]),
        pooling=pooling,
        centered=center,
        mean_low=[e.low for e in means],
        mean_high=[e.high for e in means],
        provenance=provenance,
    )


def sentence_similarity(
    model: HookedModel | None,
    aligned: Mapping[str, Sequence[str]],
    *,
    pooling: Pooling = "mean",
    embeddings: Float[Tensor, "lang layer text d_model"] | None = None,
    center: bool = False,
    batch_size: int = 16,
    max_length: int = 256,
    progress: bool = True,
    bootstrap: Bootstrap | None = None,
) -> SentenceSimilarity:
    """Mean cosine similarity of the sentence embeddings of aligned texts, per layer and
    language pair (Tang et al., Fig. 6).

    For layer ``i``, languages ``a`` and ``b`` and ``T`` aligned texts,
    ``SES_i(a, b) = (1/T) Σ_t cos(e_i(a, t), e_i(b, t))``, where ``e_i(x, t)`` is the
    sentence embedding of text ``t`` of language ``x`` after block ``i`` (see
    `sentence_embeddings`); the curve of Fig. 6 is the mean of ``SES_i(a, b)`` over all
    pairs ``a < b``.

    Args:
        model: the model (``None`` is allowed when ``embeddings`` are given).
        aligned: ``{language: [text, ...]}``, text ``t`` of every language a translation
            of the others' (see `aligned_verses`).
        pooling: ``"mean"`` (over the text's tokens, without BOS) or ``"last"``.
        embeddings: embeddings already computed by `sentence_embeddings` on ``aligned``
            (then nothing runs through the model).
        center: subtract, at each layer, the mean embedding over all texts of all
            languages before the cosines (`center_embeddings`). ``False`` (the paper's
            raw cosine) by default; residual streams share a large common component,
            so raw cosines of any two texts can all be close to 1.
        batch_size: texts per forward pass.
        max_length: tokens per text at most.
        progress: show a progress bar.
        bootstrap: resamples, level and seed of the mean curve's interval over texts.
    """
    languages, embeddings, provenance = embeddings_for(
        model,
        aligned,
        embeddings,
        method="sentence_similarity",
        pooling=pooling,
        center=center,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
    )
    return similarity_from_embeddings(
        embeddings,
        languages,
        pooling=pooling,
        center=center,
        provenance=provenance,
        bootstrap=bootstrap,
    )
