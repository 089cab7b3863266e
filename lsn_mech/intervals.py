"""Confidence intervals by resampling the evaluation units: the one owner of that maths.

Every result that reports a metric (perplexity and its ratios, accuracy and macro-F1,
language-identification accuracy, …) gets its interval here, so one choice of method
holds everywhere: the **percentile bootstrap** over the units a metric averages (windows,
verses, sentence pairs, generations), with **paired** resampling when two conditions were
measured on the same units (base and intervention, two systems): both are resampled with
the same indices, so the interval of their difference or ratio is narrow where the units
agree. BLEU and chrF are not resampled here: sacreBLEU's own paired bootstrap does that.

```python
from lsn_mech import intervals

settings = intervals.Bootstrap(resamples=1000, level=0.95, seed=0)
acc = intervals.proportion(correct, settings)                 # Estimate(0.81, 0.77, 0.85)
ratio = intervals.paired(ratio_of_means, (nll_a, tok), (nll_b, tok), settings)
test = intervals.paired_test(mean_of, (correct_a,), (correct_b,), settings)
print(acc.format(".1%"), test.p_value)
```

A *statistic* receives each data tensor resampled along its first dimension (the units)
with one more leading dimension for the resamples, ``[resamples, units, ...]``, and
returns one value per resample, ``[resamples]``. All resamples are computed at once in
chunks (no Python loop per resample over the data); the indices come from one CPU
generator seeded with ``settings.seed``, so intervals are the same on every device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import InvalidSettingError, WrongInputError

Statistic = Callable[..., Tensor]
"""``statistic(*resampled) -> [resamples]``; each argument is ``[resamples, units, ...]``."""

METHOD = "percentile bootstrap"
"""The interval method every result records in its provenance."""

CHUNK_ELEMENTS = 1 << 23
"""Resampled elements held at once (~32 MB of float32): bounds memory for large data."""


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """How intervals are resampled; results record `to_dict` in their provenance.

    ``resamples`` bootstrap samples of the units, a two-sided interval at ``level``
    (0.95: the 2.5th and 97.5th percentiles of the resampled statistic), indices drawn
    from a generator seeded with ``seed``.
    """

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int):
            raise InvalidSettingError(
                f"resamples must be a whole number, got {self.resamples!r}; e.g. 1000."
            )
        if self.resamples < 1:
            raise InvalidSettingError(
                f"resamples must be at least 1, got {self.resamples}; 1000 is the default "
                "(use more for stable 99 % intervals)."
            )
        if not 0.0 < float(self.level) < 1.0:
            raise InvalidSettingError(
                f"level must be between 0 and 1 (exclusive), got {self.level!r}; e.g. 0.95 "
                "for a 95 % interval."
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings and the method, for a result's provenance."""
        return {**dataclasses.asdict(self), "method": METHOD}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Bootstrap:
        """Inverse of `to_dict` (the method key and unknown keys are ignored)."""
        if not data:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


DEFAULT = Bootstrap()


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A value with its confidence interval ``[low, high]`` at ``level``.

    ``low`` and ``high`` are NaN when no interval could be computed (a result saved
    before intervals existed, or a single unit); `has_interval` says which.
    """

    value: float
    low: float
    high: float
    level: float = 0.95

    def __float__(self) -> float:
        return float(self.value)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN without an interval)."""
        return (self.high - self.low) / 2

    @property
    def relative_half_width(self) -> float:
        """`half_width` as a fraction of ``|value|`` (the "±10 % of the ratio" of a budget)."""
        return self.half_width / abs(self.value) if self.value else math.inf

    def excludes(self, x: float) -> bool:
        """Whether ``x`` lies outside the interval: the difference from ``x`` is significant
        at ``1 - level`` (two-sided). False without an interval."""
        return self.has_interval and (self.low > x or self.high < x)

    def above(self, x: float) -> bool:
        """Whether the whole interval lies above ``x``."""
        return self.has_interval and self.low > x

    def below(self, x: float) -> bool:
        """Whether the whole interval lies below ``x``."""
        return self.has_interval and self.high < x

    def map(self, function: Callable[[float], float]) -> Estimate:
        """The estimate under a monotone increasing ``function`` (e.g. ``math.exp`` of a
        log ratio): percentile intervals carry over exactly."""
        return Estimate(function(self.value), function(self.low), function(self.high), self.level)

    def format(self, spec: str = ".2f", prefix: str = "") -> str:
        """``"×2.96 [2.71, 3.22]"`` for ``format(".2f", "×")``; the value alone without an
        interval."""
        point = f"{prefix}{self.value:{spec}}"
        if not self.has_interval:
            return point
        return f"{point} [{self.low:{spec}}, {self.high:{spec}}]"

    def __str__(self) -> str:
        return self.format()

    def cells(self) -> list[float]:
        """``[value, low, high]``: the three CSV cells under `interval_header`."""
        return [self.value, self.low, self.high]

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(
            float(data["value"]),
            float(data.get("low", math.nan)),
            float(data.get("high", math.nan)),
            float(data.get("level", 0.95)),
        )

    @classmethod
    def point(cls, value: float, level: float = 0.95) -> Estimate:
        """A value without an interval (NaN bounds)."""
        return cls(float(value), math.nan, math.nan, level)


