"""LAVE: language activation value entropy (Tang et al. §3.1 (c)).

LAPE with the mean activation value of each neuron on each language in place of its
activation probability. Mean activations can be negative, which an entropy cannot
take, so they are first made non-negative (``negative=``):

* ``"clamp"`` (default): ``v = max(mean, 0)``: a language on which the neuron's mean
  output is negative counts as not activating it, like ``act > 0`` in LAPE;
* ``"abs"``: ``v = |mean|``: the size of the response, whatever its sign;
* ``"shift"``: ``v = mean − min(0, min over all layers, neurons and languages)``: one
  global shift that keeps every ordering.

Then exactly the LAPE recipe runs on ``v``: L1 normalisation over languages, entropy
with ``0 · ln 0 = 0``, a global ``filter_rate`` quantile of all ``v`` as the filter bar
(no ``v > bar`` ⇒ ``+inf``), the ``round(top_rate · layers · d_mlp)`` lowest
entropies, and membership where ``v > activation_bar`` (global
``activation_bar_ratio`` quantile of ``v``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    DetectorInputError,
    EntropySelection,
    QuantileMethod,
    check_entropy_rates,
    check_finite,
    check_selectable,
    entropy_detection,
    read_input,
    require_languages,
)
from lsn_mech.detect.registry import DetectorSpec, register, run, spec_keywords
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats

NegativeRule = Literal["clamp", "abs", "shift"]


def lave_values(
    means: Float[Tensor, "layer d_mlp lang"], negative: NegativeRule = "clamp"
) -> Float[Tensor, "layer d_mlp lang"]:
    """Mean activations made non-negative by the ``negative`` rule (see the module doc)."""
    if negative == "clamp":
        return means.clamp_min(0.0)
    if negative == "abs":
        return means.abs()
    if negative == "shift":
        return means - min(float(means.min()), 0.0)
    raise DetectorInputError(f"negative must be 'clamp', 'abs' or 'shift', got {negative!r}.")


@register("lave", label="LAVE")
@dataclasses.dataclass(frozen=True)
class LaveSpec(DetectorSpec):
    """LAVE's parameters: LAPE's (same defaults, paper §3.1 (c)) plus the negative rule."""

    top_rate: float = 0.01
    """Share of all neurons selected, lowest entropy first (paper: 1 %)."""
    filter_rate: float = 0.95
    """Quantile of all values a neuron must exceed in some language to be eligible."""
    activation_bar_ratio: float = 0.95
    """Quantile of all values a selected neuron must exceed in a language to belong to it."""
    negative: NegativeRule = "clamp"
    """How negative means are made non-negative: ``"clamp"``, ``"abs"`` or ``"shift"``
    (module documentation)."""
    site: str = "mlp_post"
    """Where the mean is read: the neuron's output (the input of the down projection):
    ``act_fn(pre)`` for GPT-2/BLOOM (the paper's activation value), ``act_fn(gate) · up``
    for gated MLPs, where ``act_fn(gate)`` alone is not a hook site. ``"mlp_pre"`` uses
    the pre-activation instead."""
    neuron_site: str = "mlp_post"
    """Site of the returned neurons."""
    quantile: QuantileMethod = "kthvalue"
    """``"kthvalue"`` (reference-code rule) or ``"linear"``."""

    def __post_init__(self) -> None:
        check_entropy_rates(self)
        if self.negative not in ("clamp", "abs", "shift"):
            raise DetectorInputError(
                f"negative must be 'clamp', 'abs' or 'shift', got {self.negative!r}."
            )

    def detect(
        self,
        source: ActivationStats | Float[Tensor, "layer d_mlp lang"],
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> EntropySelection:
        """LAPE's recipe on the transformed means; scores are the filtered entropies."""
        data = read_input(source, languages, kind="mean", site=self.site, model_id=model_id)
        require_languages(len(data.languages), "LAVE")
        check_finite(data.values, "mean activations")
        values = lave_values(data.values, self.negative)
        check_selectable(
            values,
            data.languages,
            method="LAVE",
            what="transformed mean activations",
            fix="Check the statistics: they may come from an empty corpus or a model whose "
            "MLP outputs are constant (e.g. zeroed weights).",
        )
        return entropy_detection(self, data, values, stored_values=values.to(torch.float64))


@spec_keywords(LaveSpec)
def lave_details(
    stats_or_means: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> EntropySelection:
    """`lave`, returning also the transformed values, entropies, bars and selection.

    ``parameters`` are the fields of `LaveSpec`; same as ``run("lave", ...)``.
    """
    result = run(LaveSpec, stats_or_means, languages=languages, model_id=model_id, **parameters)
    return cast(EntropySelection, result)


@spec_keywords(LaveSpec)
def lave(
    stats_or_means: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> LanguageNeurons:
    """Language-specific neurons by activation value entropy (LAVE, a LAPE variant).

    Args:
        stats_or_means: `ActivationStats` (means are read at ``site``) or a
            ``[layer, d_mlp, lang]`` tensor of mean activations.
        languages: subset/order of languages (statistics) or column codes (tensor).
        model_id: model the neurons belong to (default: the statistics' model id).
        **parameters: fields of `LaveSpec`, each documented there: ``top_rate``
            (0.01), ``filter_rate`` (0.95), ``activation_bar_ratio`` (0.95),
            ``negative`` (``"clamp"``), ``site`` (``"mlp_post"``), ``neuron_site``
            (``"mlp_post"``), ``quantile`` (``"kthvalue"``).
    """
    return lave_details(
        stats_or_means, languages=languages, model_id=model_id, **parameters
    ).neurons
