"""BLEU and chrF intervals and paired significance tests, through sacreBLEU's own bootstrap.

A corpus BLEU is not a mean over sentences (its n-gram counts are summed first), so its
interval comes from resampling whole sentences and re-scoring the summed statistics:
sacreBLEU does exactly that (``corpus_score(n_bootstrap=)`` and the paired bootstrap test
``sacrebleu.significance.PairedTest(test_type="bs")``, after Koehn 2004). We call it
rather than `lsn_mech.intervals`, and only read off percentiles at the requested level:

```python
from lsn_mech import intervals
from lsn_mech.errors import LsnMechError
from lsn_mech.evaluate.mt_significance import sacrebleu_metrics, metric_intervals, compare_systems

metrics = sacrebleu_metrics("fr")
bleu = metric_intervals(hyps, refs, metrics, intervals.Bootstrap())["bleu"]   # Estimate
tests = compare_systems(ours, baseline, refs, metrics, intervals.Bootstrap())
print(bleu.format(".2f"), tests["bleu"].difference, tests["bleu"].p_value)
```

Seeds: sacreBLEU seeds its generator from ``SACREBLEU_SEED`` (default 12345) and treats
seed 0 as "no seed", so `Bootstrap.seed` ``s`` runs sacreBLEU with ``12345 + s``: the
default ``seed=0`` reproduces sacreBLEU's own default draws. The same seed and number of
sentences give the same resampled indices for every system, which is what makes the
interval of a difference paired.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from lsn_mech import intervals
from lsn_mech.errors import LsnMechError
from lsn_mech.intervals import Bootstrap, Estimate, PairedTest

SACREBLEU_SEED_BASE = 12345
"""sacreBLEU's default seed; `Bootstrap.seed` is added to it (see the module doc)."""

TEST_NAME = "sacreBLEU paired bootstrap resampling (paired_bs, Koehn 2004)"
"""The test behind every p-value here, as reports name it."""

METRICS = ("bleu", "chrf")


class SystemsMismatchError(LsnMechError, ValueError):
    """Two systems compared on different test sets (different numbers of sentences)."""


def sacrebleu_seed(settings: Bootstrap) -> int:
    """The ``SACREBLEU_SEED`` a `Bootstrap` runs sacreBLEU with."""
    return SACREBLEU_SEED_BASE + int(settings.seed)


@contextlib.contextmanager
def _seeded(settings: Bootstrap) -> Iterator[None]:
    """Set ``SACREBLEU_SEED`` for the duration (sacreBLEU reads no other seed)."""
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(sacrebleu_seed(settings))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous


def sacrebleu_metrics(
    tokenize: str, smooth_method: str = "none"
) -> dict[str, Any]:  # the sacreBLEU Metric objects
    """``{"bleu": BLEU(tokenize, smooth_method), "chrf": CHRF()}`` (sacreBLEU's defaults
    otherwise: 4-grams, character 6-grams)."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(tokenize=tokenize, smooth_method=smooth_method), "chrf": CHRF()}


def _resampled_scores(
    metric: Any, hypotheses: Sequence[str], references: Sequence[str], settings: Bootstrap
) -> tuple[float, torch.Tensor]:
    """The corpus score and its ``settings.resamples`` bootstrap scores, by sacreBLEU's
    resampling (the function behind ``corpus_score(n_bootstrap=...)``)."""
    from sacrebleu.significance import _bootstrap_resample

    stats = metric._extract_corpus_statistics(list(hypotheses), [list(references)])
    score = float(metric._aggregate_and_compute(stats).score)
    with _seeded(settings):
        _, scores = _bootstrap_resample(stats, metric, settings.resamples)
    return score, torch.tensor([s.score for s in scores], dtype=torch.float64)


def metric_intervals(
    hypotheses: Sequence[str],
    references: Sequence[str],
    metrics: Mapping[str, Any],
    settings: Bootstrap = intervals.DEFAULT,
) -> dict[str, Estimate]:
    """Each metric's corpus score with its percentile interval over sacreBLEU's bootstrap
    resamples of the sentences (at ``settings.level``; sacreBLEU itself prints the 95 %
    half-width, ``μ ± ci``). One sentence: no interval (NaN bounds)."""
    result = {}
    for name, metric in metrics.items():
        if len(hypotheses) < 2:
            stats = metric._extract_corpus_statistics(list(hypotheses), [list(references)])
            value = float(metric._aggregate_and_compute(stats).score)
            result[name] = Estimate.point(value, settings.level)
            continue
        value, samples = _resampled_scores(metric, hypotheses, references, settings)
        low, high = intervals.percentile_interval(samples, settings.level)
        result[name] = Estimate(value, low, high, settings.level)
    return result


def compare_systems(
    system: Sequence[str],
    baseline: Sequence[str],
    references: Sequence[str],
    metrics: Mapping[str, Any],
    settings: Bootstrap = intervals.DEFAULT,
) -> dict[str, PairedTest]:
    """``system`` against ``baseline`` on the same references, per metric: the difference
    system − baseline with its paired interval, and sacreBLEU's paired-bootstrap p-value.

    The p-value is sacreBLEU's ``PairedTest(test_type="bs")`` (``settings.resamples``
    resamples): how often a resampled absolute difference, centred on the mean resampled
    one, exceeds the observed absolute difference — two-sided, never 0. The interval of
    the difference comes from the same resampled indices for both systems.
    """
    from sacrebleu.significance import PairedTest as SacrePairedTest

    if not len(system) == len(baseline) == len(references):
        raise SystemsMismatchError(
            f"{len(system)} system and {len(baseline)} baseline hypotheses for "
            f"{len(references)} references; compare translations of the same test set."
        )
    result = {}
    for name, metric in metrics.items():
        if len(references) < 2:
            a = metric_intervals(system, references, {name: metric}, settings)[name].value
            b = metric_intervals(baseline, references, {name: metric}, settings)[name].value
            result[name] = PairedTest(Estimate.point(a - b, settings.level), 1.0, TEST_NAME)
            continue
        a, a_samples = _resampled_scores(metric, system, references, settings)
        b, b_samples = _resampled_scores(metric, baseline, references, settings)
        low, high = intervals.percentile_interval(a_samples - b_samples, settings.level)
        with _seeded(settings):
            test = SacrePairedTest(
                [("baseline", list(baseline)), ("system", list(system))],
                {name: metric},
                [list(references)],
                test_type="bs",
                n_samples=settings.resamples,
            )
            _, scores = test()
        p_value = float(next(v for k, v in scores.items() if k != "System")[1].p_value)
        difference = Estimate(a - b, low, high, settings.level)
        result[name] = PairedTest(difference, p_value, TEST_NAME)
    return result
