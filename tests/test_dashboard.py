"""The neuron dashboard: the streaming top-k against hand computations and a brute-force
capture, the site's pages and links, escaping, the job, and (slow) headless Chromium."""

from __future__ import annotations

import html
import inspect
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import lsn_mech as lm
from lsn_mech.corpora.sources import language_windows
from lsn_mech.errors import (
    InvalidSettingError,
    MissingLanguageError,
    NeuronShapeMismatchError,
    WrongInputError,
)
from lsn_mech.experiments.dashboard_html import Context, NeuronPage, neuron_html, svg_bars
from lsn_mech.experiments.neuron_dashboard import token_pieces
from lsn_mech.models.runtime import capture
from lsn_mech.models.sites import hook_sites
from lsn_mech.stats import TopActivations, collect_top_activations


# ----- the running top-k, by hand ----------------------------------------------------
def brute_force(
    batches: list[tuple[torch.Tensor, torch.Tensor]], k: int
) -> list[list[tuple[float, int, int]]]:
    """Per neuron: every (value, window, position) under the mask, best k by the order
    (value desc, window asc, position asc)."""
    n_neurons = batches[0][0].shape[2]
    found: list[list[tuple[float, int, int]]] = [[] for _ in range(n_neurons)]
    window = 0
    for values, mask in batches:
        for b, s, n in itertools.product(*(range(d) for d in values.shape)):
            if mask[b, s] and torch.isfinite(values[b, s, n]):
                found[n].append((float(values[b, s, n]), window + b, s))
        window += values.shape[0]
    return [sorted(entries, key=lambda e: (-e[0], e[1], e[2]))[:k] for entries in found]


def fold(
    batches: list[tuple[torch.Tensor, torch.Tensor]], order: list[int], k: int, context: int = 1
) -> TopActivations:
    top = TopActivations(batches[0][0].shape[2], 1, k, context=context)
    starts = list(itertools.accumulate([0] + [v.shape[0] for v, _ in batches]))
    for i in order:
        values, mask = batches[i]
        ids = torch.arange(values.shape[0] * values.shape[1]).reshape(values.shape[:2]) + 100 * i
        top.update(0, values, ids, mask, first_window=starts[i])
    return top


def test_top_k_by_hand_breaks_ties_by_earlier_window_then_position() -> None:
    #                 neuron 0          neuron 1
    values = torch.tensor([[[1.0, 5.0], [3.0, 5.0], [3.0, 0.0], [2.0, 5.0]]])
    top = TopActivations(2, 1, 3, context=1)
    top.update(0, values, torch.tensor([[10, 11, 12, 13]]), torch.ones(1, 4, dtype=torch.bool),
               first_window=7)  # fmt: skip
    assert top.entries(0, 0) == [(3.0, 7, 1), (3.0, 7, 2), (2.0, 7, 3)]
    assert top.entries(1, 0) == [(5.0, 7, 0), (5.0, 7, 1), (5.0, 7, 3)]
    # contexts: one token either side, -1 / nan past the window's edge
    assert top.context_ids[1, 0, 0].tolist() == [-1, 10, 11]
    assert top.context_ids[0, 0, 2].tolist() == [12, 13, -1]
    shown = top.context_values[1, 0, 0]
    assert torch.isnan(shown[0]) and shown[1:].tolist() == [5.0, 5.0]
    assert top.tokens.tolist() == [4]


def test_k_larger_than_the_tokens_keeps_what_there_is_and_never_a_masked_position() -> None:
    values = torch.tensor([[[4.0], [9.0], [1.0]], [[2.0], [8.0], [0.5]]])
    mask = torch.tensor([[True, False, True], [True, True, False]])  # 9.0 and 0.5 hidden
    top = TopActivations(1, 2, 10, context=1)
    top.update(1, values, torch.arange(6).reshape(2, 3), mask, first_window=0)
    assert top.entries(0, 1) == [(8.0, 1, 1), (4.0, 0, 0), (2.0, 1, 0), (1.0, 0, 2)]
    assert top.entries(0, 0) == [] and top.counts().tolist() == [[0, 4]]
    # the hidden position is no context either: id -1, activation nan
    assert top.context_ids[0, 1, 1].tolist() == [-1, 0, -1]  # around (window 0, position 0)
    assert top.context_ids[0, 1, 0].tolist() == [3, 4, -1]  # around (window 1, position 1)


def test_nan_and_minus_inf_never_enter() -> None:
    values = torch.tensor([[[torch.nan], [-torch.inf], [1.0]]])
    top = TopActivations(1, 1, 3, context=0)
    top.update(0, values, torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool),
               first_window=0)  # fmt: skip
    assert top.entries(0, 0) == [(1.0, 0, 2)]


