"""Dataframes and notebook display: `lsn_mech.display` (colours, truncation, escaping),
``to_pandas(form=...)`` of every result type, neuron set and statistics object (exact
frames on hand-made cases, long ↔ wide consistency) and their ``_repr_html_``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from test_results_contract import PROV, SAMPLES

import lsn_mech.results as results_module
from lsn_mech import display
from lsn_mech.detect.awareness import Awareness
from lsn_mech.detect.awareness_split import AwarenessSplit
from lsn_mech.detect.layer_selection import LayerSelection
from lsn_mech.errors import InvalidSettingError, LsnMechError
from lsn_mech.evaluate.ppl_matrix import PPLChangeMatrix
from lsn_mech.evaluate.translation import TranslationTable
from lsn_mech.experiments import (
    LanguageDominance,
    LayerDistribution,
    OverlapResult,
    SelectionSweep,
    SentenceSimilarity,
    SteeringResult,
)
from lsn_mech.experiments.deactivation_values import DeactivationValuePPL
from lsn_mech.experiments.transfer import TransferTable
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.results import Result, ResultOperationError
from lsn_mech.stats import ActivationStats
from lsn_mech.training.selective import TrainingLog, TrainingStep

LIGHT, MIDDLE, DARK = "#f7fbff", "#6baed6", "#08306b"  # display.SEQUENTIAL
BLUE, WHITE, RED = "#2166ac", "#f7f7f7", "#b2182b"  # display.DIVERGING


def backgrounds(page: str) -> list[str | None]:
    """The background colour of every body cell of the first table, in order."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    cells = re.findall(r"<td([^>]*)>", body)
    return [
        (m.group(1) if (m := re.search(r"background-color:(#[0-9a-f]{6})", c)) else None)
        for c in cells
    ]


# ----------------------------------------------------------------------------- display


def test_sequential_colours_run_from_the_smallest_to_the_largest_value() -> None:
    colours = display.cell_colours([[0.0, 5.0, None], [10.0, float("nan"), 2.5]])
    assert colours == [[LIGHT, MIDDLE, None], [DARK, None, "#b1d4ea"]]
    # 2.5 is a quarter of the way: halfway between the first two stops, by hand
    assert display._mix(display.SEQUENTIAL, 0.25) == (177, 212, 234)
    assert display.cell_colours([[3, 3]]) == [[LIGHT, LIGHT]]  # nothing stands out


def test_diverging_colours_are_centred_and_symmetric() -> None:
    colours = display.cell_colours([[-2.0, 0.0, 1.0, 2.0]], diverging=True)
    # +1 is halfway from white to red: (247+178)/2, (247+24)/2, (247+43)/2, rounded
    assert colours == [[BLUE, WHITE, "#d48891", RED]]
    shifted = display.cell_colours([[1.0, 3.0]], diverging=True, center=1.0)
    assert shifted == [[WHITE, RED]]
    assert display.cell_colours([[0.0, 0.0]], diverging=True) == [[WHITE, WHITE]]


def test_text_colour_reads_on_its_background() -> None:
    assert display.text_colour(DARK) == "#ffffff"
    assert display.text_colour(LIGHT) == "#000000"


def test_cells_are_formatted_compactly() -> None:
    assert display.format_cell(12.3456) == "12.35"
    assert display.format_cell(1 / 3) == "0.3333"
    assert display.format_cell(123456.7) == "123457"
    assert display.format_cell(float("nan")) == "nan"
    assert display.format_cell(None) == ""
    assert display.format_cell(7) == "7"
    assert display.format_cell(["a", "b c"]) == "a | b c"
    cut = display.format_cell("x" * 200)
    assert len(cut) == display.MAX_CELL_CHARS and cut.endswith("…")


def test_a_long_table_is_cut_with_a_marker_and_keeps_its_scale() -> None:
    rows = [[f"r{i}", float(i)] for i in range(25)]
    table = display.Table(["name", "value"], rows, heat=display.numeric_heat(rows), max_rows=20)
    page = display.table_html(table)
    assert page.count("<tr>") == 1 + 20 + 1  # header, 20 rows, the marker
    assert "… 5 more rows (to_pandas() has them all)" in page
    colours = backgrounds(page)
    assert colours[1] == LIGHT  # r0: the smallest value of all 25
    assert colours[-1] != DARK  # r19 is not the largest (r24 is, hidden)
    one = display.table_html(display.Table(["v"], [[1]] * 3, max_rows=2))
    assert "… 1 more row (" in one


