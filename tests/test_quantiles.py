"""Streaming quantiles: exact counts, a stated error bound that holds, batch-averaging bias,
merge / resume / save-load, and the per-language views used by interventions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import lsn_mech
import lsn_mech.errors as errors
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.stats import (
    PAPER_QUANTILES,
    ActivationStats,
    BatchQuantileAccumulator,
    MomentAccumulator,
    QuantileAccumulator,
    collect_stats,
    statistic_value,
)
from lsn_mech.stats.quantiles import bin_counts, sorted_quantile, widen

CPU = torch.device("cpu")
TOLERANCE = 1e-4  # float32 binning vs float64 edges: a value within an ulp of an edge


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


def all_of(batches: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(batches).double()


# ----- hand-computed -------------------------------------------------------------------


def test_bin_counts_by_hand() -> None:
    values = torch.tensor([[0.5], [1.5], [1.5], [3.5], [-1.0], [5.0], [4.0]])
    counts = bin_counts(values, torch.tensor([0.0]), torch.tensor([4.0]), 4)
    # under | [0,1) [1,2) [2,3) [3,4) | ≥ 4
    assert counts.tolist() == [[1, 1, 2, 0, 1, 2]]


def test_widening_merges_bins_in_pairs_by_hand() -> None:
    counts = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 0, 1, 0]], dtype=torch.int32)
    low, high = torch.tensor([0.0, 0.0]), torch.tensor([4.0, 4.0])
    # neuron 0 sees 6 (grow right once: [0, 8)); neuron 1 sees -5 (grow left twice: [-12, 4))
    widen(counts, low, high, torch.tensor([1.0, -5.0]), torch.tensor([6.0, 3.0]))
    assert counts.tolist() == [[0, 3, 1, 0, 0, 0], [0, 0, 0, 0, 4, 0]]
    assert low.tolist() == [0.0, -12.0] and high.tolist() == [8.0, 4.0]


def test_quantiles_of_a_tiny_histogram_by_hand() -> None:
    values = torch.tensor([0.5, 1.5, 1.5, 3.5, -1.0, 5.0]).view(6, 1, 1)
    stats = stats_from({"en": [values]}, [QuantileAccumulator(("mlp_pre",), 4, value_range=(0, 4))])
    # sorted: -1, 0.5, 1.5, 1.5, 3.5, 5; h = 0.5·5 = 2.5 → ranks 2 and 3, both in [1, 2)
    # with 2 values: mid-ranks 1.25 and 1.75, mixed half-half → 1.5 (exact here)
    assert stats.quantile(0.5, "mlp_pre").item() == pytest.approx(1.5)
    assert stats.quantile_error_bound(0.5, "mlp_pre").item() == pytest.approx(1.0)
    assert stats.quantile(0.0, "mlp_pre").item() == -1.0  # minimum and maximum: exact
    assert stats.quantile(1.0, "mlp_pre").item() == 5.0
    assert stats.quantile_error_bound(1.0, "mlp_pre").item() == 0.0
    # h = 0.9·5 = 4.5: rank 4 (3.5 in [3, 4): estimate 3.5) and rank 5 (the max, 5)
    assert stats.quantile(0.9, "mlp_pre").item() == pytest.approx(4.25)
    assert torch.quantile(values.view(-1), 0.9).item() == pytest.approx(4.25)


def test_sorted_quantile_equals_torch_quantile() -> None:
    values = torch.randn(37, 5)
    ordered = values.sort(dim=0).values
    for q in (0.0, 0.05, 0.33, 0.9, 1.0):
        torch.testing.assert_close(sorted_quantile(ordered, q), torch.quantile(values, q, dim=0))


# ----- the bound -----------------------------------------------------------------------


def distributions(generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """Shapes activations take: normal, heavy right tail, GELU-like with ties at 0, bimodal,
    a shifted later half (calibration on the first batch misses it)."""

    def batches(make, n=12, size=64):  # type: ignore[no-untyped-def]
        return [make(b, torch.randn(size, 2, 6, generator=generator)) for b in range(n)]

    return {
        "normal": batches(lambda b, z: z * 3 + 1),
        "lognormal": batches(lambda b, z: (1.5 * z).exp()),
        "gelu": batches(lambda b, z: torch.nn.functional.gelu(z * 2).clamp_min(0)),
        "bimodal": batches(
            lambda b, z: z * 0.1 + (torch.rand(z.shape, generator=generator) > 0.7) * 5
        ),
        "drift": batches(lambda b, z: z + (4.0 if b >= 6 else 0.0)),
    }


@pytest.mark.parametrize("bins", [16, 256])
def test_error_never_exceeds_the_stated_bound(bins: int) -> None:
    data = distributions(torch.Generator().manual_seed(0))
    stats = stats_from(data, [QuantileAccumulator(("mlp_pre",), bins)])
    quantiles = (*PAPER_QUANTILES, 0.0, 0.01, 0.37, 0.99, 1.0)
    for index, language in enumerate(stats.languages):
        exact_all = all_of(data[language])
        for q in quantiles:
            estimate = stats.quantile(q, "mlp_pre")[..., index]
            bound = stats.quantile_error_bound(q, "mlp_pre")[..., index]
            exact = torch.quantile(exact_all, q, dim=0)
            error = (estimate - exact).abs()
            assert bool((error <= bound + TOLERANCE).all()), (language, q, error.max())


def test_every_quantile_is_within_one_bin_width_of_the_range() -> None:
    data = distributions(torch.Generator().manual_seed(1))
    stats = stats_from(data, [QuantileAccumulator(("mlp_pre",), 256)])
    width = (stats.state["mlp_pre/hist_high"] - stats.state["mlp_pre/hist_low"]) / 256
    counts = stats.state["mlp_pre/hist"]
    assert int(counts[:, :, 0].sum()) == int(counts[:, :, -1].sum()) == 0  # tails unused
    ratios = []
    for index, language in enumerate(stats.languages):  # "drift" widens its range
        for q in (*PAPER_QUANTILES, 0.0, 0.5, 1.0):
            exact = torch.quantile(all_of(data[language]), q, dim=0)
            error = (stats.quantile(q, "mlp_pre")[..., index] - exact).abs()
            assert bool((error <= width[..., index] + TOLERANCE).all())
            ratios.append(float((error / width[..., index]).max()))
    assert max(ratios) <= 1.0


def test_a_tail_quantile_is_bounded_by_the_exact_extremes() -> None:
    # a fixed range [0, 1]; later values reach 100: P95 lies in the overflow tail
    first = torch.linspace(0, 1, 50).view(50, 1, 1)
    later = torch.linspace(1, 100, 200).view(200, 1, 1)
    fixed = QuantileAccumulator(("mlp_pre",), 8, value_range=(0, 1))
    stats = stats_from({"en": [first, later]}, [fixed])
    exact = torch.quantile(torch.cat([first, later]).view(-1).double(), 0.95)
    bound = stats.quantile_error_bound(0.95, "mlp_pre").item()
    assert bound == pytest.approx(100 - 1, rel=1e-6)  # vmax − high
    assert abs(stats.quantile(0.95, "mlp_pre").item() - exact.item()) <= bound


def test_batch_averaged_quantiles_are_biased_the_histogram_is_not() -> None:
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(4, 1, 16, generator=generator).exp() for _ in range(500)]
    stats = stats_from(
        {"en": batches},
        [QuantileAccumulator(("mlp_pre",), 256), BatchQuantileAccumulator(("mlp_pre",))],
    )
    exact = torch.quantile(all_of(batches), 0.9, dim=0)
    histogram = stats.quantile(0.9, "mlp_pre")[..., 0]
    averaged = stats.quantile(0.9, "mlp_pre", estimate="batch_mean")[..., 0]
    bound = stats.quantile_error_bound(0.9, "mlp_pre")[..., 0]
    assert bool(((histogram - exact).abs() <= bound + TOLERANCE).all())
    assert bool(((averaged - exact).abs() > bound).all()), "batch averaging is biased"
    # 4-token batches: each batch "P90" mixes the 3rd and 4th of 4 values
    assert bool((averaged < exact).all())


# ----- merge, resume, save/load ----------------------------------------------------------


def test_merge_adds_counts_and_refuses_different_edges() -> None:
    generator = torch.Generator().manual_seed(3)
    a = [torch.randn(20, 1, 3, generator=generator) for _ in range(3)]
    b = [torch.randn(20, 1, 3, generator=generator) * 2 for _ in range(3)]
    fixed = [QuantileAccumulator(("mlp_pre",), 32, value_range=(-5, 5))]
    whole = stats_from({"en": a + b}, fixed)
    merged = stats_from({"en": a}, fixed).merge(stats_from({"en": b}, fixed))
    assert merged.equal(whole)
    calibrated = [QuantileAccumulator(("mlp_pre",), 32)]
    disjoint = stats_from({"en": a}, calibrated).merge(stats_from({"fr": b}, calibrated))
    assert disjoint.languages == ["en", "fr"]
    torch.testing.assert_close(
        disjoint.quantile(0.9, "mlp_pre"),
        torch.cat(
            [
                stats_from({x: d}, calibrated).quantile(0.9, "mlp_pre")
                for x, d in [("en", a), ("fr", b)]
            ],
            dim=-1,
        ),
    )
    with pytest.raises(errors.StatisticsMismatchError, match="value_range"):
        stats_from({"en": a}, calibrated).merge(stats_from({"en": b}, calibrated))


def windows_of(model, texts, window=16):  # type: ignore[no-untyped-def]
    return {lang: tokenize_windows(model.tokenizer, t, window=window) for lang, t in texts.items()}


def paper_accumulators() -> list:  # type: ignore[type-arg]
    sites = ("mlp_pre", "mlp_post")
    return [
        MomentAccumulator(sites),
        QuantileAccumulator(sites, 64),
        BatchQuantileAccumulator(("mlp_pre",)),
    ]


def test_tiny_model_quantiles_are_within_the_bound(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts)
    stats = collect_stats(
        llama, windows, batch_size=2, accumulators=paper_accumulators(), progress=False
    )
    worst = 0.0
    for index, language in enumerate(stats.languages):
        w = windows[language]
        names = [f"blocks.{i}.mlp.hook_{s}" for i in range(3) for s in ("pre", "post")]
        with torch.no_grad():
            _, cache = llama.run_with_cache(
                w.input_ids, attention_mask=w.attention_mask.long(), names_filter=names
            )
        for site, short in (("mlp_pre", "pre"), ("mlp_post", "post")):
            acts = torch.stack(
                [cache[f"blocks.{i}.mlp.hook_{short}"][w.stats_mask].double() for i in range(3)]
            )  # [layer, token, d_mlp]
            for q in PAPER_QUANTILES:
                exact = torch.quantile(acts, q, dim=1)
                error = (stats.quantile(q, site)[..., index] - exact).abs()
                bound = stats.quantile_error_bound(q, site)[..., index]
                assert bool((error <= bound + TOLERANCE).all()), (language, site, q)
                worst = max(worst, float((error / bound.clamp_min(1e-12)).max()))
    assert worst <= 1.0 + 1e-3


def test_resumed_run_and_save_load_are_identical(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts)
    full = collect_stats(
        llama, windows, batch_size=1, accumulators=paper_accumulators(), progress=False
    )

    def stop_after_three(done) -> None:  # type: ignore[no-untyped-def]
        stop_after_three.count += 1
        if stop_after_three.count == 3:
            raise KeyboardInterrupt

    stop_after_three.count = 0
    kwargs = {"batch_size": 1, "output_dir": tmp_path, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        collect_stats(
            llama, windows, accumulators=paper_accumulators(), callback=stop_after_three, **kwargs
        )
    resumed = collect_stats(llama, windows, accumulators=paper_accumulators(), **kwargs)
    assert resumed.equal(full)
    loaded = ActivationStats.load(full.save(tmp_path / "again"))
    assert loaded.equal(full)
    assert loaded.accumulators == full.accumulators
    torch.testing.assert_close(loaded.quantile(0.9), full.quantile(0.9))


def test_memory_does_not_grow_with_tokens(llama, texts) -> None:  # type: ignore[no-untyped-def]
    accumulators = [QuantileAccumulator(("mlp_pre",), 32)]
    small = collect_stats(
        llama,
        texts,
        sites=["mlp_pre"],
        accumulators=accumulators,
        max_tokens_per_language=40,
        window=16,
        progress=False,
    )
    large = collect_stats(
        llama,
        {k: v * 10 for k, v in texts.items()},
        sites=["mlp_pre"],
        accumulators=accumulators,
        window=16,
        progress=False,
    )
    assert int(large.tokens.sum()) > 5 * int(small.tokens.sum())
    assert {k: v.shape for k, v in small.state.items()} == {
        k: v.shape for k, v in large.state.items()
    }
    counts = large.state["mlp_pre/hist"].sum(dim=2)  # every neuron saw every token
    assert torch.equal(counts, large.tokens.to(counts.dtype).expand_as(counts))


# ----- views and interventions ----------------------------------------------------------


def test_language_views_and_the_site_mismatch_helper(llama, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(
        llama, windows_of(llama, texts), accumulators=paper_accumulators(), progress=False
    )
    fr = stats["fr"]
    p90 = fr.statistic("p90")
    assert set(p90) == {"mlp_pre", "mlp_post"}
    torch.testing.assert_close(p90["mlp_pre"], stats.quantile(0.9, "mlp_pre")[..., 1])
    torch.testing.assert_close(fr.percentile(90)["mlp_post"], p90["mlp_post"])
    torch.testing.assert_close(fr.statistic("mean")["mlp_post"], fr.mean["mlp_post"])
    paper = fr.statistic("p90", estimate="batch_mean")
    assert set(paper) == {"mlp_pre"}  # only collected there
    mismatch = statistic_value(stats, "fr", "p10")
    assert set(mismatch) == {"mlp_post"}
    torch.testing.assert_close(mismatch["mlp_post"], fr.statistic("p10")["mlp_pre"])
    for name in ("p5", "p25", "p50", "p75", "p95"):
        assert fr.statistic(name)["mlp_pre"].shape == (3, 128)
    with pytest.raises(ValueError, match="p<0"):
        fr.statistic("p900")
    with pytest.raises(ValueError, match="Unknown statistic"):
        fr.statistic("median")


def test_set_to_writes_the_pre_activation_statistic_into_the_post_activation(llama, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(
        llama, windows_of(llama, texts), accumulators=paper_accumulators(), progress=False
    )
    neurons = lsn_mech.neurons.NeuronSet([[3], [], [7]], d_mlp=128)
    value = statistic_value(stats, "fr", "p90", read_site="mlp_pre", write_site="mlp_post")
    seen = {}

    def grab(name):  # type: ignore[no-untyped-def]
        def hook(activation, hook):  # type: ignore[no-untyped-def]
            seen[name] = activation.detach().clone()

        return hook

    w = windows_of(llama, {"en": texts["en"]})["en"]
    names = ["blocks.0.mlp.hook_post", "blocks.2.mlp.hook_post"]
    grabs = [(n, grab(n)) for n in names]
    with lsn_mech.set_to(llama, neurons, value), llama.hooks(fwd_hooks=grabs):
        llama(w.input_ids, attention_mask=w.attention_mask.long())
    expected = stats.quantile(0.9, "mlp_pre")[..., 1].float()
    assert torch.all(seen["blocks.0.mlp.hook_post"][..., 3] == expected[0, 3])
    assert torch.all(seen["blocks.2.mlp.hook_post"][..., 7] == expected[2, 7])
    with lsn_mech.set_to(llama, neurons, stats["fr"].statistic("p90")):  # same-site default
        llama(w.input_ids, attention_mask=w.attention_mask.long())


def test_missing_histograms_name_the_fix(llama, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(llama, windows_of(llama, texts), progress=False)
    with pytest.raises(errors.StatisticsMismatchError, match="QuantileAccumulator"):
        stats.quantile(0.9, "mlp_pre")
    with pytest.raises(errors.StatisticsMismatchError, match="QuantileAccumulator"):
        stats["fr"].statistic("p90")
    with pytest.raises(errors.StatisticsMismatchError, match="BatchQuantileAccumulator"):
        stats.quantile(0.9, "mlp_pre", estimate="batch_mean")
    with pytest.raises(ValueError, match="bins"):
        QuantileAccumulator(("mlp_pre",), 0)
    with pytest.raises(ValueError, match="value_range"):
        QuantileAccumulator(("mlp_pre",), value_range=(1, 1))


def test_empty_language_is_refused() -> None:
    stats = stats_from({"en": [torch.randn(5, 1, 2)]}, [QuantileAccumulator(("mlp_pre",), 8)])
    empty = dataclasses.replace(stats, tokens=torch.zeros(1, dtype=torch.int64))
    with pytest.raises(errors.StatisticsMismatchError, match="No tokens"):
        empty.quantile(0.5, "mlp_pre")
