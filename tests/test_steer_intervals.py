"""Steering's language accuracy with intervals: exact cases, files with and without bounds,
coverage of a known accuracy, shrinkage, and the paired test between settings."""

from __future__ import annotations

import json
import math
import random

import pytest

from lsn_mech.errors import InvalidSettingError
from lsn_mech.experiments import Generation, SteeringResult
from lsn_mech.intervals import Bootstrap

FAST = Bootstrap(resamples=400, seed=0)


def generation(
    setting: str, language: str, k: int, detected: str | None, expected: str
) -> Generation:
    return Generation(
        setting, language, expected, f"prompt {k}", "…", detected, detected == expected, 5
    )


def synthetic(
    accuracy: dict[str, float], n: int, seed: int, languages: tuple[str, ...] = ("en", "fr")
) -> SteeringResult:
    """``n`` prompts per language; in each setting a prompt's answer is in the expected
    language with the setting's true probability (independently)."""
    rng = random.Random(seed)
    generations = [
        generation(s, x, k, x if rng.random() < p else "zh", x)
        for s, p in accuracy.items()
        for x in languages
        for k in range(n)
    ]
    return SteeringResult(list(accuracy), list(languages), None, generations)


def test_estimates_are_the_accuracies_with_bounds_around_them() -> None:
    result = synthetic({"normal": 0.5, "steered": 0.9}, 40, seed=1)
    estimates = result.accuracy_estimates(FAST)
    for setting, row in result.accuracy().items():
        for language, value in row.items():
            e = estimates[setting][language]
            assert e.value == value and e.low < value < e.high and e.level == 0.95
        assert estimates[setting]["all"].value == result.mean_accuracy()[setting]
    perfect = SteeringResult(
        ["normal"], ["en"], None, [generation("normal", "en", k, "en", "en") for k in range(9)]
    )
    e = perfect.accuracy_estimates()["normal"]["en"]
    assert (e.value, e.low, e.high) == (1.0, 1.0, 1.0)
    single = SteeringResult(["normal"], ["en"], None, [generation("normal", "en", 0, "en", "en")])
    assert not single.accuracy_estimates()["normal"]["en"].has_interval


