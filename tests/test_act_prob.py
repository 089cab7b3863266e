"""Act Prob 90p: hand-computed scores and selections, the ≈0.1 property of the paper's own
threshold, the pooled variant against an exact computation, errors, and a tiny model."""

from __future__ import annotations

import pytest
import torch

from lsn_mech import detect
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.detect import DetectorInputError, act_prob_90p, act_prob_details
from lsn_mech.stats import (
    ActivationStats,
    BatchQuantileAccumulator,
    MomentAccumulator,
    QuantileAccumulator,
    collect_stats,
)

CPU = torch.device("cpu")


def stats_from(batches: dict[str, list[torch.Tensor]], accumulators: list) -> ActivationStats:  # type: ignore[type-arg]
    """Statistics of hand-made activations: ``batches[lang]`` holds ``[token, layer, d_mlp]``."""
    languages = list(batches)
    _, n_layers, d_mlp = batches[languages[0]][0].shape
    state: dict[str, torch.Tensor] = {}
    for accumulator in accumulators:
        state.update(accumulator.init_state(n_layers, d_mlp, len(languages), CPU))
    tokens = torch.zeros(len(languages), dtype=torch.int64)
    for index, language in enumerate(languages):
        for batch in batches[language]:
            for layer in range(n_layers):
                for accumulator in accumulators:
                    accumulator.update(state, "mlp_pre", layer, index, batch[:, layer])
            tokens[index] += batch.shape[0]
    return ActivationStats(
        languages=languages,
        n_layers=n_layers,
        d_mlp=d_mlp,
        sites=("mlp_pre",),
        tokens=tokens,
        state=state,
        accumulators=[a.config() for a in accumulators],
    )


def columns(*neurons: list[float]) -> torch.Tensor:
    """``[token, 1 layer, d_mlp]`` from one list of values per neuron."""
    return torch.tensor(list(zip(*neurons))).unsqueeze(1)