def interval_header(name: str) -> list[str]:
    """``[name, name_low, name_high]``: how every CSV names a metric and its bounds."""
    return [name, f"{name}_low", f"{name}_high"]


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Condition A against condition B on the same units: the difference A − B with its
    interval, and the two-sided p-value of "no difference" by the paired bootstrap."""

    difference: Estimate
    p_value: float
    test: str = "paired bootstrap, two-sided"

    @property
    def significant(self) -> bool:
        """Whether the difference's interval excludes 0 (at the interval's level)."""
        return self.difference.excludes(0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"difference": self.difference.to_dict(), "p_value": self.p_value, "test": self.test}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairedTest:
        return cls(Estimate.from_dict(data["difference"]), float(data["p_value"]), data["test"])


@dataclasses.dataclass(frozen=True)
class SeedSummary:
    """A training-based number over several seeds: mean ± sample standard deviation and
    every per-seed value (the spread between seeds is not a bootstrap interval)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float:
        """Sample standard deviation (``n - 1``); 0 for one seed."""
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def format(self, spec: str = ".2f") -> str:
        """``"81.20 ± 1.30 (n=3)"``."""
        return f"{self.mean:{spec}} ± {self.sd:{spec}} (n={len(self.values)})"

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "values": list(self.values),
            "mean": self.mean,
            "sd": self.sd,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeedSummary:
        return cls(tuple(int(s) for s in data["seeds"]), tuple(float(v) for v in data["values"]))


def seed_summary(values: Mapping[int, float]) -> SeedSummary:
    """`SeedSummary` of ``{seed: value}`` (in seed order as given)."""
    if not values:
        raise InvalidSettingError("seed_summary needs at least one seed's value; pass seeds=[0].")
    return SeedSummary(tuple(int(s) for s in values), tuple(float(v) for v in values.values()))


# ----------------------------------------------------------------------------- resampling


def _units(data: Sequence[Tensor]) -> int:
    """The number of units all ``data`` tensors share (their first dimension)."""
    if not data:
        raise WrongInputError("Pass at least one data tensor to resample.")
    for tensor in data:
        if not isinstance(tensor, Tensor):
            raise WrongInputError(
                f"Resampled data must be torch tensors, got a {type(tensor).__name__}; wrap "
                "it with torch.as_tensor(...)."
            )
        if tensor.ndim == 0:
            raise WrongInputError(
                "Resampled data needs a first dimension of units (windows, verses, pairs); "
                "got a scalar."
            )
    sizes = {int(t.shape[0]) for t in data}
    if len(sizes) != 1:
        raise WrongInputError(
            f"Data tensors disagree on the number of units {sorted(sizes)}; pass one value "
            "per unit in each (the same units in the same order)."
        )
    n = sizes.pop()
    if n == 0:
        raise InvalidSettingError("Nothing to resample: the data has no units.")
    return n


def _elements_per_unit(data: Sequence[Tensor]) -> int:
    return max(1, sum(int(t[0].numel()) for t in data))