@pytest.mark.parametrize("seed", range(6))
def test_batches_in_any_order_and_merged_accumulators_give_the_brute_force_top_k(
    seed: int,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(4):
        rows = int(torch.randint(1, 4, (), generator=generator))
        values = torch.randint(0, 4, (rows, 5, 3), generator=generator).float()  # many ties
        mask = torch.rand(rows, 5, generator=generator) > 0.3
        batches.append((values, mask))
    k = 6
    expected = brute_force(batches, k)
    forward = fold(batches, [0, 1, 2, 3], k)
    for order in ([3, 2, 1, 0], [2, 0, 3, 1]):
        shuffled = fold(batches, order, k)
        for name in ("values", "windows", "positions", "context_ids"):
            assert torch.equal(getattr(shuffled, name), getattr(forward, name)), (order, name)
        assert torch.equal(
            shuffled.context_values.nan_to_num(-7), forward.context_values.nan_to_num(-7)
        )
    merged = fold(batches, [0, 2], k).merge(fold(batches, [3, 1], k))
    assert torch.equal(merged.windows, forward.windows) and merged.tokens.tolist() == [
        sum(int(m.sum()) for _, m in batches)
    ]
    for neuron in range(3):
        assert forward.entries(neuron, 0) == expected[neuron]
        assert merged.entries(neuron, 0) == expected[neuron]


def test_settings_and_shapes_are_refused_by_name() -> None:
    with pytest.raises(InvalidSettingError, match="k must be"):
        TopActivations(2, 1, 0)
    with pytest.raises(InvalidSettingError, match="context must be"):
        TopActivations(2, 1, 3, context=-1)
    top = TopActivations(2, 1, 3)
    with pytest.raises(WrongInputError, match=r"\[batch, seq, 2\]"):
        top.update(0, torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long),
                   torch.ones(1, 4, dtype=torch.bool), first_window=0)  # fmt: skip
    with pytest.raises(InvalidSettingError, match="same neurons"):
        top.merge(TopActivations(3, 1, 3))


# ----- on a model: against a full capture --------------------------------------------
def corpus_texts() -> dict[str, list[str]]:
    from conftest import TEXTS

    texts = {k: list(v) * 3 for k, v in TEXTS.items()}
    texts["en"] = ["<script>alert('x')</script> & <b>bold</b>", *texts["en"]]
    return texts


def full_capture_top(
    model: Any, texts: dict[str, list[str]], pairs: list[tuple[int, int]], site: str, k: int
) -> dict[str, list[list[tuple[float, int, int]]]]:
    """Every activation of ``pairs`` kept, then sorted: what the streaming pass must equal."""
    sites = hook_sites(model)
    result = {}
    for language in texts:
        windows = language_windows(
            texts, language, model.tokenizer, split="train", window=32, max_tokens=160
        )
        batches = []
        for batch in windows.batches(3):
            names = sorted({sites.name(site, layer) for layer, _ in pairs})
            with torch.no_grad():
                cache = capture(model, batch.input_ids, names, attention_mask=batch.attention_mask)
            columns = [cache[sites.name(site, layer)][..., index] for layer, index in pairs]
            batches.append((torch.stack(columns, dim=-1).float(), batch.stats_mask))
        result[language] = brute_force(batches, k)
    return result


def test_collect_top_activations_equals_a_full_capture(llama: Any) -> None:
    texts = corpus_texts()
    pairs = [(0, 3), (1, 40), (1, 7), (2, 127)]
    top = collect_top_activations(
        llama,
        texts,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        languages=list(texts),
        site="mlp_post",
        k=4,
        context=2,
        max_tokens_per_language=160,
        batch_size=3,
        window=32,
        progress=False,
    )
    expected = full_capture_top(llama, texts, pairs, "mlp_post", 4)
    for column, language in enumerate(texts):
        for row in range(len(pairs)):
            got = top.entries(row, column)
            want = expected[language][row]
            assert [(w, p) for _, w, p in got] == [(w, p) for _, w, p in want]
            assert [v for v, _, _ in got] == pytest.approx([v for v, _, _ in want], abs=1e-6)
    assert top.tokens.tolist() == [160, 160, 160]


# ----- the site ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(llama: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    texts = corpus_texts()
    stats = lm.collect_stats(llama, texts, window=32, max_tokens_per_language=160, progress=False)
    neurons = lm.detect.run("lape", stats, top_rate=0.05).neurons
    output = tmp_path_factory.mktemp("dashboard")
    site = lm.experiments.dashboard(
        llama,
        neurons,
        stats,
        texts,
        output,
        top_k=4,
        context=3,
        max_tokens_per_language=160,
        window=32,
        batch_size=3,
        progress=False,
    )
    return {"site": site, "stats": stats, "neurons": neurons, "texts": texts, "output": output}


