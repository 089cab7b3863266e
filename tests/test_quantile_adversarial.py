"""Streaming percentiles on adversarial data, against ``torch.quantile`` on the exact values.

Three defects this file pins (each test in the first part failed before the fix):
zeros that widen a tiny first range lost to the overflow bin, a threshold on a point mass
at 0 read as a share of its bin, and a pooled quantile with another definition than the
per-language one. The second part checks every stated bound (per-language quantile,
pooled quantile, fraction above a threshold) on streams built to break them: heavy tails,
point masses, sorted arrival, outliers first, all-equal, a single token, zeros then
widening, with calibrated and fixed ranges, with and without the exact positive counts.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsn_mech.detect import act_prob_details
from lsn_mech.stats import (
    ActivationStats,
    BatchQuantileAccumulator,
    MomentAccumulator,
    QuantileAccumulator,
)
from lsn_mech.stats.histogram import (
    bin_index,
    fraction_above,
    fraction_above_error_bound,
    histogram_quantile,
    pooled_histogram_quantile,
)

CPU = torch.device("cpu")
SITE = "mlp_pre"
QUANTILES = (0.0, 0.1, 0.5, 0.9, 0.95, 1.0)


def stats_of(
    batches: dict[str, list[torch.Tensor]],
    bins: int = 16,
    value_range: tuple[float, float] | None = None,
    moments: bool = True,
    extra: tuple = (),  # type: ignore[type-arg]
) -> ActivationStats:
    """Statistics of hand-made activations: ``batches[lang]`` holds ``[token, d_mlp]``."""
    accumulators = [QuantileAccumulator((SITE,), bins, value_range=value_range), *extra]
    if moments:
        accumulators.insert(0, MomentAccumulator((SITE,)))
    languages = list(batches)
    d_mlp = batches[languages[0]][0].shape[1]
    state: dict[str, torch.Tensor] = {}
    for accumulator in accumulators:
        state.update(accumulator.init_state(1, d_mlp, len(languages), CPU))
    tokens = torch.zeros(len(languages), dtype=torch.int64)
    for index, language in enumerate(languages):
        for batch in batches[language]:
            for accumulator in accumulators:
                accumulator.update(state, SITE, 0, index, batch)
            tokens[index] += batch.shape[0]
    return ActivationStats(
        languages=languages,
        n_layers=1,
        d_mlp=d_mlp,
        sites=(SITE,),
        tokens=tokens,
        state=state,
        accumulators=[a.config() for a in accumulators],
    )


def exact_values(batches: list[torch.Tensor]) -> torch.Tensor:
    """``[token, d_mlp]`` float64 of the float32 values the accumulators saw."""
    return torch.cat([b.float() for b in batches]).double()


def slack(bound: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Float32 binning (and float32 edges after widening) may move a value by a few ulps of
    the data's magnitude across an edge; nothing else is allowed on top of the bound."""
    return bound + 1e-5 * bound + 1e-6 * values.abs().amax(dim=0)


# ----- the three defects, each reproduced ------------------------------------------------


def zeros_then_widening() -> list[torch.Tensor]:
    """A neuron that is exactly 0 on its first batch (range ±1e-9), then widens ~30 times
    downward and later upward, with zeros in every batch."""
    zeros = torch.zeros(100, 1)
    return [zeros[:10], torch.cat([-torch.ones(2, 1), zeros]), torch.cat([torch.ones(5, 1), zeros])]


@pytest.mark.parametrize("moments", [False, True])
def test_zeros_that_widen_a_tiny_range_stay_in_their_bin(moments: bool) -> None:
    batches = zeros_then_widening()
    stats = stats_of({"en": batches}, bins=256, moments=moments)
    counts = stats.state[f"{SITE}/hist"]
    assert int(counts[:, :, 0].sum()) == int(counts[:, :, -1].sum()) == 0  # tails unused
    exact = torch.quantile(exact_values(batches), 0.9, dim=0)
    assert exact.item() == 0.0
    estimate = stats.quantile(0.9, SITE)[..., 0]
    bound = stats.quantile_error_bound(0.9, SITE)[..., 0]
    # before the fix: P90 = 1.0 with a stated bound of 0
    assert abs(estimate.item()) <= bound.item() < 0.01
    if moments:  # no value below 0 shares 0's bin: the zeros are an exact point mass
        assert estimate.item() == 0.0 and bound.item() == 0.0


def test_values_inside_the_range_never_map_to_a_tail() -> None:
    low = torch.tensor([-1.0737416744232178])
    high = torch.tensor([1e-9])  # float32: high − low rounds to −low
    values = torch.tensor([[0.0], [-1e-12], [1e-9], [-1.0737416744232178], [-2.0]])
    assert bin_index(values, low, high, 256).view(-1).tolist() == [256, 256, 257, 1, 0]