def resample_indices(
    units: int, settings: Bootstrap = DEFAULT, *, elements_per_unit: int = 1
) -> Iterator[Tensor]:
    """Bootstrap indices ``[chunk, units]`` (``int64``, CPU), ``settings.resamples`` rows in
    all, in chunks that keep ``chunk × units × elements_per_unit`` under `CHUNK_ELEMENTS`.

    The same settings give the same indices for the same number of units, which is what
    pairs two conditions measured on the same units.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    chunk = max(1, CHUNK_ELEMENTS // max(1, units * elements_per_unit))
    done = 0
    while done < settings.resamples:
        size = min(chunk, settings.resamples - done)
        yield torch.randint(units, (size, units), generator=generator)
        done += size


def replicates(
    statistic: Statistic, data: Sequence[Tensor], settings: Bootstrap = DEFAULT
) -> Float[Tensor, " resamples"]:
    """The statistic on every bootstrap resample of ``data`` (one value per resample)."""
    n = _units(data)
    values = []
    for indices in resample_indices(n, settings, elements_per_unit=_elements_per_unit(data)):
        resampled = [t[indices.to(t.device)] for t in data]
        values.append(statistic(*resampled).detach().to("cpu", torch.float64).reshape(-1))
    return torch.cat(values)


def point_value(statistic: Statistic, data: Sequence[Tensor]) -> float:
    """The statistic on the data as measured (a batch of one "resample": all units once)."""
    return float(statistic(*(t.unsqueeze(0) for t in data)).reshape(-1)[0])


def percentile_interval(
    samples: Float[Tensor, " resamples"], level: float = 0.95
) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of ``samples`` (linear
    interpolation between order statistics; non-finite samples are dropped)."""
    samples = samples.to(torch.float64).reshape(-1)
    samples = samples[torch.isfinite(samples)]
    if samples.numel() == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2
    bounds = torch.quantile(samples, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    return float(bounds[0]), float(bounds[1])


def bootstrap(
    statistic: Statistic, data: Sequence[Tensor] | Tensor, settings: Bootstrap = DEFAULT
) -> Estimate:
    """The statistic of ``data`` with its percentile-bootstrap interval over the units."""
    data = [data] if isinstance(data, Tensor) else list(data)
    value = point_value(statistic, data)
    if _units(data) < 2:
        return Estimate.point(value, settings.level)
    low, high = percentile_interval(replicates(statistic, data, settings), settings.level)
    return Estimate(value, low, high, settings.level)


def _paired_replicates(
    statistic: Statistic,
    a: Sequence[Tensor],
    b: Sequence[Tensor],
    settings: Bootstrap,
) -> tuple[Tensor, Tensor]:
    """Replicates of A and B from the same indices (both resampled unit by unit)."""
    units = _units([*a, *b])
    a_values, b_values = [], []
    per_unit = _elements_per_unit([*a, *b])
    for indices in resample_indices(units, settings, elements_per_unit=per_unit):
        a_values.append(statistic(*(t[indices.to(t.device)] for t in a)).to("cpu", torch.float64))
        b_values.append(statistic(*(t[indices.to(t.device)] for t in b)).to("cpu", torch.float64))
    return torch.cat(a_values).reshape(-1), torch.cat(b_values).reshape(-1)


def paired(
    combine: Callable[[Tensor, Tensor], Tensor],
    statistic: Statistic,
    a: Sequence[Tensor],
    b: Sequence[Tensor],
    settings: Bootstrap = DEFAULT,
) -> Estimate:
    """``combine(statistic(A), statistic(B))`` (e.g. a ratio of perplexities) with its
    interval, A and B resampled with the same indices because they share their units."""
    a, b = list(a), list(b)
    value = float(
        combine(torch.tensor(point_value(statistic, a)), torch.tensor(point_value(statistic, b)))
    )
    if _units([*a, *b]) < 2:
        return Estimate.point(value, settings.level)
    a_values, b_values = _paired_replicates(statistic, a, b, settings)
    low, high = percentile_interval(combine(a_values, b_values), settings.level)
    return Estimate(value, low, high, settings.level)


def paired_test(
    statistic: Statistic,
    a: Sequence[Tensor],
    b: Sequence[Tensor],
    settings: Bootstrap = DEFAULT,
) -> PairedTest:
    """A against B on the same units: the difference ``statistic(A) - statistic(B)`` with
    its interval, and the two-sided paired-bootstrap p-value of "no difference".

    The p-value centres the resampled differences on zero (the null) and counts how often
    they lie at least as far from zero as the observed one: ``(1 + #{|d* - d| >= |d|}) /
    (resamples + 1)``, never 0.
    """
    a, b = list(a), list(b)
    observed = point_value(statistic, a) - point_value(statistic, b)
    if _units([*a, *b]) < 2:
        return PairedTest(Estimate.point(observed, settings.level), 1.0)
    a_values, b_values = _paired_replicates(statistic, a, b, settings)
    return difference_test(
        observed, a_values - b_values, settings.level, "paired bootstrap, two-sided"
    )


# ----------------------------------------------------------------------------- statistics


def mean_of(values: Tensor) -> Tensor:
    """Mean over the units of ``values`` ``[resamples, units]``: a statistic."""
    return values.to(torch.float64).mean(dim=1)


def ratio_of_sums(numerators: Tensor, denominators: Tensor) -> Tensor:
    """``sum(numerators) / sum(denominators)`` per resample: the mean NLL per token of
    windows holding different numbers of tokens, or any micro-average."""
    return numerators.to(torch.float64).sum(dim=1) / denominators.to(torch.float64).sum(dim=1)


def exp_ratio_of_sums(numerators: Tensor, denominators: Tensor) -> Tensor:
    """``exp(sum(nll) / sum(tokens))``: the perplexity of the resampled windows."""
    return torch.exp(ratio_of_sums(numerators, denominators))


def mean(values: Tensor, settings: Bootstrap = DEFAULT) -> Estimate:
    """The mean of per-unit ``values`` with its interval."""
    return bootstrap(mean_of, [torch.as_tensor(values)], settings)


def proportion(successes: Tensor, settings: Bootstrap = DEFAULT) -> Estimate:
    """The share of units that succeeded (accuracy, language-ID accuracy) with its interval;
    ``successes`` holds one bool (or 0/1) per unit."""
    return bootstrap(mean_of, [torch.as_tensor(successes).to(torch.float64)], settings)


def perplexity(nll_sums: Tensor, token_counts: Tensor, settings: Bootstrap = DEFAULT) -> Estimate:
    """Perplexity ``exp(Σ nll / Σ tokens)`` over windows with its interval (windows are the
    units: tokens of one window are not independent)."""
    data = [torch.as_tensor(nll_sums), torch.as_tensor(token_counts)]
    return bootstrap(exp_ratio_of_sums, data, settings)


def perplexity_ratio(
    nll_sums: Tensor, base_nll_sums: Tensor, token_counts: Tensor, settings: Bootstrap = DEFAULT
) -> Estimate:
    """``PPL / base PPL`` of two conditions measured on the same windows, paired."""
    tokens = torch.as_tensor(token_counts)
    return paired(
        torch.div,
        exp_ratio_of_sums,
        [torch.as_tensor(nll_sums), tokens],
        [torch.as_tensor(base_nll_sums), tokens],
        settings,
    )


# ----------------------------------------------------------------------------- curves


def bootstrap_each(
    statistic: Statistic, data: Sequence[Tensor] | Tensor, settings: Bootstrap = DEFAULT
) -> list[Estimate]:
    """`bootstrap` of a statistic with several outputs (a curve over layers): ``statistic``
    returns ``[resamples, outputs]``; one `Estimate` per output, every output from the same
    resamples of the units (so a curve's points are resampled together)."""
    data = [data] if isinstance(data, Tensor) else list(data)
    values = statistic(*(t.unsqueeze(0) for t in data)).detach().reshape(-1).tolist()
    if _units(data) < 2:
        return [Estimate.point(v, settings.level) for v in values]
    samples = replicates(statistic, data, settings).reshape(settings.resamples, len(values))
    return [
        Estimate(v, *percentile_interval(samples[:, k], settings.level), settings.level)
        for k, v in enumerate(values)
    ]


# ----------------------------------------------------------------------------- from replicates


def estimate_from_replicates(
    value: float, samples: Float[Tensor, " resamples"], level: float = 0.95
) -> Estimate:
    """``value`` with the percentile interval of ``samples`` already drawn (e.g. one set of
    replicates that several estimates and tests share); no interval from fewer than two
    finite samples' spread (all equal counts as an interval of width 0)."""
    if samples.numel() == 0:
        return Estimate.point(value, level)
    low, high = percentile_interval(samples, level)
    return Estimate(float(value), low, high, level)


def difference_test(
    observed: float,
    differences: Float[Tensor, " resamples"],
    level: float = 0.95,
    test: str = "bootstrap, two-sided",
) -> PairedTest:
    """A difference measured as ``observed`` with its resampled ``differences``: its
    interval and the two-sided bootstrap p-value of "no difference", as `paired_test`
    computes them, for differences that `paired_test` cannot form (e.g. one condition
    against the largest of several others measured on different units). No resamples:
    no interval and p = 1."""
    if differences.numel() == 0:
        return PairedTest(Estimate.point(observed, level), 1.0, test)
    differences = differences.to(torch.float64).reshape(-1)
    low, high = percentile_interval(differences, level)
    finite = differences[torch.isfinite(differences)]
    extreme = int(((finite - observed).abs() >= abs(observed) - 1e-12).sum())
    p_value = min(1.0, (1 + extreme) / (finite.numel() + 1))
    return PairedTest(Estimate(float(observed), low, high, level), p_value, test)