def test_the_site_has_an_index_and_one_page_per_neuron(built: dict[str, Any]) -> None:
    site, neurons, output = built["site"], built["neurons"], built["output"]
    union = neurons.union()
    assert site.neurons == len(union) and site.pages == len(union)  # under the default cap
    assert site.index == output / "index.html" and site.index.is_file()
    pages = sorted((output / "neurons").glob("*.html"))
    assert {p.name for p in pages} == {f"L{layer}_N{index}.html" for layer, index in union}
    record = json.loads((output / "dashboard.json").read_text())
    assert record["pages"][0]["page"] == f"neurons/{pages_sorted(union)[0]}"
    assert site.contexts == 4 * len(union) * 3  # every neuron fills 4 slots in 3 languages
    assert site.tokens == {"en": 160, "fr": 160, "zh": 160}


def pages_sorted(union: Any) -> list[str]:
    return [f"L{layer}_N{index}.html" for layer, index in sorted(union)]


def test_every_link_resolves_to_a_local_file(built: dict[str, Any]) -> None:
    checked = 0
    for page in built["output"].rglob("*.html"):
        for href in re.findall(r'href="([^"]+)"', page.read_text()):
            assert "://" not in href, (page, href)  # nothing from the network
            assert (page.parent / html.unescape(href)).is_file(), (page, href)
            checked += 1
    assert checked >= built["site"].pages * 2


def test_each_page_lists_the_true_top_contexts(built: dict[str, Any], llama: Any) -> None:
    neurons, output, texts = built["neurons"], built["output"], built["texts"]
    pairs = sorted(neurons.union())[:3]
    expected = full_capture_top(llama, texts, pairs, neurons.site, 4)
    for row, (layer, index) in enumerate(pairs):
        text = (output / "neurons" / f"L{layer}_N{index}.html").read_text()
        sections = text.split("top contexts</h3>")[1:]
        assert len(sections) == len(texts)
        for language, section in zip(texts, sections):
            shown = re.findall(r"<tr><td>([-\d.]+)</td><td>(\d+)</td><td>(\d+)</td>", section)
            want = expected[language][row]
            assert [(int(w), int(p)) for _, w, p in shown] == [(w, p) for _, w, p in want]
            assert [float(v) for v, _, _ in shown] == pytest.approx(
                [v for v, _, _ in want], abs=1e-3
            )


def test_the_pages_show_statistics_sets_and_highlighted_tokens(built: dict[str, Any]) -> None:
    neurons, stats, output = built["neurons"], built["stats"], built["output"]
    layer, index = sorted(neurons.union())[0]
    text = (output / "neurons" / f"L{layer}_N{index}.html").read_text()
    probability = stats.activation_probability("mlp_pre")[layer, index]
    for column in range(len(stats.languages)):
        assert f">{float(probability[column]):.3f}<" in text
    for language in neurons.languages:
        assert (f">{language}</span>" in text.split("<h2>")[0]) == (
            (layer, index) in neurons[language]
        )
    assert text.count('class="bar-chart"') == 2 and 'class="token peak"' in text
    index_page = (output / "index.html").read_text()
    assert '<table class="sets">' in index_page and '<table class="overlaps">' in index_page
    for language, counts in neurons.per_layer().items():
        assert f"<td>{sum(counts)}</td>" in index_page, language


def test_corpus_text_is_escaped_everywhere(built: dict[str, Any]) -> None:
    for page in built["output"].rglob("*.html"):
        assert "<script" not in page.read_text().lower(), page
    hostile = "<script>alert('x')</script>"
    page = NeuronPage(
        layer=0,
        index=1,
        site="mlp_post",
        sets=['<img src=x onerror="1">'],
        probability={'<img src=x onerror="1">': 0.5},
        mean={'<img src=x onerror="1">': None},
        contexts={
            '<img src=x onerror="1">': [
                Context(1.0, 0, 1, ["a", hostile, "&amp;"], [0.1, 1.0, None], peak=1)
            ]
        },
    )
    text = neuron_html(page, ['<img src=x onerror="1">'], title="</title><script>")
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&amp;amp;" in text  # text that looks like an entity stays text


def test_token_pieces_put_a_split_character_with_the_token_that_completes_it(
    llama: Any,
) -> None:
    tokenizer = llama.tokenizer  # bytes: 起 is three tokens
    ids = tokenizer("a起b", add_special_tokens=False)["input_ids"]
    assert len(ids) == 5
    assert token_pieces(tokenizer, ids) == ["a", "", "", "起", "b"]


def test_svg_bars_draw_negative_values_below_the_zero_line() -> None:
    svg = svg_bars(["en", "fr", "zh"], [0.5, -0.25, None], title="mean")
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 2 and heights[0] == pytest.approx(2 * heights[1], rel=0.02)
    assert "—" in svg  # the missing value is labelled, not drawn


