"""Intervals on the transfer classifier: accuracy and macro-F1 by bootstrap over test rows,
paired tests between interventions, seeds pooled, and the tables, files and report that
show them. Synthetic predictions with a known true accuracy / macro-F1 check coverage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from lsn_mech import intervals
from lsn_mech.cli import build_parser
from lsn_mech.errors import InvalidSettingError
from lsn_mech.evaluate.classification import (
    ClassificationInputError,
    ClassificationScores,
    accuracy_of,
    classification_change,
    classification_scores,
    macro_f1_of,
    pooled_scores,
)
from lsn_mech.experiments.transfer import TransferExperimentError, TransferTable, pool_seeds
from lsn_mech.intervals import Bootstrap
from lsn_mech.pipelines import TransferConfig
from lsn_mech.pipelines.transfer_report import _delta_lines, _setup_lines, _transfer_lines
from lsn_mech.pipelines.validation import validate_config
from lsn_mech.provenance import Provenance

LABELS = 4
PRIOR = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)  # gold label shares
HIT = torch.tensor([0.9, 0.7, 0.5, 0.3], dtype=torch.float64)  # P(correct | gold label)


def draw(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gold from `PRIOR`; the prediction is right with `HIT` of its gold label, else one
    of the other labels uniformly: a skewed task whose true scores are known exactly."""
    gold = torch.multinomial(PRIOR, n, replacement=True, generator=generator)
    right = torch.rand(n, generator=generator, dtype=torch.float64) < HIT[gold]
    shift = torch.randint(1, LABELS, (n,), generator=generator)
    return torch.where(right, gold, (gold + shift) % LABELS), gold


def true_accuracy() -> float:
    return float((PRIOR * HIT).sum()) * 100


def true_macro_f1() -> float:
    """Population F1 per label: 2 TP / (predicted + gold) with the shares of `draw`."""
    tp = PRIOR * HIT
    wrong = PRIOR * (1 - HIT) / (LABELS - 1)  # spread evenly over the other labels
    predicted = tp + (wrong.sum() - wrong)
    return float((2 * tp / (predicted + PRIOR)).mean()) * 100


def scores_of(n: int, seed: int, bootstrap: Bootstrap = intervals.DEFAULT) -> ClassificationScores:
    predictions, gold = draw(n, torch.Generator().manual_seed(seed))
    return classification_scores(predictions, gold, LABELS, bootstrap=bootstrap)


# ----------------------------------------------------------------------------- statistics


def test_vectorised_macro_f1_equals_torchmetrics_on_every_resample() -> None:
    generator = torch.Generator().manual_seed(0)
    predictions, gold = draw(60, generator)
    indices = torch.randint(60, (25, 60), generator=generator)
    statistic = macro_f1_of(LABELS)
    batch = statistic(predictions[indices].unsqueeze(-1), gold[indices])
    for row, index in enumerate(indices):
        expected = multiclass_f1_score(
            predictions[index], gold[index], num_classes=LABELS, average="macro"
        )
        assert float(batch[row]) == pytest.approx(float(expected) * 100, abs=1e-4)
    accuracy = accuracy_of(predictions[indices].unsqueeze(-1), gold[indices])
    assert accuracy.tolist() == pytest.approx(
        [(predictions[i] == gold[i]).double().mean().item() * 100 for i in indices]
    )


def test_macro_f1_over_runs_is_the_mean_of_each_runs_macro_f1() -> None:
    gold = torch.tensor([0, 1, 2, 2, 1, 0])
    runs = torch.tensor([[0, 1, 1, 2, 1, 0], [2, 2, 2, 2, 2, 2]])
    statistic = macro_f1_of(3)
    each = [float(statistic(run.view(1, -1, 1), gold.view(1, -1))) for run in runs]
    pooled = float(statistic(runs.T.unsqueeze(0), gold.view(1, -1)))
    assert pooled == pytest.approx(sum(each) / 2)
    assert each[1] == pytest.approx(100 * (2 * 2 / (6 + 2)) / 3)  # only label 2 scores


