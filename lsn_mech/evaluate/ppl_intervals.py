"""Intervals and decisions of the perplexity experiments, from per-window NLL sums.

Every perplexity experiment (the PPL-change matrix, deactivation values, the selection
sweep) measures each evaluated language on one fixed set of windows: the base model and
every intervention on the same windows. So resampling is done per evaluated language
(column): one set of bootstrap indices per column, shared by the base and every
condition measured there (**paired**: a ratio to the base, or one intervention against
another, keeps only the variation that differs between them), and independent between
columns (their windows are different texts). `lsn_mech.intervals` draws the indices
(its `replicates`, seeded with the settings' seed plus the column's index).

These functions take plain numbers (NLL sums and token counts per window) so that
synthetic windows with a known true perplexity test them (tests/test_ppl_intervals.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import WrongInputError
from lsn_mech.intervals import (
    DEFAULT,
    Bootstrap,
    Estimate,
    PairedTest,
    difference_test,
    estimate_from_replicates,
    ratio_of_sums,
    replicates,
)

KINDS = ("ppl", "delta", "ratio", "log_ratio")

PAIRED_TEST = (
    "paired bootstrap over the evaluated language's windows (both conditions resampled "
    "with the same windows), two-sided"
)
"""The test behind "beats random": log(PPL with the language's neurons off / PPL with the
random neurons off) on the same windows, its interval above 0."""

DOMINANCE_TEST = (
    "bootstrap over windows (each evaluated language's windows resampled independently, "
    "every ratio paired with its base), two-sided: own log PPL ratio minus the largest "
    "other language's"
)
"""The test behind "diagonal dominance": the row's own-language log PPL ratio minus the
largest log PPL ratio among the other evaluated languages, its interval above 0."""

YES, NO, UNDECIDED, UNTESTED = "yes", "no", "undecided", "untested"
"""A decision: significantly above 0, significantly below, the interval holds 0, or no
interval (a single evaluation window: nothing to resample)."""


def column_settings(settings: Bootstrap, column: int) -> Bootstrap:
    """The resampling settings of one evaluated language: the seed shifted by its index,
    so that columns (different texts) are resampled independently, while every condition
    within a column gets the same indices (paired)."""
    return dataclasses.replace(settings, seed=int(settings.seed) + int(column))


def log_ppl(nll_sums: Sequence[float] | Tensor, token_counts: Sequence[int] | Tensor) -> float:
    """``log PPL = Σ nll / Σ tokens`` (the mean NLL per predicted token)."""
    nll = torch.as_tensor(nll_sums, dtype=torch.float64)
    tokens = torch.as_tensor(token_counts, dtype=torch.float64)
    return float(nll.sum() / tokens.sum())


@dataclasses.dataclass(frozen=True)
class ColumnResamples:
    """One evaluated language: the base and each condition's log PPL as measured and on
    every bootstrap resample of its windows (the same resamples for all: paired).

    ``samples`` are empty (shape ``[0]``) with fewer than two windows: no interval.
    A condition that was not evaluated is ``None``.
    """

    base: float
    base_samples: Float[Tensor, " resamples"]
    conditions: tuple[float | None, ...]
    samples: tuple[Tensor | None, ...]
    windows: int
    level: float = 0.95

    @property
    def has_intervals(self) -> bool:
        return self.windows >= 2

    def base_estimate(self) -> Estimate:
        """The base perplexity with its interval."""
        return estimate_from_replicates(
            math.exp(self.base), torch.exp(self.base_samples), self.level
        )

    def estimate(self, condition: int, kind: str = "ratio") -> Estimate | None:
        """Condition ``condition`` as ``ppl``, ``delta`` (PPL − base), ``ratio`` (PPL /
        base) or ``log_ratio``, with its paired interval (``None``: not evaluated)."""
        if kind not in KINDS:
            raise WrongInputError(f"Unknown kind {kind!r}; choose from {', '.join(KINDS)}.")
        point, samples = self.conditions[condition], self.samples[condition]
        if point is None or samples is None:
            return None
        if kind == "ppl":
            return estimate_from_replicates(math.exp(point), torch.exp(samples), self.level)
        if kind == "delta":
            value = math.exp(point) - math.exp(self.base)
            return estimate_from_replicates(
                value, torch.exp(samples) - torch.exp(self.base_samples), self.level
            )
        log_ratio = self.log_ratio_samples(condition)
        if kind == "log_ratio":
            return estimate_from_replicates(point - self.base, log_ratio, self.level)
        return estimate_from_replicates(
            math.exp(point - self.base), torch.exp(log_ratio), self.level
        )

    def log_ratio_samples(self, condition: int) -> Tensor:
        """Resampled ``log(PPL / base PPL)`` of a condition (paired with the base)."""
        samples = self.samples[condition]
        if samples is None:
            raise WrongInputError(f"Condition {condition} was not evaluated in this column.")
        return samples - self.base_samples


def column_resamples(
    base_nll: Sequence[float] | Tensor,
    conditions_nll: Sequence[Sequence[float] | Tensor | None],
    token_counts: Sequence[int] | Tensor,
    settings: Bootstrap = DEFAULT,
) -> ColumnResamples:
    """Resample one evaluated language's windows: base and every condition's log PPL.

    ``base_nll[w]`` and ``conditions_nll[c][w]`` are window ``w``'s NLL sums (the same
    windows in the same order, each with ``token_counts[w]`` predicted tokens); a
    condition that was not evaluated is ``None``. Pass `column_settings` for a column
    of a matrix.
    """
    tokens = torch.as_tensor(token_counts, dtype=torch.float64).reshape(-1)
    base = torch.as_tensor(base_nll, dtype=torch.float64).reshape(-1)
    windows = int(tokens.numel())
    for nll in (base, *(c for c in conditions_nll if c is not None)):
        if torch.as_tensor(nll).numel() != windows:
            raise WrongInputError(
                f"Every condition needs one NLL sum per window ({windows} windows); got "
                f"{torch.as_tensor(nll).numel()}. Measure each condition on the same windows."
            )

    def resampled(nll: Tensor) -> Tensor:
        if windows < 2:
            return torch.empty(0, dtype=torch.float64)
        return replicates(ratio_of_sums, [nll, tokens], settings)

    points, samples = [], []
    for nll in conditions_nll:
        if nll is None:
            points.append(None)
            samples.append(None)
            continue
        values = torch.as_tensor(nll, dtype=torch.float64).reshape(-1)
        points.append(log_ppl(values, tokens))
        samples.append(resampled(values))
    return ColumnResamples(
        base=log_ppl(base, tokens),
        base_samples=resampled(base),
        conditions=tuple(points),
        samples=tuple(samples),
        windows=windows,
        level=settings.level,
    )


def decision(test: PairedTest) -> str:
    """`YES` when the difference's interval lies above 0, `NO` below, `UNDECIDED` when it
    holds 0, `UNTESTED` without an interval."""
    if not test.difference.has_interval:
        return UNTESTED
    if test.difference.above(0.0):
        return YES
    if test.difference.below(0.0):
        return NO
    return UNDECIDED


def beats_test(column: ColumnResamples, condition: int, other: int) -> PairedTest:
    """Does ``condition`` raise the column's perplexity more than ``other``? The paired
    difference of their log PPLs (= of their log PPL ratios: the base cancels) on the same
    resampled windows, `PAIRED_TEST`."""
    a, b = column.conditions[condition], column.conditions[other]
    if a is None or b is None:
        raise WrongInputError("Both conditions must have been evaluated in this column.")
    if not column.has_intervals:
        return PairedTest(Estimate.point(a - b, column.level), 1.0, PAIRED_TEST)
    differences = column.samples[condition] - column.samples[other]  # type: ignore[operator]
    return difference_test(a - b, differences, column.level, PAIRED_TEST)


def dominance_test(
    own: ColumnResamples,
    others: Sequence[ColumnResamples],
    condition: int,
) -> PairedTest:
    """Is ``condition``'s log PPL ratio on its ``own`` language larger than on every one of
    the ``others``? Its own log ratio minus the largest other log ratio, resampled with
    each column's own (independent) resamples, `DOMINANCE_TEST`. Without other
    languages the difference is +inf (trivially dominant) and untested."""
    own_point = own.conditions[condition]
    if own_point is None:
        raise WrongInputError("The condition was not evaluated on its own language.")
    own_value = own_point - own.base
    other_points = [c.conditions[condition] for c in others]
    if any(p is None for p in other_points):
        raise WrongInputError(
            "Diagonal dominance needs the full matrix: evaluate every language with the "
            "condition (e.g. full_matrix=True)."
        )
    if not others:
        return PairedTest(Estimate.point(math.inf, own.level), 1.0, DOMINANCE_TEST)
    largest = max(p - c.base for p, c in zip(other_points, others))  # type: ignore[operator]
    observed = own_value - largest
    if not (own.has_intervals and all(c.has_intervals for c in others)):
        return PairedTest(Estimate.point(observed, own.level), 1.0, DOMINANCE_TEST)
    other_samples = torch.stack([c.log_ratio_samples(condition) for c in others])
    differences = own.log_ratio_samples(condition) - other_samples.max(dim=0).values
    return difference_test(observed, differences, own.level, DOMINANCE_TEST)


def matrix_resamples(
    base_nll: Sequence[Sequence[float]],
    nll: Sequence[Sequence[Sequence[float] | None]],
    token_counts: Sequence[Sequence[int]],
    settings: Bootstrap = DEFAULT,
) -> list[ColumnResamples]:
    """`column_resamples` of every column of a matrix: ``base_nll[j][w]``,
    ``nll[i][j][w]`` (row ``i``, column ``j``, window ``w``; ``None`` where not evaluated)
    and ``token_counts[j][w]``; column ``j`` resampled with ``column_settings(settings, j)``."""
    return [
        column_resamples(
            base_nll[j], [row[j] for row in nll], token_counts[j], column_settings(settings, j)
        )
        for j in range(len(base_nll))
    ]


class WindowIntervals:
    """What a perplexity result with per-window NLL sums needs for its intervals: the
    settings it was made with and, once, every column's resamples.

    A dataclass result mixes it in and holds ``provenance``, ``window_tokens``,
    ``window_base_nll`` and ``window_nll``; `_window_conditions` says how its ``window_nll``
    lists the intervened conditions (rows of a matrix, values × languages, …).
    """

    provenance: Any
    window_tokens: Any
    window_base_nll: Any
    window_nll: Any

    @property
    def bootstrap(self) -> Bootstrap:
        """The resampling settings of the intervals (the defaults for an old result)."""
        return Bootstrap.from_dict(self.provenance.parameters.get("intervals"))

    def _window_conditions(self) -> Sequence[Sequence[Sequence[float] | None]]:
        """``[condition][column][window]`` NLL sums; ``window_nll`` itself by default."""
        return self.window_nll

    @functools.cached_property
    def _resamples(self) -> list[ColumnResamples] | None:
        """Every column's resamples, or ``None`` for a result saved before intervals."""
        if self.window_nll is None or self.window_base_nll is None or self.window_tokens is None:
            return None
        return matrix_resamples(
            self.window_base_nll, self._window_conditions(), self.window_tokens, self.bootstrap
        )


def estimate_grid(
    columns: Sequence[ColumnResamples], kind: str = "ratio"
) -> list[list[Estimate | None]]:
    """``[condition][column]``: every condition's estimate in every column (``None``
    where it was not evaluated)."""
    conditions = len(columns[0].conditions) if columns else 0
    return [[column.estimate(c, kind) for column in columns] for c in range(conditions)]


def error_bars(estimates: Sequence[Estimate | None]) -> dict[str, Any]:
    """Plotly ``error_y`` arrays (distance above and below each value; 0 without an
    interval), for bar and line plots of estimates."""
    above, below = [], []
    for e in estimates:
        has = e is not None and e.has_interval
        above.append(e.high - e.value if has else 0.0)  # type: ignore[union-attr]
        below.append(e.value - e.low if has else 0.0)  # type: ignore[union-attr]
    return {"type": "data", "symmetric": False, "array": above, "arrayminus": below}


def bounds_text(estimate: Estimate, spec: str = ".2f") -> str:
    """``" [low, high]"`` to print after a value (the tables keep their old value text and
    add the interval behind it), or nothing without an interval."""
    if not estimate.has_interval:
        return ""
    return f" [{estimate.low:{spec}}, {estimate.high:{spec}}]"