def test_text_is_escaped_everywhere() -> None:
    table = display.Table(["<b>col</b>"], [["<script>x</script>"]], legend="a < b")
    page = display.render("Kind <i>", "x & y", table)
    assert "<b>col</b>" not in page and "&lt;b&gt;col&lt;/b&gt;" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Kind &lt;i&gt;" in page and "x &amp; y" in page and "a &lt; b" in page


def test_title_and_counts_line() -> None:
    assert display.title_of("X", PROV) == "X (test, model tiny, corpus bible)"
    assert display.title_of("X", Provenance()) == "X"
    assert display.counts_line([("a", 1), ("b", 2000), ("c", 3)], limit=2) == (
        "a 1, b 2,000, … (1 more)"
    )
    assert display.plural(1, "layer") == "1 layer" and display.plural(2, "layer") == "2 layers"


# ----------------------------------------------------------------------------- every result


def test_every_registered_result_has_frames_and_a_view(tmp_path: Path) -> None:
    """Every `Result` subclass (the registry, with a sample each in test_results_contract):
    each of its forms is a frame with a plain index and unique columns that `to_csv`
    writes alike, an unknown form is refused naming the forms, and the notebook view has
    the class, a summary line and a table."""
    registered = [c for c in results_module._RESULT_CLASSES.values() if c in SAMPLES]
    assert len(registered) == len(SAMPLES) >= 16
    for cls in registered:
        result = SAMPLES[cls]
        assert cls.table_forms and set(cls.table_forms) <= {"long", "wide"}
        for form in cls.table_forms:
            frame = result.to_pandas(form=form)
            assert isinstance(frame, pd.DataFrame) and len(frame) > 0, (cls, form)
            assert isinstance(frame.index, pd.RangeIndex) and frame.columns.is_unique
            header = result.to_csv(tmp_path / f"{cls.__name__}.csv", form=form)
            first = header.read_text(encoding="utf-8").splitlines()[0]
            assert first == ",".join(map(str, frame.columns)), (cls, form)
        default = result.to_pandas()
        pd.testing.assert_frame_equal(default, result.to_pandas(form=cls.table_forms[0]))
        with pytest.raises(ResultOperationError, match=r"no 'tall' table; pass form= one of"):
            result.to_pandas(form="tall")
        page = result._repr_html_()
        assert page is not None and f"<b>{cls.__name__} (test, model tiny" in page
        assert re.search(r"</b>: \S", page), cls  # the one-line summary
        assert "<table>" in page and page.count("<p ") >= 1


def _pivot(long: pd.DataFrame, index: Any, columns: str, values: str) -> pd.DataFrame:
    return long.pivot(index=index, columns=columns, values=values)


def _same(pivot: pd.DataFrame, wide: pd.DataFrame, index: Any, columns: list[str]) -> None:
    expected = wide.set_index(index)[columns]
    got = pivot.loc[expected.index, columns]
    pd.testing.assert_frame_equal(
        got.astype(float), expected.astype(float), check_names=False, check_exact=False
    )


@pytest.mark.parametrize("kind", ["ppl", "delta", "ratio", "log_ratio"])
def test_ppl_matrix_long_is_the_wide_matrix_melted(kind: str) -> None:
    matrix = SAMPLES[PPLChangeMatrix]
    long = matrix.to_pandas(form="long")
    wide = matrix.to_pandas(kind, form="wide").iloc[1:]  # without the base row
    _same(_pivot(long, "deactivated", "evaluated", kind), wide, "deactivated", ["en", "fr"])


