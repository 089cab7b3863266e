"""Streaming statistics: exact against a direct computation, resumable, mergeable."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import lsn_mech.errors as errors
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.stats import Accumulator, ActivationStats, MomentAccumulator, collect_stats


def windows_of(model, texts, window=24):  # type: ignore[no-untyped-def]
    return {lang: tokenize_windows(model.tokenizer, t, window=window) for lang, t in texts.items()}


def test_statistics_equal_a_direct_computation(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts)
    stats = collect_stats(llama, windows, batch_size=3, progress=False)
    for index, language in enumerate(["en", "fr", "zh"]):
        w = windows[language]
        names = [
            f"blocks.{layer}.mlp.hook_{site}" for layer in range(3) for site in ("pre", "post")
        ]
        with torch.no_grad():
            _, cache = llama.run_with_cache(
                w.input_ids, attention_mask=w.attention_mask.long(), names_filter=names
            )
        assert int(stats.tokens[index]) == int(w.stats_mask.sum())
        for layer in range(3):
            for site, short in (("mlp_pre", "pre"), ("mlp_post", "post")):
                acts = cache[f"blocks.{layer}.mlp.hook_{short}"][w.stats_mask].double()
                positive = stats.state[f"{site}/positive"][layer, :, index]
                assert torch.equal(positive, (acts > 0).sum(0))
                # per-batch sums are float32 before joining the float64 accumulator
                torch.testing.assert_close(
                    stats.state[f"{site}/sum"][layer, :, index], acts.sum(0), rtol=1e-5, atol=1e-5
                )
                torch.testing.assert_close(
                    stats.state[f"{site}/sum_sq"][layer, :, index],
                    acts.square().sum(0),
                    rtol=1e-5,
                    atol=1e-5,
                )
    probability = stats.activation_probability("mlp_pre")
    assert probability.shape == (3, 128, 3)
    assert float(probability.min()) >= 0.0 and float(probability.max()) <= 1.0


def test_padding_and_bos_never_enter_statistics(llama, texts) -> None:  # type: ignore[no-untyped-def]
    w = tokenize_windows(llama.tokenizer, texts["en"], window=40)
    assert not bool(w.attention_mask.all()), "the test needs a padded window"
    scrambled = w.input_ids.clone()
    scrambled[~w.attention_mask] = 77  # change what sits in the padding
    changed = dataclasses.replace(w, input_ids=scrambled)
    a = collect_stats(llama, {"en": w}, progress=False)
    b = collect_stats(llama, {"en": changed}, progress=False)
    assert a.equal(b)
    assert int(a.tokens[0]) == int(w.attention_mask.sum()) - w.input_ids.shape[0]  # minus BOS


def test_forward_stops_before_the_unembedding(llama, texts) -> None:  # type: ignore[no-untyped-def]
    calls = []
    with llama.hooks(fwd_hooks=[("unembed.hook_in", lambda x, hook: calls.append(1))]):
        collect_stats(llama, windows_of(llama, texts), progress=False)
    assert calls == []


def test_interrupted_run_resumes_to_identical_statistics(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts, window=16)
    full = collect_stats(llama, windows, batch_size=1, progress=False)

    def interrupt_after_three(done) -> None:  # type: ignore[no-untyped-def]
        interrupt_after_three.count += 1
        if interrupt_after_three.count == 3:
            raise KeyboardInterrupt

    interrupt_after_three.count = 0
    with pytest.raises(KeyboardInterrupt):
        collect_stats(
            llama,
            windows,
            batch_size=1,
            output_dir=tmp_path,
            progress=False,
            checkpoint_every=2,
            callback=interrupt_after_three,
        )
    seen = []
    resumed = collect_stats(
        llama,
        windows,
        batch_size=1,
        output_dir=tmp_path,
        progress=False,
        callback=lambda done: seen.append((done.language, done.batch)),
    )
    assert seen[0] == ("en", 3), "resumes after the three batches already counted"
    assert resumed.equal(full)
    assert ActivationStats.load(tmp_path / "stats.safetensors").equal(full)
    again = collect_stats(llama, windows, batch_size=1, output_dir=tmp_path, progress=False)
    assert again.equal(full)


def test_checkpoint_of_another_run_is_refused(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts)
    collect_stats(llama, windows, output_dir=tmp_path, progress=False)
    with pytest.raises(errors.StatisticsMismatchError, match="another output folder"):
        collect_stats(llama, windows, output_dir=tmp_path, batch_size=2, progress=False)


def test_merge_of_halves_equals_the_whole(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts, window=12)
    # batch_size=1: every window is reduced alone in float32, then summed in float64, so
    # the only difference left is float64 summation order.
    whole = collect_stats(llama, windows, batch_size=1, progress=False)

    def half(w, part):  # type: ignore[no-untyped-def]
        cut = w.input_ids.shape[0] // 2
        rows = slice(0, cut) if part == 0 else slice(cut, None)
        return dataclasses.replace(
            w,
            input_ids=w.input_ids[rows],
            attention_mask=w.attention_mask[rows],
            stats_mask=w.stats_mask[rows],
        )

    halves = [{k: half(v, part) for k, v in windows.items()} for part in (0, 1)]
    first, second = (collect_stats(llama, h, batch_size=1, progress=False) for h in halves)
    merged = first.merge(second)
    assert torch.equal(merged.tokens, whole.tokens)
    for key, value in whole.state.items():
        if key.endswith("positive"):
            assert torch.equal(merged.state[key], value)
        else:
            torch.testing.assert_close(merged.state[key], value, rtol=1e-12, atol=1e-9)


def test_merge_unites_languages_and_refuses_other_models(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = windows_of(llama, texts)
    en = collect_stats(llama, {"en": windows["en"]}, progress=False)
    fr = collect_stats(llama, {"fr": windows["fr"]}, progress=False)
    both = en.merge(fr)
    assert both.languages == ["en", "fr"]
    assert torch.equal(both["fr"].probability(), fr["fr"].probability())
    other = dataclasses.replace(fr, provenance=fr.provenance.replace(model_id="another"))
    with pytest.raises(errors.StatisticsMismatchError, match="different models"):
        en.merge(other)


def test_save_load_round_trip_with_provenance(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(llama, windows_of(llama, texts), progress=False)
    path = stats.save(tmp_path / "stats")
    loaded = ActivationStats.load(path)
    assert loaded.equal(stats)
    assert loaded.provenance == stats.provenance
    assert loaded.provenance.model_id == "tiny-llama"
    assert loaded.provenance.parameters["languages"] == ["en", "fr", "zh"]


def test_language_views_mean_std_and_subset(llama, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(llama, windows_of(llama, texts), progress=False)
    fr = stats["fr"]
    assert fr.tokens == int(stats.tokens[1])
    expected_mean = stats.state["mlp_post/sum"][..., 1] / fr.tokens
    torch.testing.assert_close(fr.mean["mlp_post"], expected_mean)
    variance = stats.state["mlp_post/sum_sq"][..., 1] / fr.tokens - expected_mean**2
    torch.testing.assert_close(fr.std["mlp_post"], variance.clamp_min(0).sqrt())
    sub = stats.subset(["zh", "en"])
    assert sub.languages == ["zh", "en"]
    assert torch.equal(
        sub.state["mlp_pre/positive"][..., 0], stats.state["mlp_pre/positive"][..., 2]
    )


def test_memory_does_not_grow_with_tokens(llama, texts) -> None:  # type: ignore[no-untyped-def]
    small = collect_stats(llama, texts, max_tokens_per_language=50, window=16, progress=False)
    large = collect_stats(llama, {k: v * 20 for k, v in texts.items()}, window=16, progress=False)
    assert int(large.tokens.sum()) > 10 * int(small.tokens.sum())
    assert {k: v.shape for k, v in small.state.items()} == {
        k: v.shape for k, v in large.state.items()
    }


def test_bad_input_errors_name_the_fix(llama, texts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.MissingLanguageError, match="not in the corpus"):
        collect_stats(llama, texts, languages=["en", "de"], progress=False)
    with pytest.raises(errors.EmptyCorpusError):
        collect_stats(llama, {"en": ["", "  "]}, progress=False)
    stats = collect_stats(llama, texts, progress=False)
    with pytest.raises(errors.MissingLanguageError, match="collect_stats"):
        stats["de"]
    with pytest.raises(errors.StatisticsMismatchError, match="sites="):
        collect_stats(llama, texts, sites=["mlp_pre"], progress=False).mean("mlp_post")
    with pytest.raises(ValueError, match="Unknown sites"):
        collect_stats(llama, texts, sites=["resid"], progress=False)


def test_runs_on_every_architecture(tiny_model, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(tiny_model, texts, max_tokens_per_language=64, window=32, progress=False)
    assert stats.tokens.tolist() == [64, 64, 64]
    assert stats.activation_probability().shape == (3, 128, 3)


class MaxAccumulator(Accumulator):
    """A second accumulator on the same site, merged by maximum rather than by sum."""

    name = "test-max"
    quantities = ("max",)

    def init_state(self, n_layers, d_mlp, n_languages, device):  # type: ignore[no-untyped-def]
        shape = (n_layers, d_mlp, n_languages)
        return {f"{s}/max": torch.full(shape, -torch.inf, device=device) for s in self.sites}

    def update(self, state, site, layer, language, activations) -> None:  # type: ignore[no-untyped-def]
        if activations.shape[0]:
            current = state[f"{site}/max"][layer, :, language]
            torch.maximum(current, activations.float().max(0).values, out=current)

    def merge(self, first, second):  # type: ignore[no-untyped-def]
        return {k: torch.maximum(first[k], second[k]) for k in first}


def test_custom_accumulators_share_sites_and_merge_their_own_way(llama, texts, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.stats import container

    monkeypatch.setitem(container.ACCUMULATOR_TYPES, "test-max", MaxAccumulator)
    windows = windows_of(llama, texts)
    accumulators = [MomentAccumulator(("mlp_post",)), MaxAccumulator(("mlp_post",))]
    en = collect_stats(
        llama, {"en": windows["en"]}, sites=["mlp_post"], accumulators=accumulators, progress=False
    )
    fr = collect_stats(
        llama, {"fr": windows["fr"]}, sites=["mlp_post"], accumulators=accumulators, progress=False
    )
    assert set(en.state) == {"mlp_post/positive", "mlp_post/sum", "mlp_post/sum_sq", "mlp_post/max"}
    both = en.merge(fr)
    assert torch.equal(both.state["mlp_post/sum"][..., 0], en.state["mlp_post/sum"][..., 0])
    assert torch.equal(both.state["mlp_post/max"][..., 1], fr.state["mlp_post/max"][..., 0])


def test_sigterm_stops_between_batches_and_resumes(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    windows = windows_of(llama, texts, window=16)
    full = collect_stats(llama, windows, batch_size=1, progress=False)

    def terminate_after_two(done) -> None:  # type: ignore[no-untyped-def]
        terminate_after_two.count += 1
        if terminate_after_two.count == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what a job scheduler sends

    terminate_after_two.count = 0
    with pytest.raises(KeyboardInterrupt, match="resume"):
        collect_stats(
            llama,
            windows,
            batch_size=1,
            output_dir=tmp_path,
            progress=False,
            checkpoint_every=1000,
            callback=terminate_after_two,
        )
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed = collect_stats(llama, windows, batch_size=1, output_dir=tmp_path, progress=False)
    assert resumed.equal(full)
