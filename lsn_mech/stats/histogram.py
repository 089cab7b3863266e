"""Quantiles, error bounds and CDFs read from per-neuron histograms (pure tensor functions).

A histogram of one site is ``counts[layer, d_mlp, bins + 2, lang]``: bin 0 holds values
below ``low`` (the underflow), bins ``1…bins`` split ``[low, high)`` into equal widths,
bin ``bins + 1`` holds values ``≥ high`` (the overflow). ``vmin``/``vmax`` are the exact
running minimum and maximum, so the tail bins span ``[vmin, low)`` and ``[high, vmax]``.
All arguments except ``counts`` are ``[layer, d_mlp, lang]``. ``positive``, when the
statistics hold it (`MomentAccumulator` or `PositiveCountAccumulator` at the same site),
is the exact count of values ``> 0``: it splits the bin holding 0 into ``[left, 0]`` and
``(0, right)`` with exact counts, so a threshold of exactly 0 is read exactly and a point
mass at 0 with no negative values in its bin is exact too.

One definition everywhere: the quantile ``q`` of ``n`` values is ``torch.quantile``'s
(``interpolation="linear"``): order statistics ``⌊h⌋`` and ``⌊h⌋ + 1`` (0-based) with
``h = q·(n − 1)``, mixed linearly. Per language and pooled over languages alike.

Why the estimates have bounds: counts are exact, so the ``i``-th smallest value lies in
the (known) cell where the cumulative count passes ``i``; the estimate is placed in the
same cell, so the two differ by at most that cell's width. A fraction of values ``≤ t``
is known to lie between the counts before and after ``t``'s cell, so its error is at most
that cell's share of the values.
"""

from __future__ import annotations

import dataclasses
import functools

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
    positive: Int[Tensor, "layer d_mlp lang"] | None = None
    """Exact count of values ``> 0`` over the same tokens, when the statistics hold it."""

    @property
    def bins(self) -> int:
        """Interior bins (the two tail bins excluded)."""
        return self.counts.shape[2] - 2

    def language(self, index: int) -> _OneLanguage:
        """The histogram of one language, with its cumulative counts."""
        counts = self.counts[..., index].long()
        cumulative = counts.cumsum(dim=-1)
        total = cumulative[..., -1]
        at_most_zero = None
        if self.positive is not None:
            at_most_zero = total - self.positive[..., index].to(total.device).long()
        return _OneLanguage(
            counts=counts,
            cumulative=cumulative,
            low=self.low[..., index].double(),
            high=self.high[..., index].double(),
            vmin=self.vmin[..., index].double(),
            vmax=self.vmax[..., index].double(),
            at_most_zero=at_most_zero,
        )

    def totals(self) -> Int[Tensor, "layer d_mlp lang"]:
        """Number of values counted per neuron and language."""
        return self.counts.sum(dim=2)


def bin_index(
    values: Tensor,
    low: Tensor,
    high: Tensor,
    bins: int,
    dtype: torch.dtype = torch.long,
    *,
    nan_safe: bool = True,
) -> Tensor:
    """Bin of each value (computed in the inputs' float dtype), as integers of ``dtype``.

    Bin 0 is ``x < low``, bin ``bins + 1`` is ``x ≥ high`` (decided by comparison, never by
    rounding), bin ``k`` is ``low + (k − 1)·w ≤ x < low + k·w`` with ``w = (high − low) /
    bins``. A value just below ``high`` whose scaled position rounds up to ``bins`` stays in
    the last interior bin: without that clamp, after a range grew ~30 times around a tiny
    first range, float32 rounding sent values inside the range into the overflow bin.
    (``x < low`` always maps below 0 before the clamp: ``x − low`` keeps its sign.)
    ``nan_safe`` sends NaN positions (unset edges) to bin 1 instead of an invalid index;
    the accumulator's hot path skips that pass.
    """
    position = ((values - low) * (bins / (high - low))).floor_()
    if nan_safe:
        position = torch.nan_to_num(position, nan=0.0)
    position = position.clamp_(-1, bins - 1).add_(1)
    return position.masked_fill_(values >= high, bins + 1).to(dtype)


