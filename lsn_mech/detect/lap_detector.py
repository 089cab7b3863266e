"""LAP: language activation probability (Tang et al. §3.1 (b), after Voita et al. 2023).

A neuron is specific to language ``k`` when its activation probability on ``k``
exceeds a fixed threshold: ``P[l, j, k] > threshold`` (paper: 0.95).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    PROBABILITY_FIX,
    DetectorInputError,
    check_probabilities,
    check_rate,
    check_selectable,
    lowest_k,
    read_input,
)
from lsn_mech.detect.registry import Detection, DetectorSpec, register, run, spec_keywords
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats


@register("lap", label="LAP")
@dataclasses.dataclass(frozen=True)
class LapSpec(DetectorSpec):
    """LAP's parameters (Tang et al. §3.1 (b)); defaults are the paper's."""

    threshold: float = 0.95
    """Probability a neuron must exceed on a language to belong to it (paper: 0.95)."""
    top_rate: float | None = None
    """Optional cap. The paper compares every method at 1 % of the neurons (§3.2)
    without saying how LAP is cut to that size; with ``top_rate`` set, only the
    ``round(top_rate · layers · d_mlp)`` neurons with the highest ``max_k P[l, j, k]``
    among those above the threshold are kept (ties: lower flat index first), each
    still in every language above the threshold. ``None``: no cap."""
    site: str = "mlp_pre"
    """Where probabilities are read."""
    neuron_site: str = "mlp_post"
    """Site of the returned neurons."""

    def __post_init__(self) -> None:
        threshold = self.threshold
        if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
            raise DetectorInputError(
                f"threshold must be a probability in [0, 1], got {threshold!r} (paper: 0.95)."
            )
        object.__setattr__(self, "threshold", float(threshold))
        if self.top_rate is not None:
            top_rate = check_rate("top_rate", self.top_rate, allow_zero=False)
            object.__setattr__(self, "top_rate", top_rate)

    def detect(
        self,
        source: ActivationStats | Float[Tensor, "layer d_mlp lang"],
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> Detection:
        """Threshold each language's probabilities; scores are those probabilities."""
        data = read_input(source, languages, kind="probability", site=self.site, model_id=model_id)
        check_probabilities(data.values)
        check_selectable(
            data.values,
            data.languages,
            method="LAP",
            what="activation probabilities",
            fix=PROBABILITY_FIX,
        )
        above = data.values > self.threshold  # [layer, d_mlp, lang]
        layers, d_mlp, _ = above.shape
        if self.top_rate is not None:
            peak = data.values.max(dim=-1).values
            score = torch.where(above.any(dim=-1), -peak, torch.full_like(peak, float("inf")))
            k = min(round(self.top_rate * layers * d_mlp), int(above.any(dim=-1).sum()))
            above = above & lowest_k(score, k).unsqueeze(-1)
        neurons = LanguageNeurons.from_mask(
            above.permute(2, 0, 1),
            data.languages,
            site=self.neuron_site,
            model_id=data.model_id,
            provenance=self.provenance(data, {"tie_break": "flat_index"}),
        )
        return Detection(neurons=neurons, scores=data.values)


@spec_keywords(LapSpec)
def lap(
    stats_or_probs: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> LanguageNeurons:
    """Neurons whose activation probability on a language exceeds ``threshold``.

    ``neuron ∈ S_k  ⇔  P[l, j, k] > threshold`` (strict), independently for every
    language, so a neuron can belong to several languages (an always-on neuron belongs
    to all of them: that is the weakness LAPE addresses).

    Args:
        stats_or_probs: `ActivationStats` or a ``[layer, d_mlp, lang]`` probability tensor.
        languages: subset/order of languages (statistics) or column codes (tensor).
        model_id: model the neurons belong to (default: the statistics' model id).
        **parameters: fields of `LapSpec`, each documented there: ``threshold``
            (paper: 0.95), ``top_rate`` (an optional cap, default ``None``), ``site``
            (``"mlp_pre"``), ``neuron_site`` (``"mlp_post"``).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[0.97, 0.2], [0.99, 0.98]]])
        >>> neurons = lap(probs, languages=["en", "fr"])
        >>> sorted(neurons["en"]), sorted(neurons["fr"])
        ([(0, 0), (0, 1)], [(0, 1)])
    """
    return run(
        LapSpec, stats_or_probs, languages=languages, model_id=model_id, **parameters
    ).neurons
