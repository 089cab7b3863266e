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

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    DetectorInputError,
    EntropySelection,
    QuantileMethod,
    check_finite,
    check_rate,
    entropy_select,
    make_provenance,
    read_input,
    require_languages,
)
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


def lave_details(
    stats_or_means: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
    negative: NegativeRule = "clamp",
    site: str = "mlp_post",
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
    quantile: QuantileMethod = "kthvalue",
) -> EntropySelection:
    """`lave`, returning also the transformed values, entropies, bars and selection."""
    top_rate = check_rate("top_rate", top_rate, allow_zero=False)
    filter_rate = check_rate("filter_rate", filter_rate, allow_zero=True)
    activation_bar_ratio = check_rate("activation_bar_ratio", activation_bar_ratio, allow_zero=True)
    data = read_input(stats_or_means, languages, kind="mean", site=site, model_id=model_id)
    require_languages(len(data.languages), "LAVE")
    check_finite(data.values, "mean activations")
    values = lave_values(data.values, negative)
    entropy, selected, membership, filter_bar, activation_bar = entropy_select(
        values,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        quantile=quantile,
    )
    provenance = make_provenance(
        data,
        method="lave",
        parameters={
            "top_rate": top_rate,
            "filter_rate": filter_rate,
            "activation_bar_ratio": activation_bar_ratio,
            "negative": negative,
            "site": site,
            "neuron_site": neuron_site,
            "quantile": quantile,
            "tie_break": "flat_index",
            "filter_bar": filter_bar,
            "activation_bar": activation_bar,
            "n_selected": int(selected.sum()),
        },
    )
    neurons = LanguageNeurons.from_mask(
        membership,
        data.languages,
        site=neuron_site,
        model_id=data.model_id,
        provenance=provenance,
    )
    return EntropySelection(
        neurons=neurons,
        values=values.to(torch.float64),
        entropy=entropy,
        selected=selected,
        membership=membership,
        filter_bar=filter_bar,
        activation_bar=activation_bar,
    )


def lave(
    stats_or_means: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
    negative: NegativeRule = "clamp",
    site: str = "mlp_post",
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
    quantile: QuantileMethod = "kthvalue",
) -> LanguageNeurons:
    """Language-specific neurons by activation value entropy (LAVE, a LAPE variant).

    Args:
        stats_or_means: `ActivationStats` (means are read at ``site``) or a
            ``[layer, d_mlp, lang]`` tensor of mean activations.
        languages: subset/order of languages (statistics) or column codes (tensor).
        top_rate: share of all neurons selected, lowest entropy first (paper: 1 %).
        filter_rate: quantile of all values a neuron must exceed in some language.
        activation_bar_ratio: quantile of all values a selected neuron must exceed in
            a language to belong to it.
        negative: how negative means are made non-negative: ``"clamp"`` (default),
            ``"abs"`` or ``"shift"`` (see the module documentation).
        site: where the mean is read. Default ``"mlp_post"``, the neuron's output
            (the input of the down projection): ``act_fn(pre)`` for GPT-2/BLOOM (the
            paper's activation value), ``act_fn(gate) · up`` for gated MLPs, where
            ``act_fn(gate)`` alone is not a hook site. ``"mlp_pre"`` uses the
            pre-activation instead.
        neuron_site: site of the returned neurons (``"mlp_post"``).
        model_id: model the neurons belong to (default: the statistics' model id).
        quantile: ``"kthvalue"`` (reference-code rule) or ``"linear"``.
    """
    return lave_details(
        stats_or_means,
        languages=languages,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        negative=negative,
        site=site,
        neuron_site=neuron_site,
        model_id=model_id,
        quantile=quantile,
    ).neurons