def test_widening_reaches_any_finite_value() -> None:
    # from a ±1e-9 first range, 1e12 needs ~70 doublings (the old cap was 64)
    batches = [torch.zeros(4, 1), torch.tensor([[1e12], [-1e12], [0.0]])]
    stats = stats_of({"en": batches}, bins=8, moments=False)
    counts = stats.state[f"{SITE}/hist"]
    assert int(counts[:, :, 0].sum()) == int(counts[:, :, -1].sum()) == 0


def zero_heavy(
    generator: torch.Generator, n: int, positive: float, negative: float
) -> torch.Tensor:
    """``[n, 8]`` activations exactly 0 on most tokens, with some positive and negative."""
    u = torch.rand(n, 8, generator=generator)
    v = torch.randn(n, 8, generator=generator).abs()
    return torch.where(u < positive, v, torch.where(u > 1 - negative, -v, torch.zeros(())))


def test_a_threshold_of_zero_on_a_point_mass_is_read_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    batches = {
        "en": [zero_heavy(generator, 200, 0.03, 0.2) for _ in range(5)],
        "fr": [zero_heavy(generator, 200, 0.02, 0.3) * 3 for _ in range(5)],
    }
    stats = stats_of(batches, bins=256)
    histogram = stats.histogram(SITE)
    zero = torch.zeros(1, 8, 2, dtype=torch.float64)
    exact = torch.stack([(exact_values(batches[x]) > 0).double().mean(0) for x in batches], -1)
    # before the fix: 0.11–0.68 where the exact fraction is 0.012–0.037
    torch.testing.assert_close(fraction_above(histogram, zero)[0], exact, rtol=0, atol=1e-15)
    assert float(fraction_above_error_bound(histogram, zero).max()) == 0.0


def test_zero_heavy_neurons_no_longer_take_the_top_slots() -> None:
    # neurons 0–3: exactly 0 on ~95 % of tokens (the batch-averaged P90 is exactly 0);
    # neurons 4–7: fire above their P90 on ~10 % of tokens, as Act-Prob expects
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(20):
        quiet = zero_heavy(generator, 50, 0.03, 0.02)[:, :4]
        lively = torch.randn(50, 4, generator=generator) + torch.linspace(0, 0.3, 4)
        batches.append(torch.cat([quiet, lively], dim=1))
    stats = stats_of({"en": batches}, bins=256, extra=(BatchQuantileAccumulator((SITE,), [0.9]),))
    result = act_prob_details(stats, threshold="own", own_estimate="batch_mean", rate=0.5)
    values = exact_values(batches)
    exact = (values > result.thresholds[0, :, 0]).double().mean(dim=0)
    torch.testing.assert_close(result.scores[0, :4, 0], exact[:4], rtol=0, atol=1e-15)
    assert bool((result.scores[0, :4, 0] < 0.05).all())  # before the fix: 0.3–0.8
    assert result.score_bounds is not None
    assert float(result.score_bounds[0, :4, 0].max()) == 0.0  # exact, and says so
    lively = (result.scores[0, 4:, 0] - exact[4:]).abs()
    assert bool((lively <= result.score_bounds[0, 4:, 0] + 1e-12).all())
    assert sorted(result.neurons["en"]) == [(0, 4), (0, 5), (0, 6), (0, 7)]


def test_pooled_quantile_uses_the_per_language_definition() -> None:
    # pooled ranks 17 and 18 of 20 lie 1000 apart: q·n picks rank 17 alone, torch.quantile
    # mixes them (h = 17.1), so the two definitions differ by 100 ≫ a bin width
    generator = torch.Generator().manual_seed(2)
    en = torch.rand(18, 1, generator=generator)
    fr = torch.tensor([[1000.0], [1000.5]])
    stats = stats_of({"en": [en], "fr": [fr]}, bins=256)
    histogram = stats.histogram(SITE)
    value, bound = pooled_histogram_quantile(histogram, 0.9)
    exact = torch.quantile(torch.cat([en, fr]).double(), 0.9, dim=0)
    assert float((value - exact).abs().max()) <= float(bound.max()) < 0.01
    # one language pooled with nothing is that language's own quantile
    alone, alone_bound = pooled_histogram_quantile(stats.subset(["en"]).histogram(SITE), 0.9)
    own, own_bound = histogram_quantile(stats.subset(["en"]).histogram(SITE), 0.9)
    torch.testing.assert_close(alone, own[..., 0], rtol=1e-12, atol=1e-12)
    # the pooled bound (distance to the far end of the cell) never exceeds the cell width
    assert bool((alone_bound <= own_bound[..., 0]).all())


# ----- every bound on adversarial streams --------------------------------------------------


