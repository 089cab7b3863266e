"""Statistic names and quantile estimates read from an accumulated state dictionary.

`ActivationStats` answers ``stats.quantile(0.9)`` and ``stats["fr"].statistic("p90")``
through this module, which sees only the ``"{site}/{quantity}"`` state tensors and never
the class itself; `lsn_mech.stats.percentiles` offers the same views as functions of an
`ActivationStats` and sits above it. Imports flow one way:
``quantile_state ← container ← percentiles``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import InvalidSettingError, StatisticsMismatchError
from lsn_mech.stats.histogram import Histogram
from lsn_mech.stats.quantiles import batch_key

Estimate = Literal["histogram", "batch_mean"]
"""``"histogram"``: `QuantileAccumulator` (bounded error); ``"batch_mean"``: the
paper's per-batch quantiles averaged over batches (`BatchQuantileAccumulator`, biased)."""

ESTIMATES: tuple[Estimate, ...] = ("histogram", "batch_mean")

STATISTICS = ("mean", "p5", "p10", "p25", "p50", "p75", "p90", "p95")
"""The statistics Mondal et al. write into neurons at test time."""

_NAME = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_statistic(name: str) -> float | None:
    """``"p90" → 0.9``; ``"mean" → None``; anything else is an error naming the choices."""
    if name == "mean":
        return None
    match = _NAME.match(name)
    if match is None or float(match.group(1)) > 100:
        raise InvalidSettingError(
            f"Unknown statistic {name!r}; use 'mean' or a percentile 'p<0…100>' such as "
            f"{', '.join(STATISTICS[1:])}."
        )
    return float(match.group(1)) / 100


def check_estimate(estimate: str) -> None:
    """Raise unless ``estimate`` names a quantile estimate."""
    if estimate not in ESTIMATES:
        raise InvalidSettingError(
            f"estimate must be 'histogram' or 'batch_mean', got {estimate!r}."
        )


def quantile_sites(
    sites: Iterable[str], state: Mapping[str, Tensor], estimate: Estimate = "histogram"
) -> list[str]:
    """Those of ``sites`` at which ``state`` holds quantiles by ``estimate``."""
    marker = "hist" if estimate == "histogram" else "bq_batches"
    return [site for site in sites if f"{site}/{marker}" in state]


def histogram(state: Mapping[str, Tensor], site: str) -> Histogram:
    """The `QuantileAccumulator` histogram of ``site``, or an error that names the fix."""
    if f"{site}/hist" not in state:
        raise StatisticsMismatchError(
            f"These statistics hold no quantile histograms at {site!r}. Collect them with "
            "lsn_mech.collect_stats(model, corpus, accumulators=[MomentAccumulator(sites), "
            f"QuantileAccumulator(({site!r},))]) (from lsn_mech.stats)."
        )
    return Histogram(
        counts=state[f"{site}/hist"],
        low=state[f"{site}/hist_low"],
        high=state[f"{site}/hist_high"],
        vmin=state[f"{site}/hist_min"],
        vmax=state[f"{site}/hist_max"],
        # the exact count of values > 0 (moments or LAPE counts at this site), if collected
        positive=state.get(f"{site}/positive"),
    )


def batch_mean_quantile(
    state: Mapping[str, Tensor], q: float | int, site: str
) -> Float[Tensor, "layer d_mlp lang"]:
    """The `BatchQuantileAccumulator`'s batch-averaged quantile ``q`` at ``site``."""
    key = f"{site}/{batch_key(q)}"
    if key not in state:
        raise StatisticsMismatchError(
            f"These statistics hold no batch-averaged quantile {q} at {site!r}. Collect "
            f"it with accumulators=[..., BatchQuantileAccumulator(({site!r},), "
            f"quantiles=[..., {q}])], or use estimate='histogram'."
        )
    return state[key] / state[f"{site}/bq_batches"].double()
