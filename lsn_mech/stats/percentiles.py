"""Percentile views of `ActivationStats`: ``stats.quantile(0.9, "mlp_pre")``,
``stats["fr"].statistic("p90")``, and `statistic_value` for Mondal et al.'s site mismatch.

Statistic names: ``"mean"``, ``"p5"``, ``"p10"``, ``"p25"``, ``"p50"``, ``"p75"``,
``"p90"``, ``"p95"`` (any ``"p<number>"`` in ``[0, 100]`` works with the histogram).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import StatisticsMismatchError
from lsn_mech.stats.container import ActivationStats, SiteValues
from lsn_mech.stats.histogram import Histogram, histogram_quantile
from lsn_mech.stats.quantiles import batch_key

Estimate = Literal["histogram", "batch_mean"]
"""``"histogram"``: `QuantileAccumulator` (bounded error); ``"batch_mean"``: the
paper's per-batch quantiles averaged over batches (`BatchQuantileAccumulator`, biased)."""

STATISTICS = ("mean", "p5", "p10", "p25", "p50", "p75", "p90", "p95")
"""The statistics Mondal et al. write into neurons at test time."""

_NAME = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_statistic(name: str) -> float | None:
    """``"p90" → 0.9``; ``"mean" → None``; anything else is an error naming the choices."""
    if name == "mean":
        return None
    match = _NAME.match(name)
    if match is None or float(match.group(1)) > 100:
        raise ValueError(
            f"Unknown statistic {name!r}; use 'mean' or a percentile 'p<0…100>' such as "
            f"{', '.join(STATISTICS[1:])}."
        )
    return float(match.group(1)) / 100


def quantile_sites(stats: ActivationStats, estimate: Estimate = "histogram") -> list[str]:
    """Sites at which ``stats`` can give quantiles by ``estimate``."""
    marker = "hist" if estimate == "histogram" else "bq_batches"
    return [site for site in stats.sites if f"{site}/{marker}" in stats.state]


def histogram(stats: ActivationStats, site: str) -> Histogram:
    """The `QuantileAccumulator` histogram of ``site``, or an error that names the fix."""
    if f"{site}/hist" not in stats.state:
        raise StatisticsMismatchError(
            f"These statistics hold no quantile histograms at {site!r}. Collect them with "
            "lsn_mech.collect_stats(model, corpus, accumulators=[MomentAccumulator(sites), "
            f"QuantileAccumulator(({site!r},))]) (from lsn_mech.stats)."
        )
    stats._per_token()  # a language without tokens has no quantiles: say so
    return Histogram(
        counts=stats.state[f"{site}/hist"],
        low=stats.state[f"{site}/hist_low"],
        high=stats.state[f"{site}/hist_high"],
        vmin=stats.state[f"{site}/hist_min"],
        vmax=stats.state[f"{site}/hist_max"],
    )


def _histogram_quantile(stats: ActivationStats, q: float | int, site: str) -> tuple[Tensor, Tensor]:
    """`histogram_quantile`, remembered on ``stats`` until its counts change.

    Interventions ask for the same percentile once per language and value; recomputing it
    over every neuron, bin and language each time cost seconds on Gemma 3 270M. The key
    holds the counts tensor's version counter, so counts updated in place (a callback
    reading statistics mid-collection) are never served stale.
    """
    counts = stats.state.get(f"{site}/hist")
    key = (site, float(q), id(counts), getattr(counts, "_version", None))
    cache: dict[Any, tuple[Tensor, Tensor]] = stats.__dict__.setdefault("_quantile_cache", {})
    if key not in cache:
        cache[key] = histogram_quantile(histogram(stats, site), q)
    return cache[key]


def quantile(
    stats: ActivationStats, q: float | int, site: str, estimate: Estimate = "histogram"
) -> Float[Tensor, "layer d_mlp lang"]:
    """Quantile ``q`` of every neuron's activations per language (float64)."""
    if estimate == "histogram":
        return _histogram_quantile(stats, q, site)[0]
    if estimate == "batch_mean":
        key = f"{site}/{batch_key(q)}"
        if key not in stats.state:
            raise StatisticsMismatchError(
                f"These statistics hold no batch-averaged quantile {q} at {site!r}. Collect "
                f"it with accumulators=[..., BatchQuantileAccumulator(({site!r},), "
                f"quantiles=[..., {q}])], or use estimate='histogram'."
            )
        stats._per_token()
        return stats.state[key] / stats.state[f"{site}/bq_batches"].double()
    raise ValueError(f"estimate must be 'histogram' or 'batch_mean', got {estimate!r}.")


def quantile_error_bound(
    stats: ActivationStats, q: float | int, site: str
) -> Float[Tensor, "layer d_mlp lang"]:
    """Guaranteed bound on ``|stats.quantile(q) − exact quantile|`` per neuron and language.

    The larger width of the (at most two) histogram bins that hold the order statistics
    the quantile interpolates; see `lsn_mech.stats.histogram.histogram_quantile`.
    """
    return _histogram_quantile(stats, q, site)[1]


def statistic(
    stats: ActivationStats, name: str, site: str, estimate: Estimate = "histogram"
) -> Float[Tensor, "layer d_mlp lang"]:
    """``"mean"`` or a percentile ``"p<number>"`` of every neuron, per language."""
    q = parse_statistic(name)
    if q is None:
        return stats.mean(site)
    return quantile(stats, q, site, estimate)


def statistic_value(
    stats: ActivationStats,
    language: str,
    name: str,
    *,
    read_site: str = "mlp_pre",
    write_site: str = "mlp_post",
    estimate: Estimate = "histogram",
) -> SiteValues:
    """A statistic read at one site, labelled with another, for `lsn_mech.set_to`.

    Mondal et al.'s reference code takes its statistics on the gate's pre-activation and
    writes them into the post-activation (the input of the down projection). The default
    views (``stats["fr"].statistic("p90")``) keep each site's statistic at its own site;
    this helper makes the mismatch explicit::

        value = statistic_value(stats, "fr", "p90")   # mlp_pre P90, labelled mlp_post
        with lsn_mech.set_to(model, neurons["fr"], value): ...

    With ``read_site == write_site`` it equals ``stats[language].statistic(name)``.
    """
    index = stats.language_index(language)
    values = statistic(stats, name, read_site, estimate)[..., index]
    return SiteValues({write_site: values})