def test_ppl_matrix_long_frame_by_hand() -> None:
    long = SAMPLES[PPLChangeMatrix].to_pandas(form="long")
    assert list(long.columns) == [
        "deactivated",
        "evaluated",
        "ppl",
        "base_ppl",
        "delta",
        "ratio",
        "log_ratio",
        "tokens",
    ]
    assert long["deactivated"].tolist() == ["en", "en", "random:en", "random:en"]
    assert long["evaluated"].tolist() == ["en", "fr", "en", "fr"]
    assert long["ppl"].tolist() == [15.0, 21.0, 10.5, 20.5]
    assert long["base_ppl"].tolist() == [10.0, 20.0, 10.0, 20.0]
    assert long["delta"].tolist() == [5.0, 1.0, 0.5, 0.5]
    assert long["ratio"].tolist() == [1.5, 21.0 / 20.0, 1.05, 20.5 / 20.0]
    assert long["log_ratio"].tolist() == pytest.approx(
        [math.log(1.5), math.log(1.05), math.log(1.05), math.log(1.025)]
    )
    assert long["tokens"].tolist() == [100, 120, 100, 120]
    assert long["tokens"].dtype == "int64" and long["ppl"].dtype == "float64"


def test_consistent_long_and_wide_forms_of_every_matrix_result() -> None:
    overlap = SAMPLES[OverlapResult]
    for kind in ("jaccard", "intersection", "fraction"):
        _same(
            _pivot(overlap.to_pandas(form="long"), "language_a", "language_b", kind),
            overlap.to_pandas(kind, form="wide"),
            kind,
            ["en", "fr"],
        )
    similarity = SAMPLES[SentenceSimilarity]
    long = similarity.to_pandas(form="long")
    long["pair"] = long["language_a"] + "-" + long["language_b"]
    _same(_pivot(long, "layer", "pair", "similarity"), similarity.to_pandas(), "layer", ["en-fr"])
    dominance = SAMPLES[LanguageDominance]
    _same(
        _pivot(dominance.to_pandas(form="long"), "layer", "target", "dominance"),
        dominance.to_pandas(),
        "layer",
        ["en", "fr"],
    )
    distribution = SAMPLES[LayerDistribution]
    long = distribution.to_pandas(form="long")
    assert long["share"].tolist() == [2 / 4, 1 / 4, 1 / 4, 0.0]
    _same(_pivot(long, "layer", "language", "neurons"), distribution.to_pandas(), "layer", ["en"])
    sweep = SAMPLES[SelectionSweep]
    for kind in ("ppl", "delta", "log_ratio"):
        wide = sweep.to_pandas(kind, form="wide")
        wide = wide[wide["ratio"] != "base"].astype({"ratio": float})
        long = sweep.to_pandas(form="long")
        _same(_pivot(long, "selection_ratio", "language", kind), wide, "ratio", ["en", "fr"])
    values = SAMPLES[DeactivationValuePPL]
    long = values.to_pandas(form="long")
    own = long[long["language"] == long["evaluated"]]
    _same(
        _pivot(own, "language", "value", "delta"), values.to_pandas(), "language", ["zero", "-10"]
    )
    assert long["written"].tolist() == [0.0, -10.0]
    transfer = SAMPLES[TransferTable]
    for metric in ("accuracy", "macro_f1"):
        _same(
            _pivot(transfer.to_pandas(form="long"), ["setup", "language"], "intervention", metric),
            transfer.to_pandas(metric),
            ["setup", "language"],
            ["none", "zero"],
        )
    table = SAMPLES[TranslationTable]
    for metric in ("bleu", "chrf"):
        _same(
            _pivot(table.to_pandas(form="long"), "src", "tgt", metric),
            table.to_pandas(metric, form="wide"),
            "src",
            ["fr", "en"],
        )
    steering = SAMPLES[SteeringResult]
    long = steering.to_pandas(form="long")
    accuracy = long.groupby(["setting", "language"])["correct"].mean().unstack()
    _same(accuracy, steering.to_pandas(form="wide"), "setting", ["en"])


