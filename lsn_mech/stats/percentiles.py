"""Percentile views of `ActivationStats`: ``stats.quantile(0.9, "mlp_pre")``,
``stats["fr"].statistic("p90")``, and `statistic_value` for Mondal et al.'s site mismatch.

Statistic names: ``"mean"``, ``"p5"``, ``"p10"``, ``"p25"``, ``"p50"``, ``"p75"``,
``"p90"``, ``"p95"`` (any ``"p<number>"`` in ``[0, 100]`` works with the histogram).

The functions here take an `ActivationStats` and call its methods, which read the state
through `lsn_mech.stats.quantile_state`; so this module sits above the container and
nothing imports it back.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lsn_mech.stats import quantile_state
from lsn_mech.stats.container import ActivationStats, SiteValues
from lsn_mech.stats.histogram import Histogram
from lsn_mech.stats.quantile_state import STATISTICS, Estimate, parse_statistic

__all__ = [
    "STATISTICS",
    "Estimate",
    "histogram",
    "parse_statistic",
    "quantile",
    "quantile_error_bound",
    "quantile_sites",
    "statistic",
    "statistic_value",
]


def quantile_sites(stats: ActivationStats, estimate: Estimate = "histogram") -> list[str]:
    """Sites at which ``stats`` can give quantiles by ``estimate``."""
    return quantile_state.quantile_sites(stats.sites, stats.state, estimate)


def histogram(stats: ActivationStats, site: str) -> Histogram:
    """The `QuantileAccumulator` histogram of ``site``, or an error that names the fix."""
    return stats.histogram(site)


def quantile(
    stats: ActivationStats, q: float | int, site: str, estimate: Estimate = "histogram"
) -> Float[Tensor, "layer d_mlp lang"]:
    """Quantile ``q`` of every neuron's activations per language (float64)."""
    return stats.quantile(q, site, estimate=estimate)


def quantile_error_bound(
    stats: ActivationStats, q: float | int, site: str
) -> Float[Tensor, "layer d_mlp lang"]:
    """Guaranteed bound on ``|stats.quantile(q) − exact quantile|`` per neuron and language.

    The larger width of the (at most two) histogram bins that hold the order statistics
    the quantile interpolates; see `lsn_mech.stats.histogram.histogram_quantile`.
    """
    return stats.quantile_error_bound(q, site)


def statistic(
    stats: ActivationStats, name: str, site: str, estimate: Estimate = "histogram"
) -> Float[Tensor, "layer d_mlp lang"]:
    """``"mean"`` or a percentile ``"p<number>"`` of every neuron, per language."""
    return stats.statistic(name, site, estimate=estimate)


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
    values = stats.statistic(name, read_site, estimate=estimate)[..., index]
    return SiteValues({write_site: values})
