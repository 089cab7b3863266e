"""Checks that statistics and values given to an intervention fit the model it edits.

Statistics of another model (another size, or another checkpoint of the same size) would
write the wrong numbers into the neurons, so they are refused or flagged before any
hook is attached. Unlike neurons (a set of positions, meaningful on a finetuned copy of
the same model), statistics are values of one model's activations: another shape or
another model id is refused.
"""

from __future__ import annotations

from typing import Any

from lsn_mech.errors import StatisticsMismatchError, WrongInputError
from lsn_mech.models.sites import HookSites
from lsn_mech.stats.container import ActivationStats, LanguageStats


def expect_activation_stats(value: Any, argument: str = "stats", *, caller: str) -> ActivationStats:
    """``value`` if it is an `ActivationStats`, else a `WrongInputError` naming the fix."""
    if isinstance(value, ActivationStats):
        return value
    if isinstance(value, LanguageStats):
        fix = (
            f"got the statistics of one language ({value.language!r}); pass the whole "
            f"ActivationStats ({argument}=stats, not stats[{value.language!r}])."
        )
    else:
        fix = (
            f"got a {type(value).__name__}; collect them with lsn_mech.collect_stats or "
            "load them with ActivationStats.load(path)."
        )
    raise WrongInputError(f"{caller}: {argument} must be an ActivationStats; {fix}")


def check_stats_fit(stats: ActivationStats, sites: HookSites, *, caller: str) -> None:
    """Refuse statistics of a model of another shape; warn on another model id."""
    if (stats.n_layers, stats.d_mlp) != (sites.n_layers, sites.d_mlp):
        raise StatisticsMismatchError(
            f"{caller}: the statistics describe a model with {stats.n_layers} layers x "
            f"{stats.d_mlp} neurons ({stats.provenance.model_id!r}), but this model has "
            f"{sites.n_layers} x {sites.d_mlp} ({sites.model_id!r}). Collect statistics on "
            "this model: lsn_mech.collect_stats(model, corpus)."
        )
    recorded = stats.provenance.model_id
    if recorded and sites.model_id and recorded != sites.model_id:
        raise StatisticsMismatchError(
            f"{caller}: the statistics were collected on {recorded!r} but are applied to "
            f"{sites.model_id!r}; their values describe another model's activations. Collect "
            "statistics on this model: lsn_mech.collect_stats(model, corpus) (if it is the "
            "same model under another name, set stats.provenance = "
            f"stats.provenance.replace(model_id={sites.model_id!r}))."
        )