def test_matrix_views_colour_their_extremes() -> None:
    """PPL matrix: diverging around log ratio 0, the base row uncoloured; overlap: the
    diagonal uncoloured, the pairs on a sequential scale."""
    page = SAMPLES[PPLChangeMatrix]._repr_html_()
    assert page is not None
    colours = backgrounds(page)  # rows: base, en, random:en; 3 cells each
    assert colours[:3] == [None, None, None]
    assert colours[3] is None and colours[4] == RED  # en on en: the largest log ratio
    assert "base PPL en 10.00, fr 20.00" in page and "blue &lt; 0 &lt; red" in page
    three = OverlapResult(
        languages=["a", "b", "c"],
        intersection=[[4, 1, 2], [1, 4, 0], [2, 0, 4]],
        kind="intersection",
        provenance=PROV,
    )
    colours = backgrounds(three._repr_html_())
    assert [colours[i] for i in (1, 6, 11)] == [None, None, None]  # the diagonal
    assert colours[3] == DARK and colours[7] == LIGHT  # a–c (2), b–c (0)
    assert colours[2] == MIDDLE  # a–b (1)


def test_a_long_result_view_is_cut() -> None:
    steps = [TrainingStep(i, ("en", "fr"), 2.0 - i / 100, 0.1, 0.5, 8) for i in range(25)]
    page = TrainingLog(steps=steps, trainable_parameters=7, provenance=PROV)._repr_html_()
    assert page is not None and "… 5 more rows" in page
    assert "25 steps over en→fr; loss 2 → 1.76; 7 trainable parameters" in page


def test_a_name_with_markup_is_escaped_in_a_result() -> None:
    result = OverlapResult(languages=["<b>", "fr"], intersection=[[1, 0], [0, 2]], provenance=PROV)
    page = result._repr_html_()
    assert page is not None and "<b>," not in page and "&lt;b&gt;" in page


def test_forms_that_a_result_does_not_have_are_refused() -> None:
    with pytest.raises(ResultOperationError, match=r"has no 'wide' table.*'long'"):
        SAMPLES[TrainingLog].to_pandas(form="wide")
    assert issubclass(ResultOperationError, LsnMechError)
    assert Result.table_forms == ("long",)


# ----------------------------------------------------------------------------- neurons


def hand_neurons() -> LanguageNeurons:
    return LanguageNeurons(
        {
            "fr": NeuronSet([[0, 3], [2]], d_mlp=4, model_id="m"),
            "x<y": NeuronSet([[3], []], d_mlp=4, model_id="m"),
        },
        provenance=Provenance(method="lape", model_id="m"),
    )


def test_neuron_set_frame_by_hand() -> None:
    frame = hand_neurons()["fr"].to_pandas()
    assert list(frame.columns) == ["layer", "neuron"]
    assert frame.values.tolist() == [[0, 0], [0, 3], [1, 2]]
    assert list(frame.dtypes) == ["int64", "int64"]
    with_site = hand_neurons()["fr"].to_pandas(include_site=True)
    assert with_site["site"].tolist() == ["mlp_post"] * 3
    empty = NeuronSet([[], []], d_mlp=4).to_pandas()
    assert len(empty) == 0 and list(empty.dtypes) == ["int64", "int64"]


def test_language_neurons_frames_by_hand_and_consistent() -> None:
    neurons = hand_neurons()
    long = neurons.to_pandas()
    assert list(long.columns) == ["language", "layer", "neuron"]
    assert long.values.tolist() == [["fr", 0, 0], ["fr", 0, 3], ["fr", 1, 2], ["x<y", 0, 3]]
    assert str(long["layer"].dtype) == "int64" and str(long["neuron"].dtype) == "int64"
    wide = neurons.to_pandas("wide")
    assert list(wide.columns) == ["language", 0, 1]
    assert wide.values.tolist() == [["fr", 2, 1], ["x<y", 1, 0]]
    counted = long.groupby(["language", "layer"]).size().unstack(fill_value=0)
    pd.testing.assert_frame_equal(
        counted.loc[["fr", "x<y"], [0, 1]],
        wide.set_index("language")[[0, 1]],
        check_names=False,
        check_column_type=False,
    )
    assert neurons.to_pandas(include_site=True)["site"].unique().tolist() == ["mlp_post"]
    with pytest.raises(InvalidSettingError, match=r"'long'.*'wide'"):
        neurons.to_pandas("tall")


