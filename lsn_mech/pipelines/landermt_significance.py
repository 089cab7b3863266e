"""Is LANDeRMT better than each other method? sacreBLEU's paired bootstrap decides.

Table 1 of the paper ranks LANDeRMT above every baseline and ablation. For each other
method, direction and metric (BLEU, chrF) the job compares LANDeRMT's translations with
the method's on the same test sentences (`TranslationResult.compare`: the difference with
its paired interval and sacreBLEU's ``paired_bs`` p-value). Training-based methods run
once per seed; LANDeRMT's seed ``s`` is compared with the other method's seed ``s`` (with
its only run when it does not train). The ordering "LANDeRMT > method" **holds** when
every seed's difference is positive with p < α = 1 − confidence *and* a paired interval
that excludes 0, is **reversed** when every one is negative in the same sense, and is
**not decided** otherwise.

Why both: sacreBLEU's paired-bootstrap p-value counts resampled absolute differences
(centred on their mean) *strictly* above the observed one, so identical systems get the
smallest p-value there is, ``1 / (resamples + 1)``, and on synthetic systems that differ
only by chance it falls below 0.05 about twice as often as 5 % of the time
(docs/translation.md).
The percentile interval of the paired difference (same resampled sentences for both
systems) excludes 0 at about the nominal rate; requiring it keeps the decision honest
while the table still shows sacreBLEU's p-value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lsn_mech.evaluate.mt_significance import METRICS, TEST_NAME
from lsn_mech.intervals import Bootstrap, PairedTest

REFERENCE_METHOD = "landermt"
HOLDS, REVERSED, UNDECIDED = "holds", "reversed", "not decided"

Runs = Mapping[str, Mapping[int, Mapping[str, Any]]]
"""``{method: {seed: {direction: TranslationResult}}}``."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """LANDeRMT against one method on one direction and metric, one test per seed."""

    method: str
    direction: str
    metric: str
    seeds: tuple[int, ...]
    tests: tuple[PairedTest, ...]
    alpha: float

    @property
    def mean_difference(self) -> float:
        return sum(t.difference.value for t in self.tests) / len(self.tests)

    @property
    def verdict(self) -> str:
        """`HOLDS`, `REVERSED` or `UNDECIDED` (module doc)."""
        significant = all(t.p_value < self.alpha and t.significant for t in self.tests)
        if significant and all(t.difference.value > 0 for t in self.tests):
            return HOLDS
        if significant and all(t.difference.value < 0 for t in self.tests):
            return REVERSED
        return UNDECIDED

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "direction": self.direction,
            "metric": self.metric,
            "seeds": list(self.seeds),
            "tests": [t.to_dict() for t in self.tests],
            "alpha": self.alpha,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            data["method"],
            data["direction"],
            data["metric"],
            tuple(int(s) for s in data["seeds"]),
            tuple(PairedTest.from_dict(t) for t in data["tests"]),
            float(data["alpha"]),
        )


def compare_with_landermt(runs: Runs, bootstrap: Bootstrap) -> list[Comparison]:
    """Every comparison of LANDeRMT with another method in ``runs`` (none without it)."""
    ours = runs.get(REFERENCE_METHOD)
    if not ours:
        return []
    alpha = 1.0 - bootstrap.level
    comparisons = []
    for method, by_seed in runs.items():
        if method == REFERENCE_METHOD or not by_seed:
            continue
        pairs = [(s, s if s in by_seed else next(iter(by_seed))) for s in ours]
        directions = [d for d in ours[next(iter(ours))] if d in by_seed[next(iter(by_seed))]]
        for direction in directions:
            tests = {m: [] for m in METRICS}  # type: dict[str, list[PairedTest]]
            for our_seed, their_seed in pairs:
                found = ours[our_seed][direction].compare(by_seed[their_seed][direction], bootstrap)
                for metric in METRICS:
                    tests[metric].append(found[metric])
            for metric in METRICS:
                comparisons.append(
                    Comparison(method, direction, metric, tuple(ours), tuple(tests[metric]), alpha)
                )
    return comparisons


def significance_note(bootstrap: Bootstrap) -> str:
    """The sentence a report prints under its significance table."""
    return (
        f"Test: {TEST_NAME}, {bootstrap.resamples} resamples of the test sentences "
        f"(sacreBLEU seed {12345 + bootstrap.seed}), two-sided, α = {1 - bootstrap.level:.2f}; "
        f"Δ = LANDeRMT − method with its {bootstrap.level:.0%} paired interval. An ordering "
        "'LANDeRMT > method' holds when every seed's Δ is positive with p < α and an "
        "interval that excludes 0, is reversed when every seed's Δ is negative in the same "
        "sense, and is not decided otherwise (sacreBLEU's p-value alone calls even identical "
        "systems different: docs/translation.md)."
    )