def test_pooled_threshold_scores_and_selection_by_hand() -> None:
    # integer bin edges on [0, 10); 10 tokens per language; 4 neurons in 1 layer
    en = columns([0.5] * 8 + [8.5] * 2, [0.5] * 10, [0.5] * 10, [0.5] * 10)
    fr = columns([4.5] * 10, [0.5] * 7 + [9.2, 9.4, 9.6], [0.5] * 10, [0.5] * 10)
    accumulator = QuantileAccumulator(("mlp_pre",), 10, value_range=(0, 10))
    stats = stats_from({"en": [en], "fr": [fr]}, [accumulator])
    result = act_prob_details(stats, threshold="pooled", rate=0.25)  # k = round(0.25·4) = 1
    # torch.quantile's definition: h = 0.9·19 = 17.1 mixes pooled ranks 17 and 18 (0-based)
    # neuron 0: rank 17 is the last 4.5 (fr is a point mass there: exact), rank 18 the
    #   first of en's two values in [8, 8.5], placed at mid-rank 8.125 → 4.5 + 0.1·3.625
    #   (torch.quantile: 4.9); en has 2 of 10 above, fr none
    # neuron 1: ranks 17 and 18 are the first two of fr's three values in [9, 9.6], at
    #   mid-ranks 9.1 and 9.3 → 9.12 (torch.quantile: 9.22); fr's estimated share above
    #   9.12 is 2.4 of 10 (exact: 2 of 10 above 9.22)
    torch.testing.assert_close(
        result.thresholds[0, :2, 0], torch.tensor([4.8625, 9.12], dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.scores[0], torch.tensor([[0.2, 0.0], [0.0, 0.24], [0.0, 0.0], [0.0, 0.0]]).double()
    )
    assert sorted(result.neurons["en"]) == [(0, 0)]
    assert sorted(result.neurons["fr"]) == [(0, 1)]
    assert result.neurons["en"].site == "mlp_post"
    parameters = result.neurons.provenance.parameters
    assert result.neurons.provenance.method == "act_prob_90p"
    assert parameters["threshold"] == "pooled" and parameters["k_per_language"] == 1
    assert parameters["rate"] == 0.25 and parameters["percentile"] == 90.0


def test_selection_takes_the_highest_scores_ties_by_flat_index() -> None:
    # quiet tokens are exactly 0: with the moments' exact count of values > 0 the
    # histogram knows that point mass exactly (one inside a bin elsewhere is spread out)
    en = columns([0.0] * 9 + [9.5], [0.0] * 8 + [9.5] * 2, [0.0] * 10, [0.0] * 9 + [9.5])
    fr = columns([0.0] * 10, [0.0] * 10, [0.0] * 10, [0.0] * 10)
    accumulators = [
        MomentAccumulator(("mlp_pre",)),
        QuantileAccumulator(("mlp_pre",), 10, value_range=(0, 10)),
    ]
    stats = stats_from({"en": [en], "fr": [fr]}, accumulators)
    neurons = act_prob_90p(stats, threshold="pooled", rate=0.5)  # k = 2
    # pooled P90 of neuron 1 mixes ranks 17 (0) and 18 (9.5): en has 2/10 above: best;
    # neurons 0 and 3 (P90 = 0, exact) tie at 1/10 → the lower index wins
    assert sorted(neurons["en"]) == [(0, 0), (0, 1)]


def test_own_threshold_scores_are_one_tenth_by_construction() -> None:
    generator = torch.Generator().manual_seed(0)
    batches = {
        x: [torch.randn(100, 2, 8, generator=generator) * (i + 1) for _ in range(10)]
        for i, x in enumerate(["en", "fr"])
    }
    stats = stats_from(batches, [QuantileAccumulator(("mlp_pre",), 64)])
    result = act_prob_details(stats, threshold="own", rate=0.25)
    n = 1000
    torch.testing.assert_close(
        result.scores, torch.full_like(result.scores, 0.1), atol=1.0 / n, rtol=0
    )
    # the exact fraction above each language's exact P90 is ≈ 0.1 as well
    for language in stats.languages:
        values = torch.cat(batches[language]).double()
        exact = torch.quantile(values, 0.9, dim=0)
        fraction = (values > exact).double().mean(dim=0)
        torch.testing.assert_close(fraction, torch.full_like(fraction, 0.1), atol=1.0 / n, rtol=0)


def test_batch_averaged_own_threshold_reproduces_the_reference_ranking_signal() -> None:
    generator = torch.Generator().manual_seed(1)
    scale = torch.linspace(0.2, 2.0, 8)  # skew grows with the neuron index
    batches = {
        "en": [(torch.randn(8, 1, 8, generator=generator) * scale).exp() for _ in range(100)]
    }
    stats = stats_from(
        batches,
        [QuantileAccumulator(("mlp_pre",), 256), BatchQuantileAccumulator(("mlp_pre",), [0.9])],
    )
    result = act_prob_details(stats, threshold="own", own_estimate="batch_mean", rate=0.25)
    values = torch.cat(batches["en"]).double()[:, 0]
    exact = (values > result.thresholds[0, :, 0]).double().mean(dim=0)
    torch.testing.assert_close(result.scores[0, :, 0], exact, atol=0.01, rtol=0)
    assert float(result.scores.std()) > 0.005, "batch-averaged P90s move the scores off 0.1"
    assert result.neurons.provenance.parameters["own_estimate"] == "batch_mean"


def test_pooled_threshold_against_an_exact_computation() -> None:
    generator = torch.Generator().manual_seed(2)
    batches = {
        "en": [torch.randn(200, 2, 16, generator=generator) for _ in range(5)],
        "fr": [torch.randn(200, 2, 16, generator=generator) * 0.5 + 1 for _ in range(5)],
        "zh": [torch.randn(200, 2, 16, generator=generator).exp() for _ in range(5)],
    }
    stats = stats_from(batches, [QuantileAccumulator(("mlp_pre",), 256)])
    result = act_prob_details(stats, threshold="pooled")
    pooled = torch.cat([torch.cat(b) for b in batches.values()]).double()
    exact = torch.quantile(pooled, 0.9, dim=0)
    widths = (stats.state["mlp_pre/hist_high"] - stats.state["mlp_pre/hist_low"]) / 256
    assert bool(((result.thresholds[..., 0] - exact).abs() <= widths.amax(-1) + 1e-4).all())
    for index, language in enumerate(stats.languages):
        values = torch.cat(batches[language]).double()
        fraction = (values > exact).double().mean(dim=0)
        torch.testing.assert_close(result.scores[..., index], fraction, atol=0.01, rtol=0)
    assert bool(result.scores[..., 2].mean() > result.scores[..., 0].mean())  # heavy tail


def test_errors_name_the_fix() -> None:
    stats = stats_from({"en": [torch.randn(10, 1, 4)]}, [MomentAccumulator(("mlp_pre",))])
    with pytest.raises(DetectorInputError, match=r"accumulators=\[.*QuantileAccumulator"):
        act_prob_90p(stats)
    hist = stats_from({"en": [torch.randn(10, 1, 4)]}, [QuantileAccumulator(("mlp_pre",), 8)])
    with pytest.raises(DetectorInputError, match="BatchQuantileAccumulator"):
        act_prob_90p(hist, own_estimate="batch_mean")
    with pytest.raises(DetectorInputError, match="rate"):
        act_prob_90p(hist, rate=0)
    with pytest.raises(DetectorInputError, match="percentile"):
        act_prob_90p(hist, percentile=100)


def test_tiny_model_end_to_end(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = {k: tokenize_windows(llama.tokenizer, v, window=24) for k, v in texts.items()}
    stats = collect_stats(
        llama,
        windows,
        sites=["mlp_pre"],
        accumulators=[MomentAccumulator(("mlp_pre",)), QuantileAccumulator(("mlp_pre",), 64)],
        progress=False,
    )
    for threshold in ("own", "pooled"):
        neurons = detect.act_prob_90p(stats, rate=0.05, threshold=threshold)
        assert [len(neurons[x]) for x in neurons] == [round(0.05 * 3 * 128)] * 3
        assert neurons.provenance.model_id == "tiny-llama"
    assert all(len(s) == 0 for s in detect.act_prob_90p(stats).values())  # round(0.48) = 0
    subset = detect.act_prob_90p(stats, languages=["zh", "en"], rate=0.05, threshold="pooled")
    assert list(subset) == ["zh", "en"]
