"""lsn_mech.intervals: exact small cases, pairing, p-values, and coverage on synthetic data."""

from __future__ import annotations

import math

import pytest
import torch

from lsn_mech import intervals
from lsn_mech.errors import InvalidSettingError, WrongInputError
from lsn_mech.intervals import Bootstrap, Estimate


def test_percentile_interval_interpolates_order_statistics() -> None:
    samples = torch.arange(101, dtype=torch.float64)  # 0..100: quantile q is 100 q
    assert intervals.percentile_interval(samples, 0.95) == pytest.approx((2.5, 97.5))
    assert intervals.percentile_interval(samples, 0.5) == pytest.approx((25.0, 75.0))


def test_two_units_give_the_three_possible_means() -> None:
    """Resampling [0, 1] gives means 0, 0.5, 1 with probability 1/4, 1/2, 1/4."""
    settings = Bootstrap(resamples=4000, seed=1)
    samples = intervals.replicates(intervals.mean_of, [torch.tensor([0.0, 1.0])], settings)
    assert set(samples.tolist()) == {0.0, 0.5, 1.0}
    assert (samples == 0.5).double().mean().item() == pytest.approx(0.5, abs=0.03)
    estimate = intervals.mean(torch.tensor([0.0, 1.0]), settings)
    assert (estimate.value, estimate.low, estimate.high) == (0.5, 0.0, 1.0)


def test_constant_data_has_a_zero_width_interval() -> None:
    estimate = intervals.proportion(torch.ones(30, dtype=torch.bool))
    assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)


def test_one_unit_has_no_interval() -> None:
    estimate = intervals.mean(torch.tensor([3.0]))
    assert estimate.value == 3.0 and not estimate.has_interval
    assert estimate.format(".1f") == "3.0" and not estimate.excludes(0.0)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    values = torch.randn(200, generator=torch.Generator().manual_seed(0))
    a = intervals.mean(values, Bootstrap(seed=3))
    assert a == intervals.mean(values, Bootstrap(seed=3))
    assert a != intervals.mean(values, Bootstrap(seed=4))


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    values = torch.randn(300, generator=torch.Generator().manual_seed(0))
    whole = intervals.mean(values, Bootstrap(resamples=200))
    monkeypatch.setattr(intervals, "CHUNK_ELEMENTS", 1000)  # chunks of 3 resamples
    assert intervals.mean(values, Bootstrap(resamples=200)) == whole


def test_perplexity_is_exp_of_tokens_weighted_mean_nll() -> None:
    nll = torch.tensor([2.0, 6.0])
    tokens = torch.tensor([1.0, 3.0])
    assert intervals.perplexity(nll, tokens).value == pytest.approx(math.exp(8 / 4))


