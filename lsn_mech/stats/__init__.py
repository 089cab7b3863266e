"""Streaming per-language activation statistics of MLP neurons."""

from lsn_mech.stats.accumulators import Accumulator, MomentAccumulator
from lsn_mech.stats.collect import BatchDone, collect_stats
from lsn_mech.stats.container import ActivationStats, LanguageStats, SiteValues
from lsn_mech.stats.percentiles import STATISTICS, statistic_value
from lsn_mech.stats.quantiles import PAPER_QUANTILES, BatchQuantileAccumulator, QuantileAccumulator

__all__ = [
    "PAPER_QUANTILES",
    "STATISTICS",
    "Accumulator",
    "ActivationStats",
    "BatchDone",
    "BatchQuantileAccumulator",
    "LanguageStats",
    "MomentAccumulator",
    "QuantileAccumulator",
    "SiteValues",
    "collect_stats",
    "statistic_value",
]
