"""Quantiles, error bounds and CDFs read from per-neuron histograms (pure tensor functions).

A histogram of one site is ``counts[layer, d_mlp, bins + 2, lang]``: bin 0 holds values
below ``low`` (the underflow), bins ``1…bins`` split ``[low, high)`` into equal widths,
bin ``bins + 1`` holds values ``≥ high`` (the overflow). ``vmin``/``vmax`` are the exact
running minimum and maximum, so the tail bins span ``[vmin, low)`` and ``[high, vmax]``.
All arguments except ``counts`` are ``[layer, d_mlp, lang]``.

Why this estimate has a bound: counts are exact, so the ``i``-th smallest value lies in
the (known) bin where the cumulative count passes ``i``; the estimate is placed in the
same bin, so the two differ by at most that bin's width.
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class Histogram:
    """One site's histogram state (see the module docstring for the layout)."""

    counts: Int[Tensor, "layer d_mlp nbin lang"]
    low: Float[Tensor, "layer d_mlp lang"]
    high: Float[Tensor, "layer d_mlp lang"]
    vmin: Float[Tensor, "layer d_mlp lang"]
    vmax: Float[Tensor, "layer d_mlp lang"]

    @property
    def bins(self) -> int:
        """Interior bins (the two tail bins excluded)."""
        return self.counts.shape[2] - 2

    def language(self, index: int) -> _OneLanguage:
        """The histogram of one language, with its cumulative counts."""
        counts = self.counts[..., index]
        return _OneLanguage(
            counts=counts,
            cumulative=counts.cumsum(dim=-1),
            low=self.low[..., index].double(),
            high=self.high[..., index].double(),
            vmin=self.vmin[..., index].double(),
            vmax=self.vmax[..., index].double(),
        )

    def totals(self) -> Int[Tensor, "layer d_mlp lang"]:
        """Number of values counted per neuron and language."""
        return self.counts.sum(dim=2)


