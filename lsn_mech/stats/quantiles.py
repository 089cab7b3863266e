"""Streaming per-neuron quantiles with bounded memory (Mondal et al.'s P5…P95).

Two accumulators for `lsn_mech.collect_stats(..., accumulators=[...])`:

* `QuantileAccumulator` (recommended): a per-neuron, per-language histogram whose
  edges are calibrated on the language's first batch and doubled (exactly) when later
  values fall outside. Memory is ``layers × d_mlp × lang × (bins + 2)`` counts, whatever
  the corpus size. Every quantile comes with a guaranteed error bound
  (`lsn_mech.stats.histogram`): at most one bin width ``(high − low) / bins`` of the
  neuron's range; with a fixed ``value_range``, values outside it fall in tail bins and
  a quantile there is bounded by the tail's width (``low − min`` or ``max − high``,
  exact minimum and maximum).
* `BatchQuantileAccumulator`: the authors' recipe, the exact quantile of each batch
  averaged over batches. It is *biased*: the mean of per-batch quantiles is not the
  quantile of the pooled tokens (for skewed activations and small batches the gap is
  far larger than the histogram's bound). Kept to reproduce the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from lsn_mech.errors import StatisticsMismatchError
from lsn_mech.stats.accumulators import Accumulator, State
from lsn_mech.stats.histogram import bin_index

PAPER_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
"""P5, P10, P25, P50, P75, P90, P95: the statistics of Mondal et al. (2025), Table 6."""


class QuantileAccumulator(Accumulator):
    """Per-neuron histograms with calibrated edges, for quantiles with a known error bound.

    Per site it keeps ``hist`` (int32 ``[layer, d_mlp, bins + 2, lang]``), the range
    ``hist_low``/``hist_high`` and the exact ``hist_min``/``hist_max`` (float32
    ``[layer, d_mlp, lang]``). A language's range is calibrated on its first batch as
    ``[min − margin·span, max + margin·span]``; a later value outside it doubles that
    neuron's range (bins merge in pairs, counts stay exact, see `widen`), so every
    quantile is within one bin width ``(high − low) / bins`` of the exact one. With
    ``value_range=(low, high)`` the edges are fixed for every neuron instead, values
    outside fall in two tail bins bounded by the exact minimum/maximum, and runs merge
    whatever their data. State is deterministic, so checkpoints resume to identical
    counts. Merging two runs that calibrated the same language differently is refused
    (give both the same ``value_range``, or collect disjoint languages per shard).
    Counts are int32: at most 2³¹ tokens per language.

    Args:
        sites: hook sites to histogram (the paper takes its statistics at ``mlp_pre``).
        bins: interior bins per neuron and language (even); the bound shrinks as ``1/bins``.
        margin: share of the first batch's span added on each side of the range, so that
            later, slightly more extreme values still land in interior bins.
        value_range: optional fixed ``(low, high)`` for every neuron instead of calibration.
    """

    name = "quantiles"
    quantities = ("hist", "hist_low", "hist_high", "hist_min", "hist_max")

    def __init__(
        self,
        sites: Sequence[str] = ("mlp_pre", "mlp_post"),
        bins: int = 256,
        margin: float | int = 0.25,
        value_range: Sequence[float | int] | None = None,
    ) -> None:
        super().__init__(tuple(sites))
        if not isinstance(bins, int) or bins < 2 or bins % 2:
            raise ValueError(
                f"bins must be an even integer ≥ 2 (bins merge in pairs), got {bins!r}."
            )
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number ≥ 0, got {margin!r}.")
        if value_range is not None:
            if len(value_range) != 2:
                raise ValueError(f"value_range must be (low, high), got {value_range!r}.")
            low, high = (float(x) for x in value_range)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"value_range must be finite (low, high), low < high: {value_range}"
                )
        self.bins = bins
        self.margin = float(margin)
        self.value_range = None if value_range is None else (low, high)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "bins": self.bins,
            "margin": self.margin,
            "value_range": list(self.value_range) if self.value_range else None,
        }

    def init_state(
        self, n_layers: int, d_mlp: int, n_languages: int, device: torch.device
    ) -> State:
        shape = (n_layers, d_mlp, n_languages)
        low, high = self.value_range if self.value_range else (math.inf, -math.inf)
        state: State = {}
        for site in self.sites:
            state[f"{site}/hist"] = torch.zeros(
                (n_layers, d_mlp, self.bins + 2, n_languages), dtype=torch.int32, device=device
            )
            state[f"{site}/hist_low"] = torch.full(shape, low, device=device)
            state[f"{site}/hist_high"] = torch.full(shape, high, device=device)
            state[f"{site}/hist_min"] = torch.full(shape, math.inf, device=device)
            state[f"{site}/hist_max"] = torch.full(shape, -math.inf, device=device)
        return state

    def update(
        self,
        state: State,
        site: str,
        layer: int,
        language: int,
        activations: Float[Tensor, "token d_mlp"],
    ) -> None:
        if activations.shape[0] == 0:
            return
        values = activations.float()
        batch_min, batch_max = values.aminmax(dim=0)
        low = state[f"{site}/hist_low"][layer, :, language]
        high = state[f"{site}/hist_high"][layer, :, language]
        # calibrate without a host sync: only where the range is still unset (low > high)
        fresh = ~(low <= high)
        span = batch_max - batch_min
        floor = 1e-3 * torch.maximum(batch_min.abs(), batch_max.abs()).clamp_min(1e-6)
        pad = torch.where(span > 0, self.margin * span, floor)  # a constant first batch
        low.copy_(torch.where(fresh, batch_min - pad, low))
        high.copy_(torch.where(fresh, batch_max + pad, high))
        running_min = state[f"{site}/hist_min"][layer, :, language]
        running_max = state[f"{site}/hist_max"][layer, :, language]
        torch.minimum(running_min, batch_min, out=running_min)
        torch.maximum(running_max, batch_max, out=running_max)
        counts = state[f"{site}/hist"][layer, :, :, language]
        if self.value_range is None:
            widen(counts, low, high, batch_min, batch_max)
        counts += bin_counts(values, low, high, self.bins).to(counts.dtype)

    def merge(self, first: State, second: State) -> State:
        """Add counts; edges must agree for every language both sides have counted."""
        merged: State = {}
        for site in self.sites:
            a_counts, b_counts = first[f"{site}/hist"], second[f"{site}/hist"]
            a_empty = a_counts.sum(dim=2) == 0
            b_empty = b_counts.sum(dim=2) == 0
            both = ~a_empty & ~b_empty
            for edge in ("hist_low", "hist_high"):
                a_edge, b_edge = first[f"{site}/{edge}"], second[f"{site}/{edge}"]
                if not bool(torch.equal(a_edge[both], b_edge[both])):
                    raise StatisticsMismatchError(
                        f"Cannot merge quantile histograms at {site!r}: a language counted in "
                        "both runs was calibrated to different bin edges. Collect each "
                        "language in one run, or give both runs the same fixed range with "
                        "QuantileAccumulator(sites, value_range=(low, high))."
                    )
                merged[f"{site}/{edge}"] = torch.where(a_empty, b_edge, a_edge)
            merged[f"{site}/hist"] = a_counts + b_counts
            merged[f"{site}/hist_min"] = _fmin(
                first[f"{site}/hist_min"], second[f"{site}/hist_min"], a_empty, b_empty
            )
            merged[f"{site}/hist_max"] = -_fmin(
                -first[f"{site}/hist_max"], -second[f"{site}/hist_max"], a_empty, b_empty
            )
        return merged


def widen(
    counts: Int[Tensor, "d_mlp nbin"],
    low: Float[Tensor, " d_mlp"],
    high: Float[Tensor, " d_mlp"],
    batch_min: Float[Tensor, " d_mlp"],
    batch_max: Float[Tensor, " d_mlp"],
    max_doublings: int = 512,
) -> None:
    """Double a neuron's range (in place) until it holds the batch, merging bins in pairs.

    Growing ``[low, high)`` to ``[low − span, high)`` (or ``[low, high + span)``) makes
    every new bin the union of two old ones, so the counts stay exact: no finite value
    ever lands in a tail bin, and the bound stays one bin width of the current range. The
    loop runs until every finite batch extreme is inside (a float32 range needs at most
    ~280 doublings); non-finite values are left to the tails.
    """
    half = (counts.shape[1] - 2) // 2
    for _ in range(max_doublings):
        left = (batch_min < low) & batch_min.isfinite()
        right = (batch_max >= high) & batch_max.isfinite() & ~left
        grow = left | right
        if not bool(grow.any()):
            return
        interior = counts[:, 1:-1]
        pairs = einops.reduce(interior, "d_mlp (half pair) -> d_mlp half", "sum", half=half)
        pairs = pairs.to(counts.dtype)
        empty = torch.zeros_like(pairs)
        moved = torch.where(left.unsqueeze(-1), torch.cat([empty, pairs], 1), interior)
        counts[:, 1:-1] = torch.where(right.unsqueeze(-1), torch.cat([pairs, empty], 1), moved)
        span = high - low
        low.copy_(torch.where(left, low - span, low))
        high.copy_(torch.where(right, high + span, high))


def bin_counts(
    values: Float[Tensor, "token d_mlp"],
    low: Float[Tensor, " d_mlp"],
    high: Float[Tensor, " d_mlp"],
    bins: int,
) -> Tensor:
    """``[d_mlp, bins + 2]`` counts of one batch: one affine map to bin indices, one bincount.

    Bin 0 is ``x < low``, bin ``bins + 1`` is ``x ≥ high`` (by comparison), bin ``k`` is
    ``low + (k − 1)·w ≤ x < low + k·w`` with ``w = (high − low) / bins`` (float32), see
    `lsn_mech.stats.histogram.bin_index`.
    """
    d_mlp = values.shape[1]
    index = bin_index(values, low, high, bins, torch.int32, nan_safe=False)
    offsets = torch.arange(d_mlp, device=values.device, dtype=torch.int32) * (bins + 2)
    flat = einops.rearrange(index + offsets, "token d_mlp -> (token d_mlp)")
    counts = torch.bincount(flat, minlength=d_mlp * (bins + 2))
    return einops.rearrange(counts, "(d_mlp nbin) -> d_mlp nbin", d_mlp=d_mlp)


def _fmin(a: Tensor, b: Tensor, a_empty: Tensor, b_empty: Tensor) -> Tensor:
    """Minimum of two running minima, ignoring sides that counted nothing (their value may
    be NaN after language alignment)."""
    a = torch.where(a_empty, torch.inf, a)
    b = torch.where(b_empty, torch.inf, b)
    return torch.minimum(a, b)


class BatchQuantileAccumulator(Accumulator):
    """The paper's quantiles: the exact quantile of each batch, averaged over batches.

    Biased: ``mean_b Q_q(batch_b) ≠ Q_q(all tokens)`` in general (for a skewed
    distribution and small batches the average of per-batch P90s misses the pooled P90
    by far more than `QuantileAccumulator`'s bound). Use it to reproduce the reference
    code, not as an estimate of the pooled quantile. A "batch" is one `collect_stats`
    batch: ``batch_size`` windows of one language.

    Per site it keeps ``bq_sum_p{…}`` (float64 sum of per-batch quantiles, one per
    ``quantiles`` entry) and ``bq_batches`` (int64 number of batches).
    """

    name = "batch_quantiles"

    def __init__(
        self,
        sites: Sequence[str] = ("mlp_pre", "mlp_post"),
        quantiles: Sequence[float | int] = PAPER_QUANTILES,
    ) -> None:
        super().__init__(tuple(sites))
        chosen = tuple(float(q) for q in quantiles)
        if not chosen or any(not 0.0 <= q <= 1.0 for q in chosen):
            raise ValueError(f"quantiles must be non-empty and lie in [0, 1], got {quantiles}.")
        self.quantiles = chosen
        self.quantities = (*(batch_key(q) for q in chosen), "bq_batches")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "quantiles": list(self.quantiles)}

    def init_state(
        self, n_layers: int, d_mlp: int, n_languages: int, device: torch.device
    ) -> State:
        shape = (n_layers, d_mlp, n_languages)
        state: State = {}
        for site in self.sites:
            for q in self.quantiles:
                state[f"{site}/{batch_key(q)}"] = torch.zeros(
                    shape, dtype=torch.float64, device=device
                )
            state[f"{site}/bq_batches"] = torch.zeros(shape, dtype=torch.int64, device=device)
        return state

    def update(
        self,
        state: State,
        site: str,
        layer: int,
        language: int,
        activations: Float[Tensor, "token d_mlp"],
    ) -> None:
        if activations.shape[0] == 0:
            return
        ordered = activations.float().sort(dim=0).values
        for q in self.quantiles:
            state[f"{site}/{batch_key(q)}"][layer, :, language] += sorted_quantile(
                ordered, q
            ).double()
        state[f"{site}/bq_batches"][layer, :, language] += 1


def batch_key(q: float) -> str:
    """State quantity of the batch-averaged quantile ``q`` (``0.9 → "bq_sum_p90"``)."""
    return f"bq_sum_p{format(q * 100, 'g')}"


def sorted_quantile(ordered: Float[Tensor, "token d_mlp"], q: float) -> Float[Tensor, " d_mlp"]:
    """``torch.quantile(…, q, dim=0)`` (linear) of values already sorted along tokens.

    Computed by indexing, so it has no input-size limit.
    """
    position = q * (ordered.shape[0] - 1)
    below = math.floor(position)
    above = min(below + 1, ordered.shape[0] - 1)
    return torch.lerp(ordered[below], ordered[above], position - below)