def test_paired_ratio_is_exact_when_the_effect_is_the_same_on_every_window() -> None:
    """Intervention adds 0.1 nats per token on every window: every resample has the same
    ratio exp(0.1), so the paired interval has width 0 while each PPL's own does not."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(50, 100, (40,), generator=generator).double()
    base = tokens * (2 + torch.rand(40, generator=generator, dtype=torch.float64))
    ratio = intervals.perplexity_ratio(base + 0.1 * tokens, base, tokens)
    assert ratio.value == pytest.approx(math.exp(0.1))
    assert ratio.high - ratio.low == pytest.approx(0.0, abs=1e-9)
    assert intervals.perplexity(base, tokens).half_width > 0.01


def test_paired_test_detects_a_shift_and_not_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(400, generator=generator) < 0.7
    noise = torch.rand(400, generator=generator) < 0.05
    shifted = a & ~noise  # B is A with 5 % of its successes removed
    test = intervals.paired_test(intervals.mean_of, [a.double()], [shifted.double()])
    assert test.significant and test.p_value < 0.01 and test.difference.value > 0
    same = intervals.paired_test(intervals.mean_of, [a.double()], [a.double()])
    assert same.difference.value == 0 and same.p_value == 1.0 and not same.significant


def test_estimate_formats_round_trips_and_maps() -> None:
    estimate = Estimate(2.9612, 2.7149, 3.2233)
    assert estimate.format(".2f", "×") == "×2.96 [2.71, 3.22]"
    assert Estimate.from_dict(estimate.to_dict()) == estimate
    assert intervals.interval_header("acc") == ["acc", "acc_low", "acc_high"]
    assert estimate.cells() == [2.9612, 2.7149, 3.2233]
    assert estimate.above(2.5) and not estimate.above(2.8) and estimate.excludes(3.3)
    logged = estimate.map(math.log)
    assert logged.low == pytest.approx(math.log(2.7149))
    assert estimate.relative_half_width == pytest.approx((3.2233 - 2.7149) / 2 / 2.9612)


def test_seed_summary_mean_and_sample_sd() -> None:
    summary = intervals.seed_summary({0: 1.0, 1: 2.0, 2: 3.0})
    assert (summary.mean, summary.sd) == (2.0, 1.0)
    assert summary.format(".1f") == "2.0 ± 1.0 (n=3)"
    assert intervals.SeedSummary.from_dict(summary.to_dict()) == summary
    assert intervals.seed_summary({5: 4.0}).sd == 0.0


def test_bad_settings_and_data_name_the_fix() -> None:
    with pytest.raises(InvalidSettingError, match="resamples"):
        Bootstrap(resamples=0)
    with pytest.raises(InvalidSettingError, match="level"):
        Bootstrap(level=95.0)
    with pytest.raises(WrongInputError, match="disagree"):
        intervals.paired_test(intervals.mean_of, [torch.ones(3)], [torch.ones(4)])
    with pytest.raises(InvalidSettingError, match="no units"):
        intervals.mean(torch.ones(0))
    assert Bootstrap.from_dict(Bootstrap(seed=7).to_dict()) == Bootstrap(seed=7)


# ----------------------------------------------------------------------------- coverage


def _coverage(draw, truth: float, estimate, seeds: int = 300) -> float:
    hits = 0
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(10_000 + seed)
        found = estimate(draw(generator), Bootstrap(resamples=400, seed=seed))
        hits += found.low <= truth <= found.high
    return hits / seeds


@pytest.mark.parametrize("n", [60])
def test_proportion_interval_covers_the_true_accuracy_at_the_nominal_rate(n: int) -> None:
    coverage = _coverage(lambda g: torch.rand(n, generator=g) < 0.7, 0.7, intervals.proportion)
    assert 0.90 <= coverage <= 0.985


def test_perplexity_ratio_interval_covers_the_true_ratio() -> None:
    """Windows with random lengths and difficulties; the intervention adds a per-window
    effect with mean 0.2 nats per token: the true ratio is exp(0.2)."""

    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = torch.randint(20, 60, (80,), generator=g).double()
        base = tokens * (2 + torch.rand(80, generator=g, dtype=torch.float64))
        effect = 0.2 + 0.3 * torch.randn(80, generator=g, dtype=torch.float64)
        return base + effect * tokens, base, tokens

    def estimate(data, settings):
        return intervals.perplexity_ratio(*data, settings)

    # The truth for a ratio of sums is the population one: E[effect·tokens]/E[tokens] = 0.2.
    assert 0.90 <= _coverage(draw, math.exp(0.2), estimate) <= 0.985


def test_intervals_shrink_as_the_sample_grows() -> None:
    widths = []
    for n in (50, 200, 800):
        values = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.6
        widths.append(intervals.proportion(values).half_width)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.3)  # ~ 1/sqrt(n)


def test_bootstrap_each_resamples_every_output_together() -> None:
    """Two outputs of the same units: each equals the one-output bootstrap, and an output
    that is a constant shift of another gets the same interval shifted."""
    values = torch.randn(120, generator=torch.Generator().manual_seed(5))
    data = torch.stack([values, values + 2.0], dim=1)  # [units, 2]
    settings = Bootstrap(resamples=300, seed=2)
    first, second = intervals.bootstrap_each(lambda x: x.double().mean(dim=1), data, settings)
    assert first == intervals.mean(values, settings)
    assert second.value == pytest.approx(first.value + 2.0)
    assert (second.low, second.high) == pytest.approx((first.low + 2.0, first.high + 2.0))
    (single,) = intervals.bootstrap_each(lambda x: x.double().mean(dim=1), data[:1, :1])
    assert single.value == data[0, 0].item() and not single.has_interval


def test_difference_test_of_paired_replicates_is_paired_test() -> None:
    """The same replicates through `difference_test` give `paired_test`'s answer, and
    `estimate_from_replicates` gives `bootstrap`'s interval."""
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(60, generator=generator, dtype=torch.float64) + 0.3
    b = a + 0.2 * torch.randn(60, generator=generator, dtype=torch.float64)
    settings = Bootstrap(resamples=500, seed=4)
    expected = intervals.paired_test(intervals.mean_of, [a], [b], settings)
    ra = intervals.replicates(intervals.mean_of, [a], settings)
    rb = intervals.replicates(intervals.mean_of, [b], settings)
    observed = float(a.mean() - b.mean())
    found = intervals.difference_test(observed, ra - rb, settings.level, expected.test)
    assert found.p_value == expected.p_value
    assert found.difference.low == pytest.approx(expected.difference.low)
    assert found.difference.high == pytest.approx(expected.difference.high)
    estimate = intervals.estimate_from_replicates(float(a.mean()), ra, settings.level)
    assert estimate == intervals.mean(a, settings)
    empty = torch.empty(0, dtype=torch.float64)
    assert not intervals.estimate_from_replicates(1.0, empty).has_interval
    assert intervals.difference_test(0.5, empty).p_value == 1.0
