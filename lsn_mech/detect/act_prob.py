"""Act Prob 90p (Mondal et al. 2025, §3): neurons that often exceed a high percentile.

``score[l, j, k]`` = fraction of language ``k``'s tokens on which neuron ``(l, j)``
exceeds a threshold; the ``round(rate · layers · d_mlp)`` highest-scoring neurons of each
language are that language's neurons (paper: ``rate = 0.00125``, threshold = P90).

Two thresholds:

* ``threshold="own"`` (the paper): each language's own P90 of that neuron. Then the
  score is **≈ 0.1 by construction** for every neuron: exactly 10 % of a language's
  tokens lie above its own P90, up to ties at the threshold and the discreteness of
  ``n`` tokens. The ranking is therefore decided by ties and zeros (and, in the reference
  code, by the bias of batch-averaged percentiles), not by language specificity. From
  histograms (values spread evenly inside a bin) the score is 0.1 up to rounding; the
  ``own_estimate="batch_mean"`` threshold reproduces the reference code's ranking.
* ``threshold="pooled"``: one threshold per neuron, the P90 of all languages' tokens
  pooled (from the merged histograms). A language whose tokens exceed it more often than
  10 % of the time scores high, so the score measures specificity, and it no longer
  depends on anything but the neuron's own distributions (the languages in ``stats``
  set the pooled threshold, so it is set-dependent in that sense).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    DetectorInput,
    DetectorInputError,
    check_rate,
    check_selectable,
    lowest_k,
)
from lsn_mech.detect.registry import DetectorSpec, register, run, spec_keywords
from lsn_mech.errors import StatisticsMismatchError
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats
from lsn_mech.stats.histogram import fraction_above, fraction_above_error_bound, pooled_quantile
from lsn_mech.stats.percentiles import histogram, quantile

Threshold = Literal["own", "pooled"]
OwnEstimate = Literal["histogram", "batch_mean"]


@dataclasses.dataclass(frozen=True)
class ActProbSelection:
    """What `act_prob_details` computed: neurons, scores and thresholds.

    ``scores``/``thresholds`` are ``[layer, d_mlp, lang]`` (``"pooled"``: the same
    threshold repeated over languages); ``selected`` is the ``[lang, layer, d_mlp]`` mask.
    ``score_bounds`` bounds ``|score − exact fraction of tokens above the threshold|``
    (0 where the histogram knows the count exactly, e.g. a threshold of exactly 0 with
    the moments' positive counts; see `lsn_mech.stats.histogram.fraction_above_error_bound`).
    """

    neurons: LanguageNeurons
    scores: Float[Tensor, "layer d_mlp lang"]
    thresholds: Float[Tensor, "layer d_mlp lang"]
    selected: Tensor
    score_bounds: Float[Tensor, "layer d_mlp lang"] | None = None


def act_prob_scores(
    stats: ActivationStats,
    *,
    percentile: float | int = 90.0,
    threshold: Threshold = "own",
    own_estimate: OwnEstimate = "histogram",
    site: str = "mlp_pre",
) -> tuple[Float[Tensor, "layer d_mlp lang"], Float[Tensor, "layer d_mlp lang"]]:
    """``(scores, thresholds)``: fraction of each language's tokens above the threshold.

    Both are read from `QuantileAccumulator` histograms at ``site``: the fraction above
    is exact where the counts pin it (below the minimum, at or above the maximum, at a
    threshold of exactly 0 when the statistics hold the exact positive counts) and
    assumes evenly spread values inside the threshold's bin elsewhere (error bound:
    `act_prob_details(...).score_bounds`).
    """
    if not (isinstance(percentile, (int, float)) and 0 < percentile < 100):
        raise DetectorInputError(
            f"percentile must lie in (0, 100), got {percentile!r} (paper: 90)."
        )
    q = float(percentile) / 100
    if threshold not in ("own", "pooled"):
        raise DetectorInputError(f"threshold must be 'own' or 'pooled', got {threshold!r}.")
    try:
        hist = histogram(stats, site)
        if threshold == "own":
            cut = quantile(stats, q, site, own_estimate)
        else:
            cut = pooled_quantile(hist, q).unsqueeze(-1).expand(-1, -1, len(stats.languages))
    except StatisticsMismatchError as error:
        raise DetectorInputError(f"Act Prob {percentile:g}p: {error}") from None
    return fraction_above(hist, cut), cut.contiguous()


def _score_bounds(
    stats: ActivationStats, site: str, thresholds: Float[Tensor, "layer d_mlp lang"]
) -> Float[Tensor, "layer d_mlp lang"]:
    """`fraction_above_error_bound` of the scores (the histogram was read just before)."""
    return fraction_above_error_bound(histogram(stats, site), thresholds)


@register("act-prob-90p", label="Act-Prob-90p")
@dataclasses.dataclass(frozen=True)
class ActProbSpec(DetectorSpec):
    """Act-Prob-90p's parameters; defaults are the paper's (Mondal et al. 2025, §3)."""

    method: ClassVar[str] = "act_prob_90p"
    reads: ClassVar[str] = "ActivationStats with QuantileAccumulator histograms at site"

    rate: float | int = 0.00125
    """Share of all neurons selected per language (paper: 0.00125)."""
    percentile: float | int = 90.0
    """The threshold's percentile (paper: 90)."""
    threshold: Threshold = "own"
    """``"own"``: each language's own percentile of the neuron (the paper); ``"pooled"``:
    the percentile of all languages' tokens pooled, one threshold shared by them."""
    own_estimate: OwnEstimate = "histogram"
    """How the own percentile is estimated: ``"histogram"`` (bounded error) or
    ``"batch_mean"`` (the reference code's batch-averaged percentile; needs a
    `BatchQuantileAccumulator`). Unused with ``threshold="pooled"``."""
    site: str = "mlp_pre"
    """Where the activations were histogrammed (paper: ``"mlp_pre"``)."""
    neuron_site: str = "mlp_post"
    """Site of the returned neurons."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check_rate("rate", float(self.rate), allow_zero=False))
        percentile = self.percentile
        if not (isinstance(percentile, (int, float)) and 0 < percentile < 100):
            raise DetectorInputError(
                f"percentile must lie in (0, 100), got {percentile!r} (paper: 90)."
            )
        object.__setattr__(self, "percentile", float(percentile))
        if self.threshold not in ("own", "pooled"):
            raise DetectorInputError(
                f"threshold must be 'own' or 'pooled', got {self.threshold!r}."
            )
        if self.own_estimate not in ("histogram", "batch_mean"):
            raise DetectorInputError(
                f"own_estimate must be 'histogram' or 'batch_mean', got {self.own_estimate!r}."
            )

    def detect(
        self,
        source: ActivationStats,
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> ActProbSelection:
        """Top ``rate`` share of neurons per language by fraction of tokens above the cut."""
        stats = source
        if not isinstance(stats, ActivationStats):
            raise DetectorInputError(
                f"act_prob_90p needs ActivationStats with quantile histograms, got "
                f"{type(stats).__name__}. Collect them with lsn_mech.collect_stats(model, "
                "corpus, accumulators=[MomentAccumulator(sites), "
                "QuantileAccumulator(('mlp_pre',))])."
            )
        if languages is not None:
            if isinstance(languages, str):
                raise DetectorInputError(f"languages must be a list of codes, got {languages!r}.")
            stats = stats.subset(list(languages))
        scores, cuts = act_prob_scores(
            stats,
            percentile=self.percentile,
            threshold=self.threshold,
            own_estimate=self.own_estimate,
            site=self.site,
        )
        check_selectable(
            scores,
            list(stats.languages),
            method="Act-Prob",
            dead="bounds",
            what="fractions of tokens above the threshold",
            fix="No neuron exceeds its threshold on any token (all 0), or every token "
            "exceeds it (all 1): check the statistics "
            f"(stats.tokens, the histograms at {self.site!r}) or use threshold='pooled'.",
        )
        layers, d_mlp, n_languages = scores.shape
        k = round(self.rate * layers * d_mlp)
        selected = torch.stack(
            [lowest_k(-scores[..., index], k) for index in range(n_languages)]
        )  # highest scores first; ties: lower flat index
        prov = stats.provenance
        data = DetectorInput(
            values=scores,
            languages=list(stats.languages),
            source="ActivationStats",
            model_id=model_id if model_id is not None else prov.model_id,
            corpus=prov.corpus,
            corpus_hash=prov.corpus_hash,
        )
        derived = {
            "k_per_language": k,
            "score": "fraction of the language's tokens > threshold (histogram estimate)",
            "quantile": "torch.quantile (linear), per language and pooled alike",
            "tie_break": "flat_index",
        }
        neurons = LanguageNeurons.from_mask(
            selected,
            data.languages,
            site=self.neuron_site,
            model_id=data.model_id,
            provenance=self.provenance(data, derived),
        )
        return ActProbSelection(
            neurons=neurons,
            scores=scores,
            thresholds=cuts,
            selected=selected,
            score_bounds=_score_bounds(stats, self.site, cuts),
        )


@spec_keywords(ActProbSpec)
def act_prob_details(
    stats: ActivationStats,
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> ActProbSelection:
    """`act_prob_90p`, returning also the scores, thresholds and selection mask.

    ``parameters`` are the fields of `ActProbSpec`; same as ``run("act-prob-90p", ...)``.
    """
    result = run(ActProbSpec, stats, languages=languages, model_id=model_id, **parameters)
    return cast(ActProbSelection, result)


@spec_keywords(ActProbSpec)
def act_prob_90p(
    stats: ActivationStats,
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> LanguageNeurons:
    """Language-specific neurons by Activation Probability 90p (Mondal et al. 2025).

    For each language, the ``round(rate · layers · d_mlp)`` neurons whose activations
    exceed the threshold on the largest fraction of the language's tokens (ties: lower
    flat index first). With the paper's ``threshold="own"`` every score is ≈ 0.1 by
    construction, so the ranking is driven by ties/zeros, not by specificity (module
    docstring and ``docs/percentiles.md``); ``threshold="pooled"`` uses the neuron's P90
    over all languages' tokens pooled, a threshold shared by the languages.

    Args:
        stats: statistics collected with a `lsn_mech.stats.QuantileAccumulator` at ``site``
            (plus a `BatchQuantileAccumulator` for ``own_estimate="batch_mean"``).
        languages: languages to detect for (default: all); with ``"pooled"`` they also
            define the pool.
        model_id: model the neurons belong to (default: the statistics' model id).
        **parameters: fields of `ActProbSpec`, each documented there with the paper's
            default: ``rate`` (0.00125), ``percentile`` (90), ``threshold``
            (``"own"``), ``own_estimate`` (``"histogram"``), ``site`` (``"mlp_pre"``),
            ``neuron_site`` (``"mlp_post"``).

    Raises:
        DetectorInputError: the statistics lack histograms at ``site`` (the message names
            the ``collect_stats(..., accumulators=[...])`` call), or a bad parameter.
    """
    return act_prob_details(stats, languages=languages, model_id=model_id, **parameters).neurons
