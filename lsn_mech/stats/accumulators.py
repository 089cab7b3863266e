"""Streaming per-neuron accumulators: constant memory whatever the corpus size.

An accumulator owns a few tensors of shape ``[layer, d_mlp, lang]`` per hook site and
updates them from the activations of the counted token positions of one batch. New
statistics (percentile sketches, for instance) are new accumulators: the collector,
checkpointing, merging and save/load work on any of them unchanged.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

State = dict[str, Tensor]
"""Tensors of one accumulator, keyed ``"{site}/{quantity}"``."""


class Accumulator(abc.ABC):
    """One kind of streaming statistic over the neurons of some hook sites."""

    name: str = "accumulator"
    quantities: tuple[str, ...] = ()
    """Names of the tensors it keeps per site; unique across accumulators of one run."""

    def __init__(self, sites: tuple[str, ...]) -> None:
        self.sites = tuple(sites)

    def keys(self) -> list[str]:
        """The ``"{site}/{quantity}"`` keys of the state this accumulator owns."""
        return [f"{site}/{quantity}" for site in self.sites for quantity in self.quantities]

    @abc.abstractmethod
    def init_state(
        self, n_layers: int, d_mlp: int, n_languages: int, device: torch.device
    ) -> State:
        """Fresh, empty tensors for this accumulator."""

    @abc.abstractmethod
    def update(
        self,
        state: State,
        site: str,
        layer: int,
        language: int,
        activations: Float[Tensor, "token d_mlp"],
    ) -> None:
        """Fold one batch's activations (counted positions only) into ``state`` in place."""

    def merge(self, first: State, second: State) -> State:
        """Statistics of the union of two disjoint token streams (sums by default)."""
        return {key: first[key] + second[key] for key in first}

    def config(self) -> dict[str, Any]:
        """JSON description used to refuse resuming or merging incompatible runs."""
        return {"name": self.name, "sites": list(self.sites)}


class MomentAccumulator(Accumulator):
    """Counts of positive activations, sums and sums of squares per neuron and language.

    Sums are kept in float64 so that merging shards and resuming from checkpoints agree
    with a single pass to within float64 rounding, whatever the model dtype.
    """

    name = "moments"
    quantities = ("positive", "sum", "sum_sq")

    def init_state(
        self, n_layers: int, d_mlp: int, n_languages: int, device: torch.device
    ) -> State:
        shape = (n_layers, d_mlp, n_languages)
        state: State = {}
        for site in self.sites:
            state[f"{site}/positive"] = torch.zeros(shape, dtype=torch.int64, device=device)
            state[f"{site}/sum"] = torch.zeros(shape, dtype=torch.float64, device=device)
            state[f"{site}/sum_sq"] = torch.zeros(shape, dtype=torch.float64, device=device)
        return state

    def update(
        self,
        state: State,
        site: str,
        layer: int,
        language: int,
        activations: Float[Tensor, "token d_mlp"],
    ) -> None:
        values = activations.float()
        state[f"{site}/positive"][layer, :, language] += (values > 0).sum(dim=0)
        state[f"{site}/sum"][layer, :, language] += values.sum(dim=0).double()
        state[f"{site}/sum_sq"][layer, :, language] += values.square().sum(dim=0).double()
