"""Streaming per-language activation statistics of MLP neurons."""

from lsn_mech.stats.accumulators import Accumulator, MomentAccumulator
from lsn_mech.stats.collect import BatchDone, collect_stats
from lsn_mech.stats.container import ActivationStats, LanguageStats, SiteValues
from lsn_mech.stats.percentiles import STATISTICS, statistic_value
from lsn_mech.stats.positive_counts import PositiveCountAccumulator
from lsn_mech.stats.quantiles import PAPER_QUANTILES, BatchQuantileAccumulator, QuantileAccumulator
from lsn_mech.stats.registry import (
    ACCUMULATOR_TYPES,
    UnknownAccumulatorError,
    accumulator_type,
    register_accumulator,
)
from lsn_mech.stats.top_activations import TopActivations, collect_top_activations

__all__ = [
    "ACCUMULATOR_TYPES",
    "PAPER_QUANTILES",
    "STATISTICS",
    "Accumulator",
    "ActivationStats",
    "BatchDone",
    "BatchQuantileAccumulator",
    "LanguageStats",
    "MomentAccumulator",
    "PositiveCountAccumulator",
    "QuantileAccumulator",
    "SiteValues",
    "TopActivations",
    "UnknownAccumulatorError",
    "accumulator_type",
    "collect_stats",
    "collect_top_activations",
    "register_accumulator",
    "statistic_value",
]