@dataclasses.dataclass(frozen=True)
class _Cell:
    """A stretch ``[left, right]`` of one neuron's values: ``before`` values lie below it,
    ``inside`` values in it (all ``[layer, d_mlp]``; edges float64, counts long)."""

    left: Tensor
    right: Tensor
    before: Tensor
    inside: Tensor


@dataclasses.dataclass(frozen=True)
class _Bracket:
    """What the histogram proves about ``#{x ≤ t}`` at one ``t`` per neuron.

    ``lower ≤ #{x ≤ t} ≤ upper``; the values beyond the first ``lower`` (in sorted order)
    are all ``≥ start``; the first ``upper`` values are all ``≤ end``; ``estimate`` (the
    piecewise-linear CDF) lies in ``[lower, upper]``, so it is exact where they meet.
    """

    lower: Tensor
    upper: Tensor
    start: Tensor
    end: Tensor
    estimate: Tensor


@dataclasses.dataclass(frozen=True)
class _OneLanguage:
    counts: Tensor  # [layer, d_mlp, nbin] long
    cumulative: Tensor  # [layer, d_mlp, nbin] long
    low: Tensor  # [layer, d_mlp] float64
    high: Tensor
    vmin: Tensor
    vmax: Tensor
    at_most_zero: Tensor | None  # [layer, d_mlp] long: exact #{x ≤ 0}, or None

    @property
    def bins(self) -> int:
        return self.counts.shape[-1] - 2

    @property
    def total(self) -> Tensor:
        return self.cumulative[..., -1]

    @property
    def present(self) -> Tensor:
        """Neurons with at least one value (others may hold NaN edges after alignment)."""
        return self.total > 0

    def bounds(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """Edges of bin ``k`` (``[layer, d_mlp]`` long) per neuron, cut to ``[vmin, vmax]``."""
        width = (self.high - self.low) / self.bins
        left = torch.where(k == 0, self.vmin, self.low + (k - 1).double() * width)
        right = torch.where(k == self.bins + 1, self.vmax, self.low + k.double() * width)
        left = torch.where(k == self.bins + 1, self.high, left)
        right = torch.where(k == 0, self.low, right)
        # every value lies in [vmin, vmax]: the part of a bin outside it holds none
        return torch.maximum(left, self.vmin), torch.minimum(right, self.vmax)

    def _take(self, table: Tensor, k: Tensor) -> Tensor:
        """``table[..., k]`` per neuron; ``k`` may carry extra leading dimensions."""
        wide = table.expand(*k.shape, table.shape[-1])
        return wide.gather(-1, k.unsqueeze(-1)).squeeze(-1)

    @functools.cached_property
    def zero_bin(self) -> Tensor:
        """The bin that holds 0, per neuron."""
        return bin_index(torch.zeros_like(self.low), self.low, self.high, self.bins)

    def _cell(self, k: Tensor, above_zero: Tensor) -> _Cell:
        """Bin ``k``, or its part ``[left, 0]`` / ``(0, right)`` where 0 splits it exactly."""
        left, right = self.bounds(k)
        before = torch.where(k > 0, self._take(self.cumulative, (k - 1).clamp_min(0)), 0)
        inside = self._take(self.counts, k)
        if self.at_most_zero is None:
            return _Cell(left, right, before, inside)
        zero = torch.zeros_like(self.low)
        # the split holds where 0 lies inside [vmin, vmax) and in bin k, and the exact
        # count agrees with the bin's counts (it does whenever both saw the same tokens)
        split = (
            (k == self.zero_bin)
            & (self.vmin <= 0)
            & (self.vmax > 0)
            & (self.at_most_zero >= before)
            & (self.at_most_zero <= before + inside)
        )
        lower = split & ~above_zero
        upper = split & above_zero
        return _Cell(
            left=torch.where(upper, torch.maximum(left, zero), left),
            right=torch.where(lower, torch.minimum(right, zero), right),
            before=torch.where(upper, self.at_most_zero, before),
            inside=torch.where(
                lower,
                self.at_most_zero - before,
                torch.where(upper, before + inside - self.at_most_zero, inside),
            ),
        )

    def _cell_of_rank(self, rank: Tensor) -> _Cell:
        """The cell holding the ``rank``-th smallest value (0-based)."""
        k = torch.searchsorted(self.cumulative, rank.unsqueeze(-1), right=True).squeeze(-1)
        k = k.clamp_max(self.bins + 1)
        above_zero = (
            torch.zeros_like(rank, dtype=torch.bool)
            if self.at_most_zero is None
            else rank >= self.at_most_zero
        )
        return self._cell(k, above_zero)

    def order_statistic(self, rank: Tensor) -> tuple[Tensor, Tensor]:
        """Estimate of the ``rank``-th smallest value (0-based) and its error bound.

        Inside its cell the value is placed as if the cell's values were evenly spread
        (mid-rank), then clamped to the exact ``[vmin, vmax]``; the bound is the cell's
        width (0 for the first and last rank, which are the exact minimum and maximum).
        """
        cell = self._cell_of_rank(rank)
        inside = cell.inside.double().clamp_min(1.0)
        fraction = (((rank - cell.before).double() + 0.5) / inside).clamp(0.0, 1.0)
        width = (cell.right - cell.left).clamp_min(0.0)
        value = torch.minimum(torch.maximum(cell.left + fraction * width, self.vmin), self.vmax)
        # the smallest and largest values are known exactly
        last = (self.total - 1).clamp_min(0)
        exact = (rank == 0) | (rank == last)
        value = torch.where(rank == 0, self.vmin, torch.where(rank == last, self.vmax, value))
        return value, torch.where(exact, 0.0, width)

    def quantile(self, q: float | int) -> tuple[Tensor, Tensor]:
        """``torch.quantile``-style (linear) quantile estimate and its error bound."""
        below, above, weight = interpolation_ranks(self.total, q)
        first, bound_first = self.order_statistic(below)
        second, bound_second = self.order_statistic(above)
        value = first + weight * (second - first)
        return value, torch.maximum(bound_first, bound_second)

    def bracket(self, threshold: Tensor) -> _Bracket:
        """What the counts prove about ``#{x ≤ threshold}`` (see `_Bracket`).

        Bin edges are float32 (and rounded again each time a range doubles), so a value may
        sit a few ulps across the edge its bin suggests: a threshold that close to an edge
        is bracketed by both neighbouring cells. The exact count of values ``≤ 0``, where
        known, tightens the bracket on either side of 0 and makes it exact at 0.
        """
        t = threshold
        total = self.total
        # 2⁻¹⁸ of the edges' magnitude: far more than the float32 rounding of any edge
        slack = (self.low.abs() + self.high.abs()).nan_to_num(0.0, 0.0, 0.0) * 2.0**-18
        first = self._cell(bin_index(t - slack, self.low, self.high, self.bins), t - slack > 0)
        last = self._cell(bin_index(t + slack, self.low, self.high, self.bins), t + slack > 0)
        cell = self._cell(bin_index(t, self.low, self.high, self.bins), t > 0)
        lower, upper = first.before, last.before + last.inside
        start, end = first.left, last.right
        if self.at_most_zero is not None:
            known = (self.at_most_zero >= 0) & (self.at_most_zero <= total)
            zeros = torch.where(known, self.at_most_zero, 0)
            raise_lower = known & (t >= 0) & (zeros > lower)
            lower = torch.where(raise_lower, zeros, lower)
            cut_upper = known & (t <= 0) & (zeros < upper)
            upper = torch.where(cut_upper, zeros, upper)
            # beyond the first #{x ≤ 0} values all are > 0; before it, all are ≤ 0
            start = torch.where(known & (lower >= zeros), start.clamp_min(0.0), start)
            end = torch.where(known & (upper <= zeros), end.clamp_max(0.0), end)
        estimate = _linear_count(cell, t)
        estimate = torch.minimum(torch.maximum(estimate, lower.double()), upper.double())
        below = (t < self.vmin) | ~self.present
        beyond = (t >= self.vmax) & ~below
        inf = torch.full_like(t, torch.inf)
        return _Bracket(
            lower=torch.where(below, 0, torch.where(beyond, total, lower)),
            upper=torch.where(below, 0, torch.where(beyond, total, upper)),
            start=torch.where(
                ~self.present | beyond,
                inf,
                torch.where(below, self.vmin, torch.maximum(start, self.vmin)),
            ),
            end=torch.where(below, -inf, torch.where(beyond, self.vmax, end.minimum(self.vmax))),
            estimate=torch.where(below, 0.0, torch.where(beyond, total.double(), estimate)),
        )

    def count_at_most(self, threshold: Tensor) -> Tensor:
        """The piecewise-linear CDF count at ``threshold`` (float64; any leading shape).

        The estimate of `bracket` without the bracket: what bisection evaluates.
        """
        t = threshold
        cell = self._cell(bin_index(t, self.low, self.high, self.bins), t > 0)
        estimate = _linear_count(cell, t)
        total = self.total.double()
        below = (t < self.vmin) | ~self.present
        return torch.where(below, 0.0, torch.where(t >= self.vmax, total, estimate))

    def fraction_at_most(self, threshold: Tensor) -> Tensor:
        """Estimated fraction of values ``≤ threshold`` (piecewise-linear CDF)."""
        return self.bracket(threshold).estimate / self.total.double().clamp_min(1.0)

    def fraction_error_bound(self, threshold: Tensor) -> Tensor:
        """Bound on ``|fraction_at_most(threshold) − exact fraction|``."""
        found = self.bracket(threshold)
        gap = torch.maximum(
            found.estimate - found.lower.double(), found.upper.double() - found.estimate
        )
        return gap / self.total.double().clamp_min(1.0)


def interpolation_ranks(n: Tensor, q: float | int) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.quantile``'s ranks ``⌊h⌋``, ``min(⌊h⌋ + 1, n − 1)`` and weight ``h − ⌊h⌋``,
    ``h = q·(n − 1)``, for counts ``n`` (long)."""
    last = (n - 1).clamp_min(0)
    position = q * last.double()
    below = position.floor().long()
    above = torch.minimum(below + 1, last)
    return below, above, position - below.double()


def histogram_quantile(
    histogram: Histogram, q: float
) -> tuple[Float[Tensor, "layer d_mlp lang"], Float[Tensor, "layer d_mlp lang"]]:
    """Quantile ``q`` of every neuron and language, and its guaranteed error bound.

    The estimate follows ``torch.quantile`` (``interpolation="linear"``): order statistics
    ``⌊h⌋`` and ``⌊h⌋ + 1`` with ``h = q · (n − 1)``, mixed linearly. Each is estimated
    inside the cell that holds it, so ``|estimate − exact| ≤ bound``, where ``bound`` is the
    larger width of those (at most two) cells: ``(high − low) / bins`` for an interior bin
    (less where 0 splits it), ``low − vmin`` or ``vmax − high`` for a tail bin (up to float32
    rounding of the binning, about 1e-5 of a bin width).
    """
    _check_q(q)
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

    Exact below the minimum, at or above the maximum, and at a threshold of exactly 0
    when the histogram carries the exact count of values ``> 0``. Elsewhere the values
    inside the threshold's cell are taken as evenly spread; the error is at most
    `fraction_above_error_bound`, at most the cell's share of the values.
    """
    columns = [
        1.0 - histogram.language(index).fraction_at_most(threshold[..., index].double())
        for index in range(histogram.counts.shape[-1])
    ]
    return torch.stack(columns, dim=-1)


def fraction_above_error_bound(
    histogram: Histogram, threshold: Float[Tensor, "layer d_mlp lang"]
) -> Float[Tensor, "layer d_mlp lang"]:
    """Guaranteed bound on ``|fraction_above(threshold) − exact fraction|`` per neuron.

    The exact count of values ``≤ t`` lies between the count before ``t``'s cell and the
    count through it; the estimate splits the cell at ``t``, so it errs by at most
    ``inside · max(share, 1 − share) / n`` (0 where the estimate is exact).
    """
    columns = [
        histogram.language(index).fraction_error_bound(threshold[..., index].double())
        for index in range(histogram.counts.shape[-1])
    ]
    return torch.stack(columns, dim=-1)


def pooled_quantile(
    histogram: Histogram, q: float | int, *, iterations: int = 64
) -> Float[Tensor, "layer d_mlp"]:
    """Quantile ``q`` of all languages' values pooled, per neuron (see
    `pooled_histogram_quantile`, which returns its error bound too)."""
    return pooled_histogram_quantile(histogram, q, iterations=iterations)[0]


def pooled_histogram_quantile(
    histogram: Histogram, q: float | int, *, iterations: int = 64
) -> tuple[Float[Tensor, "layer d_mlp"], Float[Tensor, "layer d_mlp"]]:
    """Quantile ``q`` of all languages' values pooled, per neuron, and its error bound.

    The same definition as `histogram_quantile` (``torch.quantile`` on the pooled values):
    order statistics ``⌊h⌋`` and ``⌊h⌋ + 1``, ``h = q·(N − 1)``, ``N = Σ_l n_l``. Languages
    may have different bin edges, so each order statistic ``r`` is found by bisection as
    the smallest ``t`` where the pooled CDF count ``Σ_l C_l(t)`` (piecewise linear, exact
    at each language's cell edges) reaches ``r + ½``, the mid-rank placement used per
    language. The exact order statistic lies in the hull of the languages' cells around the
    bisection's final bracket (shown in ``docs/percentiles.md``), which gives the bound:
    at most the largest width, over languages, of the cell holding the estimate.
    """
    _check_q(q)
    languages = [histogram.language(i) for i in range(histogram.counts.shape[-1])]
    total = torch.stack([lang.total for lang in languages]).sum(dim=0)
    below, above, weight = interpolation_ranks(total, q)
    values, bounds = _pooled_order_statistic(languages, torch.stack([below, above]), iterations)
    value = values[0] + weight * (values[1] - values[0])
    return value, bounds.amax(dim=0)


def _pooled_order_statistic(
    languages: list[_OneLanguage], rank: Tensor, iterations: int
) -> tuple[Tensor, Tensor]:
    """Estimate and bound of the pooled ``rank``-th smallest value (0-based) per neuron;
    ``rank`` is ``[..., layer, d_mlp]``."""
    inf = torch.full_like(languages[0].low, torch.inf)
    smallest = torch.stack([torch.where(x.present, x.vmin, inf) for x in languages]).amin(0)
    largest = torch.stack([torch.where(x.present, x.vmax, -inf) for x in languages]).amax(0)
    total = torch.stack([x.total for x in languages]).sum(dim=0)
    target = rank.double() + 0.5

    def count(t: Tensor) -> Tensor:
        return torch.stack([x.count_at_most(t) for x in languages]).sum(dim=0)

    # invariant: count(low) < target ≤ count(high)
    low = torch.nextafter(smallest, -inf).expand_as(target)
    high = largest.expand_as(target)
    for _ in range(iterations):
        middle = low / 2 + high / 2
        if bool(((middle == low) | (middle == high)).all()):
            break  # every bracket is down to two neighbouring floats
        enough = count(middle) >= target
        high = torch.where(enough, middle, high)
        low = torch.where(enough, low, middle)
    # a threshold of exactly 0 is an exact point of every CDF that knows its zero count
    zero = torch.zeros_like(low)
    snap = (low < 0) & (high > 0) & (count(zero) >= target)
    high = torch.where(snap, zero, high)
    # the exact value lies in [min start at low, max end at high]: count(low) < r + ½
    # caps what lies below, count(high) ≥ r + ½ (so ≥ r + 1 counted) what lies above
    start = torch.stack([x.bracket(low).start for x in languages]).amin(0)
    end = torch.stack([x.bracket(high).end for x in languages]).amax(0)
    bound = torch.maximum(high - start, end - high).clamp_min(0.0)
    first = rank == 0
    last = rank == (total - 1).clamp_min(0)
    value = torch.where(first, smallest, torch.where(last, largest, high))
    return value, torch.where(first | last, 0.0, bound)


def _check_q(q: float | int) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"A quantile must lie in [0, 1], got {q!r} (use 0.9 for P90).")


def _linear_count(cell: _Cell, t: Tensor) -> Tensor:
    """Counts up to ``t`` with the mass of ``t``'s cell spread evenly across it (float64):
    the piecewise-linear CDF that `Histogram.bracket` and `count_at_most` both read."""
    span = cell.right - cell.left
    share = torch.where(
        span > 0,
        ((t - cell.left) / span.clamp_min(1e-300)).clamp(0.0, 1.0),
        (t >= cell.left).double(),
    )
    return cell.before.double() + cell.inside.double() * share
