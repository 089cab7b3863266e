"""Static conditional awareness ratio (CAR, LANDeRMT Eq. 6) from detection-time awareness.

``CAR = ΣΦ_S / (ΣΦ_S + ΣΦ_G)`` per layer, where the sums run over the pair's
language-specific neurons ``S`` and the language-general neurons ``G`` of that layer.
``Φ`` is per *language*; a neuron's awareness for a *pair* is a reduction over the
source and target language (``"mean"`` by default). A ratio of sums is unchanged by a
common factor, so ``"mean"`` and a sum over the two languages give the same CAR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lsn_mech.errors import LsnMechError, MissingLanguageError

CarFormula = Literal["paper", "swapped"]
PairAwareness = Literal["mean", "max", "min"]
PAIR_AWARENESS: tuple[str, ...] = ("mean", "max", "min")
CAR_FORMULAS: tuple[str, ...] = ("paper", "swapped")


class RoutingError(LsnMechError, ValueError):
    """Routing cannot be set up or applied as asked (the message says what to change)."""


def pair_awareness(
    awareness: Float[Tensor, "layer d_mlp lang"],
    languages: Sequence[str],
    src: str,
    tgt: str,
    how: PairAwareness = "mean",
) -> Float[Tensor, "layer d_mlp"]:
    """A neuron's awareness for the pair ``src → tgt``, from its per-language scores."""
    if how not in PAIR_AWARENESS:
        raise RoutingError(f"pair_awareness must be one of {PAIR_AWARENESS}, got {how!r}.")
    missing = [lang for lang in (src, tgt) if lang not in languages]
    if missing:
        raise MissingLanguageError(
            f"No awareness scores for {', '.join(map(repr, missing))}; the awareness tensor "
            f"covers {', '.join(languages)}. Score these languages, or use a constant CAR."
        )
    picked = awareness[..., [languages.index(src), languages.index(tgt)]].to(torch.float64)
    if how == "mean":
        return picked.mean(dim=-1)
    if how == "max":
        return picked.amax(dim=-1)
    return picked.amin(dim=-1)


def static_car(
    phi: Float[Tensor, "layer d_mlp"],
    general: Bool[Tensor, "layer d_mlp"],
    specific: Bool[Tensor, "layer d_mlp"],
    layers: Sequence[int],
    formula: CarFormula = "paper",
) -> Float[Tensor, " selected"]:
    """Eq. 6 for each selected layer, from pair awareness ``phi`` and the two neuron masks.

    ``"paper"``: the specific share ``ΣΦ_S / (ΣΦ_S + ΣΦ_G)`` (the paper's numerator sums
    over the N language-specific neurons); it scales the *general* branch (Eq. 7).
    ``"swapped"``: the general share ``ΣΦ_G / (ΣΦ_S + ΣΦ_G)``, which gives each branch
    its own share.
    """
    if formula not in CAR_FORMULAS:
        raise RoutingError(
            f"car_formula must be one of {CAR_FORMULAS} or a float in [0, 1], got {formula!r}."
        )
    if not phi.shape == general.shape == specific.shape:
        raise RoutingError(
            f"phi {tuple(phi.shape)}, general {tuple(general.shape)} and specific "
            f"{tuple(specific.shape)} must all be [layer, d_mlp] of the same model."
        )
    out_of_range = [layer for layer in layers if not 0 <= layer < phi.shape[0]]
    if out_of_range:
        raise RoutingError(
            f"Layers {out_of_range} are out of range: the model has {phi.shape[0]} layers."
        )
    if bool((phi < 0).any()) or not bool(torch.isfinite(phi).all()):
        raise RoutingError(
            "Awareness scores must be finite and non-negative (Φ = |ΔL|); check the scores."
        )
    values = []
    for layer in layers:
        sum_s = phi[layer][specific[layer]].sum()
        sum_g = phi[layer][general[layer]].sum()
        total = sum_s + sum_g
        if not bool(total > 0):
            raise RoutingError(
                f"Layer {layer}: the pair's specific neurons ({int(specific[layer].sum())}) "
                f"and the general neurons ({int(general[layer].sum())}) have zero total "
                f"awareness, so Eq. 6 is undefined. Select other layers, check the neuron "
                f"sets, or pass a constant car_formula (a float in [0, 1])."
            )
        values.append((sum_s if formula == "paper" else sum_g) / total)
    return torch.stack(values) if values else torch.zeros(0, dtype=torch.float64)