def stream(kind: str, generator: torch.Generator, d_mlp: int = 3) -> list[torch.Tensor]:
    """Batches ``[token, d_mlp]`` of one adversarial shape."""

    def normal(n: int) -> torch.Tensor:
        return torch.randn(n, d_mlp, generator=generator)

    if kind == "heavy_tails":  # Cauchy: a few values 1e3–1e5 times the bulk
        return [normal(40) / normal(40).clamp(-1, 1).abs().clamp_min(1e-4) for _ in range(4)]
    if kind == "point_masses":  # atoms at −1, 0, 2.5 and a few continuous values
        atoms = torch.tensor([-1.0, 0.0, 0.0, 0.0, 2.5])
        picks = [atoms[torch.randint(0, 5, (30, d_mlp), generator=generator)] for _ in range(4)]
        return [*picks, normal(3)]
    if kind == "sorted":  # ascending arrival: every batch widens the range upward
        return list(normal(120).exp().sort(dim=0).values.split(15))
    if kind == "descending":
        return list(normal(120).sort(dim=0, descending=True).values.split(15))
    if kind == "outliers_first":  # the first batch calibrates on ±1e4, the rest is ±1
        return [normal(5) * 1e4, *[normal(30) for _ in range(4)]]
    if kind == "all_equal":
        return [torch.full((20, d_mlp), 0.7) for _ in range(3)]
    if kind == "single_token":
        return [normal(1)]
    if kind == "zeros_then_widening":
        zeros = torch.zeros(40, d_mlp)
        return [zeros[:5], torch.cat([-normal(3).abs(), zeros]), torch.cat([normal(3), zeros])]
    if kind == "zero_heavy":
        return [zero_heavy(generator, 60, 0.04, 0.3)[:, :d_mlp] for _ in range(3)]
    raise AssertionError(kind)


KINDS = (
    "heavy_tails",
    "point_masses",
    "sorted",
    "descending",
    "outliers_first",
    "all_equal",
    "single_token",
    "zeros_then_widening",
    "zero_heavy",
)


def check_every_bound(batches: dict[str, list[torch.Tensor]], stats: ActivationStats) -> None:
    """Per-language and pooled quantiles and fractions above thresholds within their bounds."""
    histogram = stats.histogram(SITE)
    exact = {x: exact_values(b) for x, b in batches.items()}
    pooled = torch.cat(list(exact.values()))
    n_languages = len(batches)
    for q in QUANTILES:
        value, bound = histogram_quantile(histogram, q)
        for index, language in enumerate(batches):
            truth = torch.quantile(exact[language], q, dim=0)
            error = (value[0, :, index] - truth).abs()
            limit = slack(bound[0, :, index], exact[language])
            assert bool((error <= limit).all()), (language, q, error, bound[0, :, index])
        value, bound = pooled_histogram_quantile(histogram, q)
        truth = torch.quantile(pooled, q, dim=0)
        error = (value[0] - truth).abs()
        assert bool((error <= slack(bound[0], pooled)).all()), ("pooled", q, error, bound[0])
        # fractions above the exact pooled quantile, the estimate, and 0
        for threshold in (truth, value[0], torch.zeros_like(truth)):
            cut = threshold.view(1, -1, 1).expand(1, -1, n_languages)
            estimate = fraction_above(histogram, cut)[0]
            limit = fraction_above_error_bound(histogram, cut)[0]
            for index, language in enumerate(batches):
                share = (exact[language] > threshold).double().mean(dim=0)
                error = (estimate[:, index] - share).abs()
                assert bool((error <= limit[:, index] + 1e-12).all()), (language, q, error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value_range", [None, (-1.0, 1.0)])
def test_every_bound_holds_on_adversarial_streams(
    kind: str, value_range: tuple[float, float] | None
) -> None:
    generator = torch.Generator().manual_seed(KINDS.index(kind))
    batches = {
        "en": stream(kind, generator),
        "fr": [b * 0.5 + 0.25 for b in stream("point_masses", generator)],
    }
    for moments in (False, True):
        stats = stats_of(batches, bins=8, value_range=value_range, moments=moments)
        check_every_bound(batches, stats)
        if value_range is None:  # calibrated: nothing is ever lost to a tail
            counts = stats.state[f"{SITE}/hist"]
            assert int(counts[:, :, 0].sum()) == int(counts[:, :, -1].sum()) == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3),
    scales=st.lists(st.sampled_from([1e-3, 1.0, 1e3]), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
    bins=st.sampled_from([2, 4, 16]),
    fixed=st.booleans(),
    moments=st.booleans(),
)
def test_bounds_hold_on_mixed_streams(
    kinds: list[str], scales: list[float], seed: int, bins: int, fixed: bool, moments: bool
) -> None:
    generator = torch.Generator().manual_seed(seed)
    batches = {
        f"l{i}": [b * scale for b in stream(kind, generator)]
        for i, (kind, scale) in enumerate(zip(kinds, scales))
    }
    value_range = (-1.0, 1.0) if fixed else None
    stats = stats_of(batches, bins=bins, value_range=value_range, moments=moments)
    check_every_bound(batches, stats)