@dataclasses.dataclass(frozen=True)
class _OneLanguage:
    counts: Tensor  # [layer, d_mlp, nbin]
    cumulative: Tensor  # [layer, d_mlp, nbin]
    low: Tensor  # [layer, d_mlp] float64
    high: Tensor
    vmin: Tensor
    vmax: Tensor

    @property
    def bins(self) -> int:
        return self.counts.shape[-1] - 2

    @property
    def total(self) -> Tensor:
        return self.cumulative[..., -1]

    def bounds(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """Edges of bin ``k`` (``[layer, d_mlp]`` long) per neuron, cut to ``[vmin, vmax]``."""
        width = (self.high - self.low) / self.bins
        left = torch.where(k == 0, self.vmin, self.low + (k - 1).double() * width)
        right = torch.where(k == self.bins + 1, self.vmax, self.low + k.double() * width)
        left = torch.where(k == self.bins + 1, self.high, left)
        right = torch.where(k == 0, self.low, right)
        # every value lies in [vmin, vmax]: the part of a bin outside it holds none
        return torch.maximum(left, self.vmin), torch.minimum(right, self.vmax)

    def order_statistic(self, rank: Tensor) -> tuple[Tensor, Tensor]:
        """Estimate of the ``rank``-th smallest value (0-based) and its error bound.

        Inside its bin the value is placed as if the bin's values were evenly spread
        (mid-rank), then clamped to the exact ``[vmin, vmax]``; the bound is the bin's
        width (0 for the first and last rank, which are the exact minimum and maximum).
        """
        k = torch.searchsorted(self.cumulative, rank.unsqueeze(-1), right=True).squeeze(-1)
        k = k.clamp_max(self.bins + 1)
        before = torch.where(
            k > 0, self.cumulative.gather(-1, (k - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1), 0
        )
        inside = self.counts.gather(-1, k.unsqueeze(-1)).squeeze(-1).double().clamp_min(1.0)
        fraction = ((rank - before).double() + 0.5) / inside
        left, right = self.bounds(k)
        value = torch.minimum(torch.maximum(left + fraction * (right - left), self.vmin), self.vmax)
        width = (right - left).clamp_min(0.0)
        # the smallest and largest values are known exactly
        last = (self.total - 1).clamp_min(0)
        exact = (rank == 0) | (rank == last)
        value = torch.where(rank == 0, self.vmin, torch.where(rank == last, self.vmax, value))
        return value, torch.where(exact, 0.0, width)

    def quantile(self, q: float | int) -> tuple[Tensor, Tensor]:
        """``torch.quantile``-style (linear) quantile estimate and its error bound."""
        n = self.total
        position = q * (n - 1).clamp_min(0).double()
        below = position.floor().long()
        above = torch.minimum(below + 1, (n - 1).clamp_min(0))
        weight = position - below.double()
        first, bound_first = self.order_statistic(below)
        second, bound_second = self.order_statistic(above)
        value = first + weight * (second - first)
        return value, torch.maximum(bound_first, bound_second)

    def fraction_at_most(self, threshold: Tensor) -> Tensor:
        """Estimated fraction of values ``≤ threshold`` (piecewise-linear CDF)."""
        width = (self.high - self.low) / self.bins
        interior = ((threshold - self.low) / width.clamp_min(1e-300)).floor() + 1
        k = torch.where(threshold < self.low, 0, interior.clamp(1, self.bins).long())
        k = torch.where(threshold >= self.high, self.bins + 1, k)
        left, right = self.bounds(k)
        span = right - left
        share = torch.where(
            span > 0, ((threshold - left) / span.clamp_min(1e-300)).clamp(0.0, 1.0), 1.0
        )
        before = torch.where(
            k > 0, self.cumulative.gather(-1, (k - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1), 0
        )
        inside = self.counts.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        below = before.double() + inside.double() * share
        below = torch.where(threshold < self.vmin, 0.0, below)
        below = torch.where(threshold >= self.vmax, self.total.double(), below)
        return below / self.total.double().clamp_min(1.0)


def histogram_quantile(
    histogram: Histogram, q: float
) -> tuple[Float[Tensor, "layer d_mlp lang"], Float[Tensor, "layer d_mlp lang"]]:
    """Quantile ``q`` of every neuron and language, and its guaranteed error bound.

    The estimate follows ``torch.quantile`` (``interpolation="linear"``): order statistics
    ``⌊h⌋`` and ``⌊h⌋ + 1`` with ``h = q · (n − 1)``, mixed linearly. Each is estimated
    inside the bin that holds it, so ``|estimate − exact| ≤ bound``, where ``bound`` is the
    larger width of those (at most two) bins: ``(high − low) / bins`` for an interior bin,
    ``low − vmin`` or ``vmax − high`` for a tail bin (up to float32 rounding of the binning).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"A quantile must lie in [0, 1], got {q!r} (use 0.9 for P90).")
    values, bounds = [], []
    for index in range(histogram.counts.shape[-1]):
        value, bound = histogram.language(index).quantile(q)
        values.append(value)
        bounds.append(bound)
    return torch.stack(values, dim=-1), torch.stack(bounds, dim=-1)


def fraction_above(
    histogram: Histogram, threshold: Float[Tensor, "layer d_mlp lang"]
) -> Float[Tensor, "layer d_mlp lang"]:
    """Estimated fraction of each language's values ``> threshold[..., lang]``.

    Exact when the threshold is a bin edge; inside a bin the values are taken as evenly
    spread, so the error is at most that bin's share of the values.
    """
    columns = [
        1.0 - histogram.language(index).fraction_at_most(threshold[..., index].double())
        for index in range(histogram.counts.shape[-1])
    ]
    return torch.stack(columns, dim=-1)


def pooled_quantile(
    histogram: Histogram, q: float | int, *, iterations: int = 64
) -> Float[Tensor, "layer d_mlp"]:
    """Quantile ``q`` of all languages' values pooled, per neuron.

    Languages may have different bin edges, so the pooled CDF ``Σ_l n_l F_l(t) / Σ_l n_l``
    (each ``F_l`` piecewise linear, exact at its bin edges) is inverted by bisection
    between the pooled minimum and maximum. The exact pooled quantile lies within the
    largest width, over languages, of the bin holding the estimate.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"A quantile must lie in [0, 1], got {q!r} (use 0.9 for P90).")
    languages = [histogram.language(i) for i in range(histogram.counts.shape[-1])]
    weights = [lang.total.double() for lang in languages]
    total = torch.stack(weights).sum(dim=0).clamp_min(1.0)
    present = [w > 0 for w in weights]
    low = torch.stack(
        [torch.where(p, lang.vmin, torch.inf) for p, lang in zip(present, languages)]
    ).amin(dim=0)
    high = torch.stack(
        [torch.where(p, lang.vmax, -torch.inf) for p, lang in zip(present, languages)]
    ).amax(dim=0)
    for _ in range(iterations):
        middle = (low + high) / 2
        below = sum(w * lang.fraction_at_most(middle) for w, lang in zip(weights, languages))  # type: ignore[misc]
        enough = below / total >= q
        high = torch.where(enough, middle, high)
        low = torch.where(enough, low, middle)
    return high
