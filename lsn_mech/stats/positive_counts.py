"""Counts of activations > 0 only: the one statistic the LAPE reference code records.

It lives with the other accumulators (not with the LAPE file readers in `lsn_mech.detect`)
so that statistics imported from LAPE files load and merge in a process that never
imported the detectors.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.stats.accumulators import Accumulator, State


class PositiveCountAccumulator(Accumulator):
    """Counts of activations > 0 only: what the LAPE reference code records.

    Imported statistics carry this accumulator's config (``{"name": "positive_counts",
    "sites": ["mlp_pre"]}``), so they merge with each other (counts add up) but are
    refused by `ActivationStats.merge` next to statistics collected with the default
    moments accumulator, which carry sums too. It can also be passed to
    `lsn_mech.collect_stats` to collect exactly what the reference code collects.
    """

    name = "positive_counts"
    quantities = ("positive",)

    def init_state(
        self, n_layers: int, d_mlp: int, n_languages: int, device: torch.device
    ) -> State:
        shape = (n_layers, d_mlp, n_languages)
        return {
            f"{site}/positive": torch.zeros(shape, dtype=torch.int64, device=device)
            for site in self.sites
        }

    def update(
        self,
        state: State,
        site: str,
        layer: int,
        language: int,
        activations: Float[Tensor, "token d_mlp"],
    ) -> None:
        state[f"{site}/positive"][layer, :, language] += (activations > 0).sum(dim=0)
