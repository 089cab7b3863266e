"""BLEU/chrF intervals and paired tests through sacreBLEU's bootstrap: exact agreement
with sacreBLEU, coverage on a synthetic population whose corpus score is the truth, and
the LANDeRMT job's seeds, significance table and resumption."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
import sacrebleu

from lsn_mech import intervals
from lsn_mech.evaluate import TranslationResult, TranslationScores, TranslationTable
from lsn_mech.evaluate.mt_significance import (
    compare_systems,
    metric_intervals,
    sacrebleu_metrics,
    sacrebleu_seed,
)
from lsn_mech.evaluate.translation import translation_scores
from lsn_mech.pipelines.landermt_significance import HOLDS, REVERSED, UNDECIDED, Comparison

WORDS = [f"w{i}" for i in range(60)]


def population(size: int, noise: float, seed: int) -> tuple[list[str], list[str]]:
    """References of 5-20 random words and hypotheses with ``noise`` of the words replaced
    (and a word dropped from 30 % of them, so the brevity penalty plays a part)."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choices(WORDS, k=rng.randint(5, 20))) for _ in range(size)]
    hyps = []
    for ref in refs:
        out = [w if rng.random() > noise else rng.choice(WORDS) for w in ref.split()]
        hyps.append(" ".join(out[:-1] if rng.random() < 0.3 else out))
    return hyps, refs


def corpus_score(metric: object, hyps: list[str], refs: list[str]) -> float:
    stats = metric._extract_corpus_statistics(hyps, [refs])  # type: ignore[attr-defined]
    return float(metric._aggregate_and_compute(stats).score)  # type: ignore[attr-defined]


def test_interval_is_sacrebleus_bootstrap() -> None:
    hyps, refs = population(150, 0.35, seed=1)
    metrics = sacrebleu_metrics("13a")
    found = metric_intervals(hyps, refs, metrics, intervals.Bootstrap(resamples=1000))
    for name, metric in (
        ("bleu", sacrebleu.BLEU(smooth_method="none")),
        ("chrf", sacrebleu.CHRF()),
    ):
        score = metric.corpus_score(hyps, [refs], n_bootstrap=1000)  # seed 12345, 95 %
        assert found[name].value == pytest.approx(score.score)
        # sacreBLEU prints the half-width of the same percentiles (its own order statistics)
        assert found[name].half_width == pytest.approx(score._ci, rel=0.03)
        assert found[name].low < score.score < found[name].high
    assert os.environ.get("SACREBLEU_SEED") is None  # restored
    assert sacrebleu_seed(intervals.Bootstrap(seed=3)) == 12348
    again = metric_intervals(hyps, refs, metrics, intervals.Bootstrap(resamples=1000))
    assert again == found
    other = metric_intervals(hyps, refs, metrics, intervals.Bootstrap(resamples=1000, seed=1))
    assert other["bleu"] != found["bleu"] and other["bleu"].value == found["bleu"].value
    wider = metric_intervals(hyps, refs, metrics, intervals.Bootstrap(resamples=1000, level=0.99))
    assert wider["bleu"].low < found["bleu"].low and wider["bleu"].high > found["bleu"].high


def test_interval_covers_the_population_score_and_shrinks_with_n() -> None:
    """Test sets drawn from a large population: the 95 % interval covers the population's
    corpus score in about 95 % of them, and halves when the test set is 4x larger."""
    hyps, refs = population(4000, 0.35, seed=0)
    metrics = sacrebleu_metrics("13a")
    truth = {name: corpus_score(metric, hyps, refs) for name, metric in metrics.items()}
    settings = intervals.Bootstrap(resamples=100, seed=1)
    rng = random.Random(2)
    widths: dict[int, dict[str, list[float]]] = {}
    covered = {"bleu": 0, "chrf": 0}
    trials = 80
    for n, repeats in ((50, 20), (200, trials)):
        widths[n] = {"bleu": [], "chrf": []}
        for _ in range(repeats):
            rows = rng.sample(range(len(refs)), n)
            found = metric_intervals(
                [hyps[i] for i in rows], [refs[i] for i in rows], metrics, settings
            )
            for name, estimate in found.items():
                widths[n][name].append(estimate.high - estimate.low)
                if n == 200:
                    covered[name] += estimate.low <= truth[name] <= estimate.high
    for name in ("bleu", "chrf"):
        assert 0.86 <= covered[name] / trials <= 1.0, (name, covered[name])
        ratio = (sum(widths[200][name]) / trials) / (sum(widths[50][name]) / 20)
        assert 0.4 < ratio < 0.62, (name, ratio)  # ~ sqrt(50 / 200) = 0.5


