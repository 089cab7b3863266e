"""LAPE: language activation probability entropy (Tang et al., ACL 2024, §2.2).

Follows the public reference code exactly (see ``docs/detectors.md``):

1. ``P[l, j, k] = count(act > 0) / tokens`` for language ``k``, read at ``site``
   (``"mlp_pre"``: the gate / first-projection pre-activation; ``act_fn(x) > 0 ⇔ x > 0``
   for GELU and SiLU).
2. ``P'[l, j, :] = P[l, j, :] / Σ_k P[l, j, k]`` (all-zero neurons give all zeros).
3. ``LAPE[l, j] = −Σ_k P'ₖ · ln P'ₖ`` with ``0 · ln 0 = 0``.
4. ``filter_bar`` = global quantile at ``filter_rate`` of all ``P`` values (layers ×
   neurons × languages); a neuron with no ``P[l, j, k] > filter_bar`` gets ``+inf``.
5. The ``round(top_rate · layers · d_mlp)`` lowest-entropy neurons are selected
   (ties: lower flat index ``l · d_mlp + j`` first).
6. ``activation_bar`` = global quantile at ``activation_bar_ratio``; a selected neuron
   belongs to every language ``k`` with ``P[l, j, k] > activation_bar``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    PROBABILITY_FIX,
    EntropySelection,
    QuantileMethod,
    check_entropy_rates,
    check_probabilities,
    check_selectable,
    entropy_detection,
    normalised_entropy,
    read_input,
    require_languages,
)
from lsn_mech.detect.registry import DetectorSpec, register, run, spec_keywords
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats


def lape_scores(probs: Float[Tensor, "layer d_mlp lang"]) -> Float[Tensor, "layer d_mlp"]:
    """LAPE entropy of every neuron, before any filtering.

    ``−Σ_k p'ₖ ln p'ₖ`` of the L1-normalised probabilities over languages (natural log,
    ``0 · ln 0 = 0``). A neuron that never activates in any language normalises to all
    zeros (0/0 taken as 0, as in the reference code) and scores 0; `lape` removes such
    neurons with its filter bar, since none of their probabilities exceeds it.

    Raises:
        DetectorInputError: fewer than 2 languages, or values outside ``[0, 1]``.
    """
    require_languages(probs.shape[-1], "LAPE")
    check_probabilities(probs)
    return normalised_entropy(probs)


@register("lape", label="LAPE")
@dataclasses.dataclass(frozen=True)
class LapeSpec(DetectorSpec):
    """LAPE's parameters; the defaults are the paper's and its reference code's."""

    top_rate: float = 0.01
    """Share of all neurons selected, lowest entropy first (paper: 0.01)."""
    filter_rate: float = 0.95
    """Quantile of all probabilities a neuron must exceed in at least one language to
    be eligible (paper: 0.95)."""
    activation_bar_ratio: float = 0.95
    """Quantile of all probabilities a selected neuron must exceed in a language to
    belong to it (paper: 0.95)."""
    site: str = "mlp_pre"
    """Where the probabilities are read (``"mlp_pre"``: ``act_fn(gate) > 0``)."""
    neuron_site: str = "mlp_post"
    """Site of the returned neurons (the input of the down projection, where
    deactivation zeroes them)."""
    quantile: QuantileMethod = "kthvalue"
    """``"kthvalue"`` (reference code: ``k``-th smallest value with ``k = round(N ·
    rate)``) or ``"linear"`` (``torch.quantile``)."""

    def __post_init__(self) -> None:
        check_entropy_rates(self)

    def detect(
        self,
        source: ActivationStats | Float[Tensor, "layer d_mlp lang"],
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> EntropySelection:
        """The steps of the module documentation; scores are the filtered entropies."""
        data = read_input(source, languages, kind="probability", site=self.site, model_id=model_id)
        require_languages(len(data.languages), "LAPE")
        check_probabilities(data.values)
        check_selectable(
            data.values,
            data.languages,
            method="LAPE",
            what="activation probabilities",
            fix=PROBABILITY_FIX,
        )
        return entropy_detection(self, data, data.values)


@spec_keywords(LapeSpec)
def lape_details(
    stats_or_probs: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> EntropySelection:
    """`lape`, returning also the probabilities, entropies, bars and selection mask.

    ``parameters`` are the fields of `LapeSpec`; same as ``run("lape", ...)``.
    """
    result = run(LapeSpec, stats_or_probs, languages=languages, model_id=model_id, **parameters)
    return cast(EntropySelection, result)


@spec_keywords(LapeSpec)
def lape(
    stats_or_probs: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> LanguageNeurons:
    """Language-specific neurons by activation probability entropy (LAPE).

    Returns one ``NeuronSet`` per language. A selected neuron belongs to every language
    whose probability exceeds the activation bar: to several languages, or to none (when
    ``top_rate`` reaches filtered neurons, or ``activation_bar_ratio > filter_rate``).
    ``provenance.parameters`` records every parameter and both bars. The steps are in
    the module documentation and in ``docs/detectors.md``.

    Args:
        stats_or_probs: `ActivationStats` (probabilities are read at ``site``) or a
            ``[layer, d_mlp, lang]`` tensor of activation probabilities.
        languages: with statistics, the languages to use (default: all, in their
            order); with a tensor, the code of each column (required).
        model_id: model the neurons belong to (default: the statistics' model id).
        **parameters: fields of `LapeSpec`, each documented there with the paper's
            default: ``top_rate`` (0.01), ``filter_rate`` (0.95),
            ``activation_bar_ratio`` (0.95), ``site`` (``"mlp_pre"``), ``neuron_site``
            (``"mlp_post"``), ``quantile`` (``"kthvalue"``).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[0.9, 0.0], [0.5, 0.5]], [[0.0, 0.8], [0.1, 0.1]]])
        >>> neurons = lape(probs, languages=["en", "fr"], top_rate=0.5, filter_rate=0.5,
        ...                activation_bar_ratio=0.5)
        >>> [sorted(neurons[x]) for x in neurons]
        [[(0, 0)], [(1, 0)]]
    """
    return lape_details(
        stats_or_probs, languages=languages, model_id=model_id, **parameters
    ).neurons