def test_scores_have_intervals_and_keep_rows() -> None:
    scores = classification_scores(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert (scores.accuracy, scores.n) == (75.0, 4)
    assert scores.interval("accuracy").low <= 75.0 <= scores.interval("accuracy").high
    assert scores.predictions == ((0, 1, 1, 2),) and scores.gold == (0, 1, 2, 2)
    assert ClassificationScores.from_dict(json.loads(json.dumps(scores.to_dict()))) == scores
    perfect = classification_scores(torch.arange(5) % 2, torch.arange(5) % 2, 2)
    assert perfect.interval("macro_f1").cells() == [100.0, 100.0, 100.0]
    single = classification_scores(torch.tensor([1]), torch.tensor([1]), 2)
    assert not single.interval().has_interval  # one row: no interval, and JSON keeps None
    assert ClassificationScores.from_dict(json.loads(json.dumps(single.to_dict()))) == single
    with pytest.raises(ClassificationInputError, match=r"0\.\.2"):
        classification_scores(torch.tensor([3]), torch.tensor([0]), 3)
    old = ClassificationScores.from_dict({"accuracy": 50.0, "macro_f1": 40.0, "n": 10})
    assert not old.interval().has_interval and not old.has_rows
    assert str(old) == "acc 50.0 / F1 40.0 (n=10)"


# ----------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_intervals_cover_the_true_score_at_the_nominal_rate(metric: str) -> None:
    truth = true_accuracy() if metric == "accuracy" else true_macro_f1()
    hits, seeds = 0, 200
    for seed in range(seeds):
        found = scores_of(300, 1000 + seed, Bootstrap(resamples=400, seed=seed)).interval(metric)
        hits += found.low <= truth <= found.high
    assert 0.90 <= hits / seeds <= 0.985, hits / seeds


def test_paired_change_covers_the_true_change_and_decides_it() -> None:
    """B flips 10 % of A's right answers to wrong and 5 % of its wrong ones to right: the
    true change is 100 (0.05 · 0.4 − 0.1 · 0.6) = −4 points per row."""
    hits, significant, seeds = 0, 0, 150
    for seed in range(seeds):
        generator = torch.Generator().manual_seed(seed)
        gold = torch.zeros(400, dtype=torch.long)
        right = torch.rand(400, generator=generator) < 0.6
        flip = torch.rand(400, generator=generator)
        after = torch.where(right, flip >= 0.1, flip < 0.05)
        cheap = Bootstrap(resamples=1)  # only the paired test's resamples matter here
        a = classification_scores((~right).long(), gold, 2, bootstrap=cheap)
        b = classification_scores((~after).long(), gold, 2, bootstrap=cheap)
        test = classification_change(b, a, bootstrap=Bootstrap(resamples=400, seed=seed))
        hits += test.difference.low <= -4.0 <= test.difference.high
        significant += test.significant
    assert 0.90 <= hits / seeds <= 0.985
    assert significant / seeds > 0.5  # the paired test has power where the raw CIs overlap


def test_intervals_shrink_as_the_test_set_grows() -> None:
    for metric in ("accuracy", "macro_f1"):
        widths = [scores_of(n, 7).interval(metric).half_width for n in (100, 400, 1600)]
        assert widths[0] > widths[1] > widths[2]
        assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.3)  # ~ 1 / sqrt(n)


def test_paired_change_is_exact_and_refuses_other_rows() -> None:
    a = scores_of(200, 1)
    same = classification_change(a, a)
    assert same.difference.value == 0 and same.p_value == 1.0 and not same.significant
    assert "paired bootstrap" in same.test and "200 test rows" in same.test
    with pytest.raises(ClassificationInputError, match="different rows"):
        classification_change(a, scores_of(200, 2))
    with pytest.raises(ClassificationInputError, match="no per-row predictions"):
        classification_change(a, ClassificationScores(50.0, 40.0, 200))