def test_language_neurons_view() -> None:
    page = hand_neurons()._repr_html_()
    assert "<b>LanguageNeurons (lape, model m)</b>" in page
    assert "2 languages, 4 neurons (3 distinct: 37.5 % of the 8 MLP neurons)" in page
    assert "fr 3, x&lt;y 1" in page and "<y" not in page
    colours = backgrounds(page)  # per row: label, layer 0, layer 1, total
    assert colours == [None, DARK, MIDDLE, None, None, MIDDLE, LIGHT, None]
    set_page = hand_neurons()["fr"]._repr_html_()
    assert "<b>NeuronSet</b>: 3 neurons (37.5 % of 2 layers × 4), site mlp_post, model m" in (
        set_page
    )
    assert backgrounds(set_page)[:3] == [None, DARK, LIGHT]


def test_overlap_matrix_frames() -> None:
    matrix = hand_neurons().overlap_matrix("intersection")
    wide = matrix.to_pandas()
    assert wide.values.tolist() == [["fr", 3, 1], ["x<y", 1, 1]]
    long = matrix.to_pandas("long")
    assert long.values.tolist() == [
        ["fr", "fr", 3],
        ["fr", "x<y", 1],
        ["x<y", "fr", 1],
        ["x<y", "x<y", 1],
    ]
    jaccard = hand_neurons().overlap_matrix().to_pandas("long")
    assert jaccard["jaccard"].tolist() == [1.0, 1 / 3, 1 / 3, 1.0]
    assert "&lt;y" in matrix._repr_html_()


# ----------------------------------------------------------------------------- statistics


def hand_stats() -> ActivationStats:
    positive = torch.tensor([[[1, 4], [2, 0]], [[4, 4], [0, 2]]])  # [layer 2, d_mlp 2, lang 2]
    sums = torch.tensor([[[1.0, -2.0], [3.0, 0.0]], [[0.0, 4.0], [2.0, 2.0]]], dtype=torch.float64)
    return ActivationStats(
        languages=["en", "fr"],
        n_layers=2,
        d_mlp=2,
        sites=("mlp_pre", "mlp_post"),
        tokens=torch.tensor([4, 4]),
        state={
            "mlp_pre/positive": positive,
            "mlp_post/sum": sums,
            "mlp_post/sum_sq": sums.square(),
        },
        accumulators=[],
        provenance=Provenance(model_id="toy"),
    )


def test_stats_summary_by_hand() -> None:
    summary = hand_stats().to_pandas()
    assert list(summary.columns) == [
        "language",
        "site",
        "tokens",
        "n_layers",
        "d_mlp",
        "quantities",
        "mean_probability",
        "mean_activation",
    ]
    assert summary[["language", "site", "tokens", "quantities"]].values.tolist() == [
        ["en", "mlp_pre", 4, "positive"],
        ["en", "mlp_post", 4, "sum, sum_sq"],
        ["fr", "mlp_pre", 4, "positive"],
        ["fr", "mlp_post", 4, "sum, sum_sq"],
    ]
    # en: positive counts 1+2+4+0 = 7 over 4 tokens × 4 neurons; fr: 4+0+4+2 = 10
    assert summary["mean_probability"].tolist()[::2] == [7 / 16, 10 / 16]
    assert summary["mean_activation"].tolist()[1::2] == [6 / 16, 4 / 16]
    assert math.isnan(summary["mean_probability"][1])


def test_stats_per_neuron_forms_only_on_request() -> None:
    stats = hand_stats()
    long = stats.to_pandas("long")  # the first site: mlp_pre, probabilities
    assert list(long.columns) == ["language", "layer", "neuron", "probability"]
    assert long["probability"].tolist() == [0.25, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5]
    post = stats.to_pandas("long", site="mlp_post", layers=[1])
    assert list(post.columns) == ["language", "layer", "neuron", "mean", "std"]
    assert post["layer"].tolist() == [1, 1, 1, 1]
    assert post["mean"].tolist() == [0.0, 0.5, 1.0, 0.5]
    # sum_sq = sum²: E[x²] − E[x]² = sum² (1/4 − 1/16) over the 4 tokens
    assert post["std"].tolist() == pytest.approx([0.0, 0.75**0.5, 3**0.5, 0.75**0.5])
    wide = stats.to_pandas("wide")
    assert list(wide.columns) == ["layer", "neuron", "en", "fr"]
    pivot = long.pivot(index=["layer", "neuron"], columns="language", values="probability")
    _same(pivot, wide, ["layer", "neuron"], ["en", "fr"])
    mean = stats.to_pandas("wide", statistic="mean")  # the first site with sums: mlp_post
    assert mean["en"].tolist() == [0.25, 0.75, 0.0, 0.5]
    for bad in (
        {"form": "tall"},
        {"form": "long", "site": "resid"},
        {"form": "wide", "layers": [2]},
    ):
        with pytest.raises(InvalidSettingError):
            stats.to_pandas(**bad)
    with pytest.raises(InvalidSettingError, match="statistic must be"):
        stats.to_pandas("wide", statistic="p90")


