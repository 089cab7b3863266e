"""LAP: language activation probability (Tang et al. §3.1 (b), after Voita et al. 2023).

A neuron is specific to language ``k`` when its activation probability on ``k``
exceeds a fixed threshold: ``P[l, j, k] > threshold`` (paper: 0.95).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    DetectorInputError,
    check_probabilities,
    check_rate,
    lowest_k,
    make_provenance,
    read_input,
)
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats


def lap(
    stats_or_probs: ActivationStats | Float[Tensor, "layer d_mlp lang"],
    *,
    languages: Sequence[str] | None = None,
    threshold: float = 0.95,
    top_rate: float | None = None,
    site: str = "mlp_pre",
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
) -> LanguageNeurons:
    """Neurons whose activation probability on a language exceeds ``threshold``.

    ``neuron ∈ S_k  ⇔  P[l, j, k] > threshold`` (strict), independently for every
    language, so a neuron can belong to several languages (an always-on neuron belongs
    to all of them: that is the weakness LAPE addresses).

    Args:
        stats_or_probs: `ActivationStats` or a ``[layer, d_mlp, lang]`` probability tensor.
        languages: subset/order of languages (statistics) or column codes (tensor).
        threshold: probability a neuron must exceed, paper: 0.95.
        top_rate: optional cap. The paper compares every method at 1 % of the neurons
            (§3.2) without saying how LAP is cut to that size; with ``top_rate`` set,
            only the ``round(top_rate · layers · d_mlp)`` neurons with the highest
            ``max_k P[l, j, k]`` among those above the threshold are kept (ties: lower
            flat index first), each still in every language above the threshold.
            Default ``None``: no cap.
        site: where probabilities are read (``"mlp_pre"``).
        neuron_site: site of the returned neurons (``"mlp_post"``).
        model_id: model the neurons belong to (default: the statistics' model id).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[0.97, 0.2], [0.99, 0.98]]])
        >>> neurons = lap(probs, languages=["en", "fr"])
        >>> sorted(neurons["en"]), sorted(neurons["fr"])
        ([(0, 0), (0, 1)], [(0, 1)])
    """
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise DetectorInputError(
            f"threshold must be a probability in [0, 1], got {threshold!r} (paper: 0.95)."
        )
    if top_rate is not None:
        top_rate = check_rate("top_rate", top_rate, allow_zero=False)
    data = read_input(stats_or_probs, languages, kind="probability", site=site, model_id=model_id)
    check_probabilities(data.values)
    above = data.values > threshold  # [layer, d_mlp, lang]
    layers, d_mlp, _ = above.shape
    if top_rate is not None:
        peak = data.values.max(dim=-1).values
        score = torch.where(above.any(dim=-1), -peak, torch.full_like(peak, float("inf")))
        k = min(round(top_rate * layers * d_mlp), int(above.any(dim=-1).sum()))
        above = above & lowest_k(score, k).unsqueeze(-1)
    provenance = make_provenance(
        data,
        method="lap",
        parameters={
            "threshold": float(threshold),
            "top_rate": top_rate,
            "site": site,
            "neuron_site": neuron_site,
            "tie_break": "flat_index",
        },
    )
    return LanguageNeurons.from_mask(
        above.permute(2, 0, 1),
        data.languages,
        site=neuron_site,
        model_id=data.model_id,
        provenance=provenance,
    )