def test_pooled_scores_mean_sd_and_per_seed_values() -> None:
    gold = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    runs = {
        3: classification_scores(torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), gold, 2),
        5: classification_scores(torch.tensor([0, 1, 0, 1, 1, 0, 1, 0]), gold, 2),
    }
    pooled = pooled_scores(runs)
    summary = pooled.seed_summary("accuracy")
    assert summary.seeds == (3, 5) and summary.values == (100.0, 50.0)
    assert pooled.accuracy == 75.0 and summary.sd == pytest.approx(math.sqrt(1250))
    assert pooled.format("accuracy").startswith("75.0 ± 35.4 [")
    assert pooled.to_dict()["per_seed"]["accuracy"]["values"] == [100.0, 50.0]
    other = classification_scores(torch.tensor([0, 1]), torch.tensor([0, 1]), 2)
    with pytest.raises(ClassificationInputError, match="same rows"):
        pooled_scores({0: runs[3], 1: other})


# ----------------------------------------------------------------------------- tables


def synthetic_table(bootstrap: Bootstrap = intervals.DEFAULT, seed: int = 0) -> TransferTable:
    """Two target rows on the same 300 test rows: "zero" breaks a third of the right
    answers (a real change), "p90" changes one row (no decided change)."""
    predictions, gold = draw(300, torch.Generator().manual_seed(seed))
    every_third = torch.arange(300) % 3 == 0
    broken = torch.where((predictions == gold) & every_third, (gold + 1) % LABELS, predictions)
    nudged = predictions.clone()
    nudged[0] = (nudged[0] + 1) % LABELS

    def cell(p: torch.Tensor) -> dict:
        return classification_scores(p, gold, LABELS, bootstrap=bootstrap).to_dict()

    rows = [{"setup": s, "detector": "lape", "language": "vi"} for s in ("none", "target")]
    cells = [{"none": cell(predictions), "zero": cell(broken), "p90": cell(nudged)}] * 2
    provenance = Provenance(
        method="intervention_table", parameters={"intervals": bootstrap.to_dict()}
    )
    return TransferTable(rows, ["none", "zero", "p90"], cells, provenance=provenance)


def test_table_cells_changes_and_files(tmp_path: Path) -> None:
    table = synthetic_table(Bootstrap(resamples=300, seed=2))
    assert table.bootstrap == Bootstrap(resamples=300, seed=2)
    zero, p90 = table.change(0, "zero"), table.change(0, "p90")
    assert zero.significant and zero.difference.value < -10 and zero.p_value < 0.01
    assert not p90.significant and p90.difference.value == pytest.approx(
        table.delta()[0][2], abs=1e-3
    )
    assert table.compare(1, 0, "zero").difference.value == 0.0
    text = str(table)
    assert "accuracy (macro-F1)" in text and "300 resamples" in text and "paired bootstrap" in text
    zero_cell = table.scores(0, "zero").format("accuracy")
    assert f"{zero_cell}*" in text and f"{table.scores(0, 'p90').format('accuracy')}*" not in text
    wide = table.to_csv(tmp_path / "wide.csv").read_text().splitlines()
    assert wide[0] == "setup,detector,language," + ",".join(
        ",".join(intervals.interval_header(c)) for c in ("none", "zero", "p90")
    )
    long = table.to_pandas(form="long")
    assert {"accuracy_low", "macro_f1_high", "accuracy_change_low", "accuracy_p_value"} <= set(
        long.columns
    )
    row = long[(long.setup == "none") & (long.intervention == "zero")].iloc[0]
    assert row.accuracy_change == pytest.approx(zero.difference.value)
    assert row.accuracy_p_value == zero.p_value
    table.save(tmp_path / "t")
    assert TransferTable.load(tmp_path / "t") == table
    figure = table.plot()
    assert "[" in figure.data[0].customdata[0][1] and "p = " in figure.data[0].customdata[0][1]
    bars = table.plot_intervals(delta=True)
    assert [trace.name for trace in bars.data] == ["zero", "p90"]
    assert bars.data[0].error_y.arrayminus[0] == pytest.approx(
        zero.difference.value - zero.difference.low
    )
    assert "<table" in table._repr_html_()
    table.cells[0] = {**table.cells[0], "zero": table.cells[0]["none"]}  # tests follow edits
    assert table.change(0, "zero").difference.value == 0.0 and table.change(1, "zero") == zero