def test_tables_and_json_hold_the_bounds_and_old_files_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = synthetic({"normal": 0.5, "steered": 0.9}, 30, seed=2)
    accuracy = result.to_pandas(view="accuracy")
    assert list(accuracy.columns) == [
        "setting",
        "language",
        "n",
        "accuracy",
        "accuracy_low",
        "accuracy_high",
    ]
    assert accuracy["n"].tolist() == [30, 30, 60, 30, 30, 60]
    assert (accuracy["accuracy_low"] <= accuracy["accuracy"]).all()
    tests = result.to_pandas(view="tests")
    assert tests[["setting", "baseline", "language"]].values.tolist()[-1] == [
        "steered",
        "normal",
        "all",
    ]
    assert {"difference", "difference_low", "difference_high", "p_value", "test"} <= set(
        tests.columns
    )
    wide = result.to_pandas(form="wide")
    assert list(wide.columns)[:4] == ["setting", "en", "en_low", "en_high"]
    assert wide["all_low"].tolist() == accuracy["accuracy_low"].tolist()[2::3]
    csv = result.to_csv(tmp_path / "accuracy.csv", view="accuracy").read_text(encoding="utf-8")
    assert csv.splitlines()[0] == "setting,language,n,accuracy,accuracy_low,accuracy_high"
    with pytest.raises(InvalidSettingError, match="'generations', 'accuracy', 'tests'"):
        result.to_pandas(view="cells")
    text = str(result)
    assert (
        "[" in text
        and "steered raises the share" in text
        and "paired bootstrap over prompts" in text
    )

    path = result.save(tmp_path / "steering.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    saved = data["intervals"]["accuracy"]["steered"]["en"]
    assert saved == result.accuracy_estimates()["steered"]["en"].to_dict()
    assert data["intervals"]["bootstrap"]["resamples"] == 1000
    assert SteeringResult.load(path) == result
    # A file from before intervals: no "intervals" key, no settings in its provenance.
    del data["intervals"]
    path.write_text(json.dumps(data), encoding="utf-8")
    old = SteeringResult.load(path)
    assert old == result and old.bootstrap_settings() == Bootstrap()
    assert old.accuracy_estimates()["steered"]["en"].has_interval


def test_recorded_settings_drive_the_intervals() -> None:
    result = synthetic({"normal": 0.5}, 50, seed=3)
    result.provenance.parameters["intervals"] = Bootstrap(
        resamples=300, level=0.8, seed=7
    ).to_dict()
    e = result.accuracy_estimates()["normal"]["en"]
    assert e.level == 0.8 and e == result.accuracy_estimates(Bootstrap(300, 0.8, 7))["normal"]["en"]
    assert (
        e.high - e.low
        < result.accuracy_estimates(Bootstrap(300, 0.99, 7))["normal"]["en"].half_width * 2
    )


def test_interval_covers_the_true_accuracy_at_about_the_nominal_rate() -> None:
    """100 experiments × 3 languages of 60 prompts each: the 95 % interval holds the true
    accuracy 0.7 in about 95 % of them (binomial sd of the rate over 300 cells: 1.3 %)."""
    covered = total = 0
    for seed in range(100):
        result = synthetic({"normal": 0.7}, 60, seed, languages=("en", "fr", "vi"))
        for language, e in result.accuracy_estimates(FAST)["normal"].items():
            if language != "all":
                covered += e.low <= 0.7 <= e.high
                total += 1
    assert 0.90 <= covered / total <= 0.985


def test_interval_shrinks_as_the_prompts_grow() -> None:
    widths = []
    for n in (25, 100, 400):
        e = synthetic({"normal": 0.6}, n, seed=4).accuracy_estimates(FAST)["normal"]["all"]
        widths.append(e.high - e.low)
    assert widths[0] > 1.6 * widths[1] > 1.6 * 1.6 * widths[2]  # ~ 1 / sqrt(n): halves per 4×


def test_paired_test_finds_a_real_change_and_keeps_its_false_positive_rate() -> None:
    """Same prompts in both settings. With the same true accuracy, "changes the accuracy"
    is claimed in about 5 % of experiments; with 0.4 → 0.8 almost always."""
    false_positive = 0
    for seed in range(100):
        test = synthetic({"normal": 0.6, "steered": 0.6}, 50, seed).compare(
            "steered", bootstrap=FAST
        )
        false_positive += test.significant
        assert 0 < test.p_value <= 1
    assert false_positive / 100 <= 0.12
    found = [
        synthetic({"normal": 0.4, "steered": 0.8}, 50, seed).compare("steered", bootstrap=FAST)
        for seed in range(10)
    ]
    assert all(t.significant and t.difference.value > 0 and t.p_value < 0.01 for t in found)


def test_pairing_uses_the_same_prompts_and_cross_is_scored_in_the_target_language() -> None:
    """Steering flips 10 of 40 prompts to the expected language and changes nothing else:
    the paired difference is 0.25 with a narrow interval (prompts agree elsewhere)."""
    normal = [generation("normal", "en", k, "en" if k % 2 else "fr", "en") for k in range(40)]
    steered = [
        generation("steered", "en", k, "en" if k % 2 or k < 20 else "fr", "en") for k in range(40)
    ]
    # cross (target zh): the normal output of prompt 0..3 was already Chinese.
    normal_fr = [generation("normal", "fr", k, "zh" if k < 4 else "fr", "fr") for k in range(10)]
    cross = [generation("cross", "fr", k, "zh" if k < 6 else "fr", "zh") for k in range(10)]
    result = SteeringResult(
        ["normal", "steered", "cross"], ["en", "fr"], "zh", normal + steered + normal_fr + cross
    )
    test = result.compare("steered", "normal", language="en", bootstrap=FAST)
    assert test.difference.value == pytest.approx(0.25)
    assert test.significant and test.test == "paired bootstrap over prompts, two-sided"
    # Unpaired, the two accuracies' intervals would each be ~±0.15 wide and overlap.
    acc = result.accuracy_estimates(FAST)
    assert acc["steered"]["en"].low < acc["normal"]["en"].high
    assert test.difference.low > 0.1
    cross_test = result.compare("cross", language="fr", bootstrap=FAST)
    assert cross_test.difference.value == pytest.approx(6 / 10 - 4 / 10)
    assert set(result.tests(FAST)["cross"]) == {"fr", "all"}  # en has no cross prompt here
    reordered = SteeringResult(["steered", "normal"], ["en"], None, steered + normal)
    assert reordered.baseline == "normal" and list(reordered.tests(FAST)) == ["steered"]
    with pytest.raises(InvalidSettingError, match="share no prompt"):
        result.compare("cross", language="en")
    with pytest.raises(InvalidSettingError, match="choose from normal, steered, cross"):
        result.compare("crossed")


def test_plot_draws_the_interval_as_error_bars() -> None:
    result = synthetic({"normal": 0.5, "steered": 0.9}, 20, seed=5)
    figure = result.plot()
    bar = figure.data[0]
    e = result.accuracy_estimates()["normal"]["en"]
    assert bar.error_y.array[0] == pytest.approx(e.high - e.value)
    assert bar.error_y.arrayminus[0] == pytest.approx(e.value - e.low)
    assert "[" in bar.hovertext[0]
    single = SteeringResult(["normal"], ["en"], None, [generation("normal", "en", 0, "en", "en")])
    assert single.plot().data[0].error_y.array[0] == 0.0 and not math.isnan(
        single.plot().data[0].y[0]
    )
