"""Streaming per-language activation statistics of MLP neurons."""

from lsn_mech.stats.accumulators import Accumulator, MomentAccumulator
from lsn_mech.stats.collect import BatchDone, collect_stats
from lsn_mech.stats.container import ActivationStats, LanguageStats, SiteValues

__all__ = [
    "Accumulator",
    "ActivationStats",
    "BatchDone",
    "LanguageStats",
    "MomentAccumulator",
    "SiteValues",
    "collect_stats",
]