def test_old_tables_load_and_report_points_without_decisions(tmp_path: Path) -> None:
    old = {
        "rows": [{"setup": "none", "detector": "lape", "language": "vi"}],
        "columns": ["none", "zero"],
        "cells": [
            {
                "none": {"accuracy": 47.2, "macro_f1": 40.0, "n": 36},
                "zero": {"accuracy": 41.7, "macro_f1": 35.0, "n": 36},
            }
        ],
        "training": {},
        "provenance": {"method": "intervention_table", "parameters": {}},
        "format": "lsn_mech.TransferTable",
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    table = TransferTable.load(tmp_path / "old.json")
    assert table.bootstrap == Bootstrap() and table.seeds == []
    test = table.change(0, "zero")
    assert test.difference.value == pytest.approx(-5.5) and math.isnan(test.p_value)
    assert not test.significant and "41.7" in str(table) and "*" not in str(table).split("\n")[2]
    assert "not tested" in "".join(_delta_lines(table))
    table.plot()
    table.plot_intervals()
    assert math.isnan(table.to_pandas(form="long")["accuracy_low"][0])


def test_pool_seeds_of_tables() -> None:
    tables = {s: synthetic_table(seed=s) for s in (0, 1)}
    # the tables' gold differs per seed in synthetic_table: pooling refuses it
    with pytest.raises(ClassificationInputError, match="same rows"):
        pool_seeds(tables)
    first = synthetic_table(seed=0)
    again = synthetic_table(seed=0)
    again.cells = [{**c, "p90": c["none"]} for c in again.cells]
    pooled = pool_seeds({4: first, 9: again})
    assert pooled.seeds == [4, 9]
    summary = pooled.scores(0, "p90").seed_summary()
    assert summary.values == pytest.approx((first.score(0, "p90"), again.score(0, "p90")), abs=1e-4)
    assert pooled.score(0, "p90") == pytest.approx(sum(summary.values) / 2, abs=1e-4)
    assert "mean ± sd over seeds 4, 9" in str(pooled)
    assert "accuracy_sd" in pooled.to_pandas(form="long").columns
    with pytest.raises(TransferExperimentError, match="other rows or columns"):
        pool_seeds({0: first, 1: TransferTable(first.rows[:1], first.columns, first.cells[:1])})


def test_report_lines_name_the_test_and_decide_by_it() -> None:
    table = synthetic_table(Bootstrap(resamples=300))
    text = "".join(_delta_lines(table))
    assert "paired bootstrap over the same test rows" in text and "300 resamples" in text
    assert "lowers accuracy" in text and "no decided change" in text
    assert "2 of 4 interventions change accuracy" in text
    transfer = "".join(_transfer_lines(table, LABELS))
    assert "chance is 25.0 %" in transfer and "above chance" in transfer
    assert "setup none" in "".join(_setup_lines(table))


# ----------------------------------------------------------------------------- the job


def test_transfer_config_interval_fields_are_validated_and_parsed() -> None:
    config = TransferConfig(seeds=(0, 1), resamples=200, confidence=0.9, bootstrap_seed=3)
    assert config.seeds == (0, 1) and config.training_seeds() == (0, 1)
    assert config.bootstrap() == Bootstrap(200, 0.9, 3)
    assert TransferConfig(seed=5).training_seeds() == (5,)
    for bad, flag in (
        ({"seeds": (1, 1)}, "--seeds"),
        ({"confidence": 1.5}, "--confidence"),
        ({"resamples": 0}, "--resamples"),
        ({"bootstrap_seed": -1}, "--bootstrap-seed"),
    ):
        with pytest.raises(InvalidSettingError, match=flag):
            validate_config(TransferConfig(**bad))
    args = build_parser().parse_args(
        ["transfer", "--seeds", "0", "1", "2", "--resamples", "200", "--confidence", "0.9"]
    )
    assert list(args.seeds) == [0, 1, 2] and args.resamples == 200 and args.confidence == 0.9


def test_finetuning_table_with_seeds_trains_and_pools_each_seed(tmp_path: Path) -> None:
    from datasets import Dataset

    import lsn_mech as lm
    from lsn_mech.corpora.tasks import ClassificationTask
    from lsn_mech.evaluate import evaluate_classifier
    from lsn_mech.experiments import finetuning_table
    from lsn_mech.models import load_model
    from lsn_mech.neurons import LanguageNeurons, NeuronSet
    from lsn_mech.stats import MomentAccumulator, QuantileAccumulator
    from lsn_mech.training import ClassifierConfig, finetune_classifier

    model = load_model("tiny-llama")
    stats = lm.collect_stats(
        model,
        lm.corpora.bible(["en", "vi"], max_verses_per_language=30),
        max_tokens_per_language=600,
        progress=False,
        accumulators=[MomentAccumulator(("mlp_post",)), QuantileAccumulator(("mlp_post",))],
    )
    texts = [f"{w} {x}" for w in ("abc", "xyz") for x in ("q", "rr", "sss", "t")]
    rows = Dataset.from_dict({"text": texts, "label": [0] * 4 + [1] * 4})
    task = ClassificationTask("toy", ("a", "x"), "en", rows, {"en": rows, "vi": rows})
    rest = [[]] * (model.cfg.n_layers - 1)
    d_mlp = model.cfg.d_mlp
    neurons = LanguageNeurons(
        {"en": NeuronSet([[1, 2], *rest], d_mlp=d_mlp), "vi": NeuronSet([[3], *rest], d_mlp=d_mlp)}
    )
    config = ClassifierConfig(epochs=1, batch_size=4, max_length=16)
    base = finetune_classifier(model, task, config=config, progress=False)
    expected = evaluate_classifier(base, task.test_set("vi"))
    table = finetuning_table(
        model,
        task,
        neurons,
        stats,
        setups=("none", "random"),
        interventions=("none", "zero"),
        config=config,
        base=base,
        seeds=(0, 1),
        progress=False,
        run_dir=tmp_path,
        bootstrap=Bootstrap(resamples=200),
    )
    assert table.seeds == [0, 1] and table.bootstrap == Bootstrap(resamples=200)
    assert set(table.training) == {f"{k} seed {s}" for k in ("none", "random:vi") for s in (0, 1)}
    assert table.training["none seed 0"]["last_loss"] == base.record.losses[-1]
    assert table.scores(0, "none").predictions[0] == expected.predictions[0]
    summary = table.scores(0, "none").seed_summary()
    assert summary.seeds == (0, 1) and summary.values[0] == pytest.approx(expected.accuracy)
    assert "± " in str(table) and table.change(1, "zero").p_value <= 1.0


def test_transfer_job_with_seeds_pools_the_intervention_table(tmp_path: Path) -> None:
    from lsn_mech.pipelines import run_transfer

    config = TransferConfig(
        model="tiny-llama",
        targets=("vi",),
        detection_languages=("en", "vi"),
        detectors=("lape",),
        output=tmp_path / "run",
        stats_tokens=600,
        train_per_genre=2,
        test_per_genre=2,
        interventions=("none", "zero"),
        setups=(),
        ppl_values=("zero",),
        ppl_tokens=64,
        epochs=1,
        max_length=32,
        seeds=(0, 1),
        resamples=100,
    )
    report = run_transfer(config, progress=False, log=lambda line: None)
    table = TransferTable.load(tmp_path / "run" / "interventions.json")
    assert table.seeds == [0, 1] and table.bootstrap == Bootstrap(resamples=100)
    assert set(table.training) == {"none seed 0", "none seed 1"}
    text = report.report_path.read_text()
    assert "mean ± sd over seeds 0, 1" in text and "paired bootstrap over the same" in text
    assert (
        "Zero-shot transfer" in text
        and (tmp_path / "run" / "interventions_intervals.html").exists()
    )
    header = (tmp_path / "run" / "interventions_accuracy.csv").read_text().splitlines()[0]
    assert header.endswith("none,none_low,none_high,zero,zero_low,zero_high")
