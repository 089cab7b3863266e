"""Intervals of the perplexity results: synthetic windows with a known truth (coverage,
shrinkage, tests that decide), per-window sums from a real forward pass, old files."""

from __future__ import annotations

import json
import math
import types
import warnings
from pathlib import Path

import pytest
import torch

from lsn_mech.evaluate import PPLChangeMatrix, perplexity, ppl_change_matrix
from lsn_mech.evaluate import ppl_intervals as pi
from lsn_mech.evaluate.perplexity import perplexity_from_windows
from lsn_mech.intervals import Bootstrap
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.pipelines.report import dominance_summary, write_lape_report
from lsn_mech.plots import StaticImagesSkippedWarning, export
from lsn_mech.provenance import Provenance


def windows(
    generator: torch.Generator, n: int, log_ppl: float, effect: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` windows of 20–60 tokens whose difficulty varies around ``log_ppl`` nats per
    token; an intervention adds ``effect`` nats per token on average (per-window noise):
    the true PPL is exp(log_ppl), the true ratio exp(effect)."""
    tokens = torch.randint(20, 60, (n,), generator=generator).double()
    difficulty = log_ppl + 0.5 * torch.randn(n, generator=generator, dtype=torch.float64)
    base = tokens * difficulty
    shift = effect + 0.2 * torch.randn(n, generator=generator, dtype=torch.float64)
    return base, base + shift * tokens, tokens


def coverage(estimate, truth: float, seeds: int = 200) -> float:  # type: ignore[no-untyped-def]
    hits = 0
    for seed in range(seeds):
        found = estimate(torch.Generator().manual_seed(5_000 + seed), Bootstrap(400, seed=seed))
        hits += found.low <= truth <= found.high
    return hits / seeds


# ----------------------------------------------------------------------------- synthetic


def test_perplexity_interval_covers_the_true_perplexity() -> None:
    def estimate(g, settings):  # type: ignore[no-untyped-def]
        base, _, tokens = windows(g, 60, 2.0)
        return perplexity_from_windows(base, tokens, settings).estimate

    assert 0.90 <= coverage(estimate, math.exp(2.0)) <= 0.985


def test_paired_ratio_interval_covers_the_true_ratio() -> None:
    def estimate(g, settings):  # type: ignore[no-untyped-def]
        base, intervened, tokens = windows(g, 80, 2.0, effect=0.3)
        return pi.column_resamples(base, [intervened], tokens, settings).estimate(0, "ratio")

    assert 0.90 <= coverage(estimate, math.exp(0.3)) <= 0.985


def test_intervals_shrink_with_more_windows() -> None:
    widths, ratio_widths = [], []
    for n in (25, 100, 400):
        base, intervened, tokens = windows(torch.Generator().manual_seed(n), n, 2.0, 0.3)
        widths.append(perplexity_from_windows(base, tokens).estimate.relative_half_width)
        column = pi.column_resamples(base, [intervened], tokens)
        ratio_widths.append(column.estimate(0, "ratio").relative_half_width)  # type: ignore[union-attr]
    assert widths[0] > widths[1] > widths[2] and ratio_widths[0] > ratio_widths[1] > ratio_widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.35)  # ~ 1/sqrt(windows)
    assert ratio_widths[2] < widths[2]  # pairing removes the difficulty shared with the base


def test_every_kind_is_one_set_of_paired_resamples() -> None:
    base, intervened, tokens = windows(torch.Generator().manual_seed(0), 50, 2.0, 0.3)
    column = pi.column_resamples(base, [intervened], tokens)
    ratio, log_ratio = column.estimate(0, "ratio"), column.estimate(0, "log_ratio")
    ppl, delta = column.estimate(0, "ppl"), column.estimate(0, "delta")
    assert ratio.low == pytest.approx(math.exp(log_ratio.low))  # type: ignore[union-attr]
    expected = float(intervened.sum() / tokens.sum())
    assert ppl.value == pytest.approx(math.exp(expected))  # type: ignore[union-attr]
    assert delta.value == pytest.approx(ppl.value - column.base_estimate().value)  # type: ignore[union-attr]
    assert delta.low > 0 and ratio.low > 1  # type: ignore[union-attr]


def synthetic_matrix(
    effects: list[list[float]], n: int = 40, seed: int = 0, rows: list[str] | None = None
) -> PPLChangeMatrix:
    """A matrix whose row ``i`` adds ``effects[i][j]`` nats per token in column ``j``."""
    g = torch.Generator().manual_seed(seed)
    columns = [f"l{j}" for j in range(len(effects[0]))]
    bases, rows_nll, tokens = [], [[] for _ in effects], []
    for j in range(len(columns)):
        base, _, t = windows(g, n, 2.0 + 0.5 * j)
        bases.append(base.tolist())
        tokens.append([int(x) for x in t])
        for i, row in enumerate(effects):
            shift = row[j] + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
            rows_nll[i].append((base + shift * t).tolist())
    point = [math.exp(sum(b) / sum(t)) for b, t in zip(bases, tokens)]
    ppl = [[math.exp(sum(c) / sum(t)) for c, t in zip(row, tokens)] for row in rows_nll]
    return PPLChangeMatrix(
        rows=rows or columns[: len(effects)],
        columns=columns,
        base=point,
        ppl=ppl,
        tokens=[sum(t) for t in tokens],
        provenance=Provenance(parameters={"intervals": Bootstrap(400).to_dict(), "window": 60}),
        window_tokens=tokens,
        window_base_nll=bases,
        window_nll=rows_nll,
    )


def test_dominance_decides_yes_no_and_undecided() -> None:
    matrix = synthetic_matrix([[0.4, 0.05, 0.0], [0.3, 0.0, 0.0], [0.05, 0.0, 0.05]])
    decided = {k: pi.decision(t) for k, t in matrix.dominance_tests().items()}
    assert decided == {"l0": pi.YES, "l1": pi.NO, "l2": pi.UNDECIDED}
    test = matrix.dominance_tests()["l0"]
    assert test.p_value < 0.01 and test.test == pi.DOMINANCE_TEST
    own = matrix.values("log_ratio")[0]
    assert test.difference.value == pytest.approx(own[0] - max(own[1:]))


def test_dominance_false_positive_rate_is_at_most_nominal() -> None:
    """Own and other effect equal in truth: "yes" at most about 2.5 % of the time (one
    side of a 95 % interval; the max over others only makes it rarer)."""
    yes = sum(
        pi.decision(synthetic_matrix([[0.2, 0.2]], seed=s).dominance_tests()["l0"]) == pi.YES
        for s in range(80)
    )
    assert yes <= 6


def test_beats_random_is_paired_and_decides() -> None:
    both = synthetic_matrix(
        [[0.3, 0.0], [0.0, 0.1], [0.15, 0.0], [0.0, 0.1]],
        rows=["l0", "l1", "random:l0", "random:l1"],
    )
    lape, random = both.select_rows(["l0", "l1"]), both.select_rows(["random:l0", "random:l1"])
    tests = lape.beats_tests(random)
    assert pi.decision(tests["l0"]) == pi.YES  # 0.15 nats apart; noise 0.2·√2/√40 = 0.045
    assert pi.decision(tests["l1"]) == pi.UNDECIDED
    assert tests["l0"].difference.value == pytest.approx(
        math.log(lape.ppl[0][0] / random.ppl[0][0])
    )
    assert tests["l0"].test == pi.PAIRED_TEST


def test_one_window_gives_values_without_intervals_and_untested_decisions() -> None:
    matrix = synthetic_matrix([[0.3, 0.0], [0.0, 0.3]], n=1)
    assert not matrix.has_intervals and matrix.windows == [1, 1]
    assert all(not e.has_interval for row in matrix.estimates("ratio") for e in row)
    assert matrix.estimates("ratio")[0][0].value == pytest.approx(matrix.values("ratio")[0][0])
    assert {pi.decision(t) for t in matrix.dominance_tests().values()} == {pi.UNTESTED}
    assert perplexity_from_windows([6.0], [3]).estimate.format(".2f") == f"{math.exp(2):.2f}"


# ----------------------------------------------------------------------------- files


def test_old_matrix_files_load_as_values_without_intervals(tmp_path: Path) -> None:
    matrix = synthetic_matrix([[0.3, 0.0], [0.0, 0.3]])
    path = matrix.save(tmp_path / "m.json")
    assert PPLChangeMatrix.load(path).estimates("ratio") == matrix.estimates("ratio")
    old = json.loads(path.read_text())
    for key in ("window_tokens", "window_base_nll", "window_nll"):
        del old[key]
    del old["provenance"]["parameters"]["intervals"]
    path.write_text(json.dumps(old))
    loaded = PPLChangeMatrix.load(path)
    assert loaded.ppl == matrix.ppl and not loaded.has_intervals
    assert (
        loaded.estimates("ratio")[0][0].format(".3f", "×") == f"×{matrix.values('ratio')[0][0]:.3f}"
    )
    assert {pi.decision(t) for t in loaded.dominance_tests().values()} == {pi.UNTESTED}


def test_interval_csv_holds_the_bounds(tmp_path: Path) -> None:
    matrix = synthetic_matrix([[0.3, 0.0], [0.0, 0.3]])
    header, rows = matrix.tabulate(form="long", intervals=True)
    assert header[2:5] == ["ppl", "ppl_low", "ppl_high"] and header[-2:] == ["tokens", "windows"]
    ratio = matrix.estimates("ratio")[0][1]
    i = header.index("ratio")
    assert rows[1][i : i + 3] == ratio.cells() and rows[1][-1] == 40
    wide_header, wide = matrix.tabulate("ratio", intervals=True)
    assert wide_header == ["deactivated", "l0", "l0_low", "l0_high", "l1", "l1_low", "l1_high"]
    assert wide[0][4:7] == ratio.cells()
    text = matrix.to_csv(tmp_path / "m.csv", form="long", intervals=True).read_text()
    assert text.splitlines()[0].startswith("deactivated,evaluated,ppl,ppl_low,ppl_high,base_ppl")
    hover = matrix.plot().data[0].customdata
    assert f"ratio {ratio.format('.3f', '×')} (95% interval)" in hover[0][1]


@pytest.fixture
def no_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports without the (slow) static image export; the HTML figures are still written."""
    monkeypatch.setattr(export, "_kaleido_problem", lambda: "not needed here")
    warnings.simplefilter("ignore", StaticImagesSkippedWarning)


def lape_inputs(matrix: PPLChangeMatrix, random: PPLChangeMatrix) -> dict:
    sets = {c: NeuronSet.from_pairs([(0, 1)], n_layers=2, d_mlp=4) for c in matrix.columns}
    neurons = LanguageNeurons(sets, provenance=Provenance(method="lape"))
    return {
        "config": {"model": "tiny", "eval_tokens": 64},
        "stats": types.SimpleNamespace(tokens=torch.tensor([300, 300])),
        "neurons": neurons,
        "random_neurons": neurons,
        "matrix": matrix,
        "random_matrix": random,
        "seconds": {"everything": 1.0},
    }


def test_lape_report_prints_intervals_and_names_the_tests(tmp_path: Path, no_images) -> None:  # type: ignore[no-untyped-def]
    both = synthetic_matrix(
        [[0.3, 0.0], [0.0, 0.02], [0.0, 0.0], [0.0, 0.02]],
        rows=["l0", "l1", "random:l0", "random:l1"],
    )
    lape, random = both.select_rows(["l0", "l1"]), both.select_rows(["random:l0", "random:l1"])
    write_lape_report(tmp_path, **lape_inputs(lape, random))
    text = (tmp_path / "report.md").read_text()
    own = lape.estimates("ratio")[0][0].format(".3f", "×")
    assert own in text and "[" in own
    assert "of 2 languages: yes for 1 (l0); undecided for 1 (l1)" in text
    assert pi.DOMINANCE_TEST in text and pi.PAIRED_TEST in text
    assert "95% percentile bootstrap over the evaluation windows (40 windows" in text
    summary = json.loads((tmp_path / "ppl_summary.json").read_text())
    assert summary["l0"]["dominance"] == "yes" and summary["l0"]["own"]["low"] > 1
    assert (tmp_path / "ppl_matrix_intervals.csv").read_text().count("\n") == 5
    assert dominance_summary(lape, random)["l0"]["beats_random_decision"] == pi.YES


def test_lape_report_with_one_window_says_there_are_no_intervals(tmp_path: Path, no_images) -> None:  # type: ignore[no-untyped-def]
    both = synthetic_matrix([[0.3, 0.0], [0.0, 0.3], [0.0, 0.0], [0.0, 0.0]], n=1)
    lape, random = both.select_rows(["l0", "l1"]), both.select_rows(["l0", "l1"])
    write_lape_report(tmp_path, **lape_inputs(lape, random))
    text = (tmp_path / "report.md").read_text()
    assert "**No intervals**: a language was evaluated on 1 window(s)" in text
    assert "Point values only (untested" in text and "(point only, untested)" in text


# ----------------------------------------------------------------------------- real model


def test_window_sums_add_up_to_the_perplexity(llama, texts) -> None:  # type: ignore[no-untyped-def]
    result = perplexity(llama, texts["fr"], window=16, batch_size=3)
    assert result.windows >= 3 and sum(result.window_tokens) == result.tokens
    assert sum(result.window_nll) / result.tokens == pytest.approx(result.nll, rel=1e-9)
    assert result.low < result.value < result.high
    one = perplexity(llama, texts["fr"], window=16, batch_size=1)  # window by window
    assert one.window_nll == pytest.approx(result.window_nll, rel=1e-5)


def test_ppl_change_matrix_keeps_windows_and_pairs_its_rows(llama, texts) -> None:  # type: ignore[no-untyped-def]
    sets = {
        "en": NeuronSet.from_pairs([(0, i) for i in range(40)], n_layers=3, d_mlp=128),
        "fr": NeuronSet.from_pairs([(1, i) for i in range(40)], n_layers=3, d_mlp=128),
    }
    matrix = ppl_change_matrix(
        llama, sets, texts, window=16, progress=False, bootstrap=Bootstrap(200, seed=3)
    )
    assert matrix.bootstrap == Bootstrap(200, seed=3) and matrix.has_intervals
    assert matrix.windows == [len(w) for w in matrix.window_base_nll]  # type: ignore[union-attr]
    base = matrix.base_estimates()
    assert all(b.low < b.value < b.high for b in base)
    assert base[0].value == pytest.approx(matrix.base[0])
    assert set(matrix.dominance_tests()) == {"en", "fr"}


def test_ppl_job_writes_bounds_with_its_settings(tmp_path: Path, texts) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.pipelines.ppl import PplConfig, run_ppl

    files = {}
    for language in ("en", "fr"):
        files[language] = str(tmp_path / f"{language}.txt")
        Path(files[language]).write_text("\n".join(texts[language] * 5) + "\n")
    config = PplConfig(
        model="tiny-llama",
        languages=("en", "fr"),
        text_files=files,
        split="train",
        max_tokens=96,
        window=32,
        output=tmp_path / "out",
        resamples=300,
        confidence=0.9,
    )
    report = run_ppl(config, progress=False, log=lambda _: None)
    table = json.loads((tmp_path / "out" / "perplexity.json").read_text())
    en = report.perplexities["en"]  # type: ignore[index]
    assert table["en"]["windows"] == en.windows >= 3 and table["en"]["level"] == 0.9
    assert table["en"]["ppl_low"] == en.low < table["en"]["ppl"] < table["en"]["ppl_high"]


# ----------------------------------------------------------------------------- other results


def test_selection_sweep_and_deactivation_values_resample_like_the_matrix(tmp_path: Path) -> None:
    """Both results built from synthetic windows: each estimate is the paired column
    estimate of its windows; tables, plots and old files follow."""
    from lsn_mech.experiments.deactivation_values import DeactivationValuePPL
    from lsn_mech.experiments.selection import SelectionSweep

    m = synthetic_matrix([[0.0, 0.0], [0.2, 0.05]])
    settings = m.bootstrap
    sweep = SelectionSweep(
        language="l0",
        ratios=[0.0, 0.05],
        languages=m.columns,
        base=m.base,
        ppl=[m.base, m.ppl[1]],  # ratio 0 selects nothing: the base, as selection_sweep does
        n_neurons=[0, 10],
        per_layer=[[0], [10]],
        tokens=m.tokens,
        provenance=m.provenance,
        window_tokens=m.window_tokens,
        window_base_nll=m.window_base_nll,
        window_nll=[m.window_base_nll, m.window_nll[1]],  # type: ignore[index,list-item]
    )
    column = pi.column_resamples(
        m.window_base_nll[1],  # type: ignore[index]
        [m.window_nll[1][1]],  # type: ignore[index]
        m.window_tokens[1],  # type: ignore[index]
        pi.column_settings(settings, 1),
    )
    assert sweep.estimates("ratio")[1][1] == column.estimate(0, "ratio")
    assert sweep.estimates("delta")[0][0].cells() == [0.0, 0.0, 0.0]
    assert sweep.estimates("ratio")[1][0].low > 1
    header, _ = sweep.tabulate("ratio", intervals=True)
    assert header == ["ratio", "n_neurons", "l0", "l0_low", "l0_high", "l1", "l1_low", "l1_high"]
    assert sweep.plot().data[0].error_y.array is not None and "] " in str(sweep).split("\n")[3]

    values = DeactivationValuePPL(
        values=["zero"],
        languages=m.columns,
        columns=m.columns,
        base=m.base,
        ppl=[[[m.ppl[1][0], None], [None, m.ppl[1][1]]]],
        n_neurons=[10, 10],
        written=[[0.0, 0.0]],
        tokens=m.tokens,
        provenance=m.provenance,
        window_tokens=m.window_tokens,
        window_base_nll=m.window_base_nll,
        window_nll=[[[m.window_nll[1][0], None], [None, m.window_nll[1][1]]]],  # type: ignore[index]
    )
    assert values.own_estimates("ratio")[0][1] == column.estimate(0, "ratio")
    assert values.matrix_estimates("zero", "ratio")[0][1] is None
    long_header, long_rows = values.tabulate(form="long", intervals=True)
    assert len(long_rows) == 2 and long_header[5:8] == ["ppl", "ppl_low", "ppl_high"]
    assert values.plot("ratio").data[0].error_y.array[1] > 0
    path = values.save(tmp_path / "v.json")
    old = json.loads(path.read_text())
    for key in ("window_tokens", "window_base_nll", "window_nll"):
        del old[key]
    path.write_text(json.dumps(old))
    loaded = DeactivationValuePPL.load(path)
    assert loaded.own("ratio") == values.own("ratio")
    assert not loaded.own_estimates("ratio")[0][0].has_interval and "[" not in str(loaded)