def test_paired_comparison_of_two_systems() -> None:
    good, refs = population(200, 0.2, seed=3)
    bad, _ = population(200, 0.45, seed=3)  # same references (same seed), more noise
    metrics = sacrebleu_metrics("13a")
    settings = intervals.Bootstrap(resamples=300)
    tests = compare_systems(good, bad, refs, metrics, settings)
    for name, metric in metrics.items():
        delta = corpus_score(metric, good, refs) - corpus_score(metric, bad, refs)
        assert tests[name].difference.value == pytest.approx(delta)
        assert tests[name].difference.low > 0 and tests[name].p_value < 0.01
        assert tests[name].test.startswith("sacreBLEU paired bootstrap")
    same = compare_systems(good, good, refs, metrics, settings)
    # sacreBLEU's p-value counts resampled |Δ| strictly above the observed one, so a system
    # against itself gets the smallest p-value there is; the interval [0, 0] does not
    # exclude 0, which is why a verdict needs both (landermt_significance)
    assert same["bleu"].difference.value == 0 and same["bleu"].p_value == pytest.approx(1 / 301)
    assert same["bleu"].difference.low == same["bleu"].difference.high == 0
    assert not same["bleu"].significant
    with pytest.raises(ValueError, match="same test set"):
        compare_systems(good[:3], bad, refs, metrics, settings)


def test_scores_with_intervals_save_and_old_files_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hyps, refs = population(40, 0.3, seed=4)
    plain = translation_scores(hyps, refs, target_language="fr")
    assert not plain.has_interval and math.isnan(plain.bleu_interval.low)
    assert set(plain.to_dict()) == {"bleu", "chrf", "bleu_signature", "chrf_signature", "n"}
    scores = translation_scores(
        hyps, refs, target_language="fr", bootstrap=intervals.Bootstrap(resamples=200)
    )
    assert scores.bleu == plain.bleu and scores.has_interval
    assert scores.bleu_low < scores.bleu < scores.bleu_high
    assert TranslationScores.from_dict(json.loads(json.dumps(scores.to_dict()))) == scores
    assert f"BLEU {scores.bleu:.2f} [" in str(scores)
    result = TranslationResult(
        "en", "fr", 0, plain, ["p"] * 40, hyps, refs, ["s"] * 40
    ).with_intervals(intervals.Bootstrap(resamples=200))
    assert result.scores == scores
    assert result.provenance.parameters["intervals"]["resamples"] == 200
    assert TranslationResult.load(result.save(tmp_path / "r.json")) == result
    table = TranslationTable.from_results([result])
    header = table.to_csv(tmp_path / "t.csv").read_text().splitlines()[0]
    assert header.startswith("direction,src,tgt,n,bleu,bleu_low,bleu_high,chrf,chrf_low,chrf_high")
    bar = table.plot().data[0]
    assert bar.error_y.array[0] == pytest.approx(scores.bleu_high - scores.bleu)
    assert "[" in table.plot(kind="heatmap").data[0].customdata[0][0]
    assert "[" in str(table)
    # a result written before intervals existed loads, without an interval
    old = json.loads((tmp_path / "r.json").read_text())
    for key in ("bleu_low", "bleu_high", "chrf_low", "chrf_high", "level"):
        del old["scores"][key]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = TranslationResult.load(tmp_path / "old.json")
    assert loaded.scores == plain and not TranslationTable.from_results([loaded]).has_intervals
    better = TranslationResult("en", "fr", 0, plain, ["p"] * 40, refs, refs, ["s"] * 40)
    tests = better.compare(result, intervals.Bootstrap(resamples=200))
    assert tests["bleu"].difference.value == pytest.approx(100.0 - plain.bleu)


def verdicts(*pairs: tuple[float, float], half_width: float = 0.5) -> str:
    tests = tuple(
        intervals.PairedTest(intervals.Estimate(d, d - half_width, d + half_width), p)
        for d, p in pairs
    )
    return Comparison("lora", "en-fr", "bleu", tuple(range(len(pairs))), tests, 0.05).verdict


def test_an_ordering_holds_only_when_every_seed_says_so() -> None:
    assert verdicts((2.0, 0.01), (1.0, 0.02)) == HOLDS
    assert verdicts((-2.0, 0.01)) == REVERSED
    assert verdicts((2.0, 0.01), (1.0, 0.2)) == UNDECIDED
    assert verdicts((2.0, 0.01), (-1.0, 0.01)) == UNDECIDED
    assert verdicts((2.0, 0.01), half_width=3.0) == UNDECIDED  # the interval holds 0
    assert verdicts((0.0, 0.001), half_width=0.0) == UNDECIDED  # identical systems
    comparison = Comparison(
        "lora",
        "en-fr",
        "bleu",
        (0,),
        (intervals.PairedTest(intervals.Estimate(1.0, 0.0, 2.0), 0.5),),
        0.05,
    )
    assert Comparison.from_dict(json.loads(json.dumps(comparison.to_dict()))) == comparison