def test_max_neurons_bounds_the_pages_taking_each_language_in_turn(
    built: dict[str, Any], llama: Any, tmp_path: Path
) -> None:
    neurons, stats = built["neurons"], built["stats"]
    site = lm.experiments.dashboard(
        llama, neurons, stats, built["texts"], tmp_path, languages=["fr", "en"], top_k=1,
        context=0, max_tokens_per_language=40, window=32, max_neurons=2, progress=False,
    )  # fmt: skip
    assert site.pages == 2 and len(list((tmp_path / "neurons").glob("*.html"))) == 2
    probability = stats.activation_probability("mlp_pre")

    def ranked(language: str) -> list[tuple[int, int]]:  # most active in its language first
        column = stats.language_index(language)
        pairs = [(int(layer), int(index)) for layer, index in neurons[language].to_pairs()]
        return sorted(pairs, key=lambda p: (-float(probability[p[0], p[1], column]), p))

    fr, en = ranked("fr"), ranked("en")
    expected = {fr[0], en[0] if en[0] != fr[0] else en[1]}
    record = json.loads((tmp_path / "dashboard.json").read_text())
    assert {(p["layer"], p["index"]) for p in record["pages"]} == expected
    assert "more neurons of the sets have no page" in (tmp_path / "index.html").read_text()


def test_wrong_inputs_are_refused_before_any_forward(
    built: dict[str, Any], llama: Any, tmp_path: Path
) -> None:
    neurons, stats, texts = built["neurons"], built["stats"], built["texts"]
    unchecked = inspect.unwrap(lm.experiments.dashboard)  # past the tests' type checker
    with pytest.raises(WrongInputError, match="LanguageNeurons"):
        unchecked(llama, neurons["fr"], stats, texts, tmp_path)
    with pytest.raises(MissingLanguageError, match="neurons' languages"):
        lm.experiments.dashboard(llama, neurons, stats, texts, tmp_path, languages=["de"])
    with pytest.raises(InvalidSettingError, match="top_k"):
        lm.experiments.dashboard(llama, neurons, stats, texts, tmp_path, top_k=0)
    other = lm.neurons.LanguageNeurons({"en": lm.neurons.NeuronSet([[1], [2]], d_mlp=64)})
    with pytest.raises(NeuronShapeMismatchError, match="same model"):
        lm.experiments.dashboard(llama, other, None, texts, tmp_path)


# ----- the job ---------------------------------------------------------------------------
def test_the_job_writes_a_finished_site_from_a_neuron_and_a_statistics_file(
    built: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsn_mech.cli import main
    from lsn_mech.pipelines.stages import completed_job

    files = []
    for language in ("en", "fr"):
        path = tmp_path / f"{language}.txt"
        path.write_text("\n".join(built["texts"][language]) + "\n")
        files.append(f"{language}={path}")
    neurons = built["neurons"].save(tmp_path / "neurons.safetensors")
    stats = built["stats"].save(tmp_path / "stats.safetensors")
    output = tmp_path / "site"
    argv = ["dashboard", "--model", "tiny-llama", "--neurons", str(neurons), "--stats", str(stats),
            "--text-files", ",".join(files), "--languages", "en,fr", "--window", "32",
            "--max-tokens", "64", "--top-k", "2", "--output", str(output)]  # fmt: skip
    assert main(argv) == 0
    assert f"Open {output / 'index.html'}" in capsys.readouterr().out
    marker = completed_job(output, "dashboard")
    assert "index.html" in marker["files"] and (output / "config.json").is_file()
    assert main(["dashboard", "--model", "tiny-llama", "--output", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--neurons is required" in error[0]


# ----- in a browser (slow: Chromium) -------------------------------------------------------
@pytest.mark.slow
def test_the_pages_render_in_headless_chromium(built: dict[str, Any], tmp_path: Path) -> None:
    from browser import assert_not_blank, rendered_dom, require_chromium, screenshot

    require_chromium()
    output = built["output"]
    layer, index = sorted(built["neurons"].union())[0]
    neuron_page = output / "neurons" / f"L{layer}_N{index}.html"
    for page, name in ((output / "index.html", "index"), (neuron_page, "neuron")):
        assert_not_blank(screenshot(page, tmp_path / f"{name}.png", wait_ms=500))
    index_dom = rendered_dom(output / "index.html", wait_ms=500)
    assert '<table class="sets">' in index_dom and 'class="bar-chart spark"' in index_dom
    assert f'href="neurons/L{layer}_N{index}.html"' in index_dom
    neuron_dom = rendered_dom(neuron_page, wait_ms=500)
    assert neuron_dom.count('class="bar-chart"') == 2 and "<rect" in neuron_dom
    assert 'class="token peak"' in neuron_dom and "rgba(255,110,0," in neuron_dom