def test_stats_view_is_a_summary() -> None:
    page = hand_stats()._repr_html_()
    assert "<b>ActivationStats (model toy)</b>: 2 languages, 2 layers × 2 (4 MLP neurons)" in page
    assert "tokens en 4, fr 4" in page
    assert page.count("<tr>") == 1 + 4  # one row per language and site, none per neuron


# ----------------------------------------------------------------------------- detect


def test_awareness_layer_selection_and_split_frames() -> None:
    scores = torch.arange(12, dtype=torch.float64).reshape(2, 3, 2)
    awareness = Awareness(
        languages=["en", "fr"],
        layers=[1, 2],
        scores=scores,
        passes=[3, 4],
        losses=[1.0, 2.0],
        n_layers=4,
    )
    wide = awareness.to_pandas()
    assert wide.values.tolist() == [[1, 2.0, 3.0], [2, 8.0, 9.0]]
    long = awareness.to_pandas("long")
    assert len(long) == 2 * 2 * 3 and long["awareness"].tolist()[:3] == [0.0, 2.0, 4.0]
    means = long.groupby(["layer", "language"])["awareness"].mean().unstack()
    _same(means, wide, "layer", ["en", "fr"])
    assert "colour: mean awareness" in awareness._repr_html_()

    selection = LayerSelection(
        pairs=["en-fr", "fr-en"],
        means=[[0.0, 1.0, 3.0, 3.5], [0.0, 2.0, 2.5, 4.0]],
        passes=[1, 1],
        k=2,
    )
    long = selection.to_pandas("long")
    assert long[long["selected"]][["pair", "layer"]].values.tolist() == [
        ["en-fr", 1],
        ["en-fr", 2],
        ["fr-en", 1],
        ["fr-en", 3],
    ]
    _same(_pivot(long, "layer", "pair", "mean"), selection.to_pandas(), "layer", ["en-fr", "fr-en"])
    assert "1*" in selection._repr_html_()  # the shared selection is marked

    split = AwarenessSplit(
        general=NeuronSet([[], [0], [1, 2], []], d_mlp=3),
        specific=LanguageNeurons(
            {
                "en": NeuronSet([[], [1], [], []], d_mlp=3),
                "fr": NeuronSet([[], [], [0], []], d_mlp=3),
            }
        ),
        layers=[1, 2],
        epsilon=0.9,
    )
    long = split.to_pandas()
    assert long.values.tolist() == [
        ["general", 1, 0],
        ["general", 2, 1],
        ["general", 2, 2],
        ["en", 1, 1],
        ["fr", 2, 0],
    ]
    assert split.to_pandas("wide").values.tolist() == [
        ["general", 1, 2],
        ["en", 1, 0],
        ["fr", 0, 1],
    ]
    assert "general 3, en 1, fr 1" in split._repr_html_()


def test_check_form_names_every_form_with_its_rows() -> None:
    forms = {"wide": "layer × pair", "long": "one row per pair and layer"}
    assert display.check_form("long", forms, "LayerSelection") == "long"
    with pytest.raises(InvalidSettingError) as refused:
        display.check_form("tall", forms, "LayerSelection", InvalidSettingError)
    assert str(refused.value) == (
        "LayerSelection.to_pandas(form='tall'): form must be 'wide' (layer × pair) or "
        "'long' (one row per pair and layer)."
    )
    three = {"summary": "a", "long": "b", "wide": "c"}
    with pytest.raises(
        ValueError, match=r"must be 'summary' \(a\), 'long' \(b\) or 'wide' \(c\)\.$"
    ):
        display.check_form("x", three, "ActivationStats")
