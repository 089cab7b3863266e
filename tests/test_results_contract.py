"""The result contract (`lsn_mech.results.Result`): every result class saves and loads
equal, checks its format tag, writes its declared table, and reads files in the layout
the code before the contract wrote."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import lsn_mech.evaluate.translation as translation_module
import lsn_mech.results as results_module
from lsn_mech.evaluate.ppl_matrix import PPLChangeMatrix
from lsn_mech.evaluate.qa import QAResult, QAScores
from lsn_mech.evaluate.translation import TranslationResult, TranslationScores, TranslationTable
from lsn_mech.experiments import (
    LanguageDominance,
    LanguageSetDependency,
    LayerDistribution,
    MethodOverlap,
    OverlapResult,
    SelectionSweep,
    SentenceSimilarity,
    SteeringResult,
)
from lsn_mech.experiments.deactivation_values import DeactivationValuePPL
from lsn_mech.experiments.projection import NeuronProjection
from lsn_mech.experiments.steer import Generation
from lsn_mech.experiments.transfer import TransferTable
from lsn_mech.pipelines.landermt import MethodResult, MethodRun
from lsn_mech.provenance import Provenance
from lsn_mech.results import (
    Result,
    ResultFormatError,
    ResultOperationError,
    ResultTable,
    read_result_json,
)
from lsn_mech.training.selective import TrainingLog, TrainingStep

PROV = Provenance(
    model_id="tiny",
    corpus="bible",
    corpus_hash="abc",
    method="test",
    parameters={"k": 1, "rate": 0.01, "langs": ["en", "fr"]},
    library_version="0.0",
    created="2026-01-01T00:00:00+00:00",
)
BLEU = TranslationScores(bleu=12.5, chrf=40.25, bleu_signature="b", chrf_signature="c", n=2)


def samples() -> dict[type[Result], Result]:
    """One small hand-made instance of every result class."""
    return {
        LayerDistribution: LayerDistribution(
            languages=["en", "fr"],
            counts=[[2, 1], [1, 0]],
            union=[2, 1],
            shared=[1, 0],
            d_mlp=4,
            provenance=PROV,
        ),
        OverlapResult: OverlapResult(
            languages=["en", "fr"], intersection=[[3, 1], [1, 2]], provenance=PROV
        ),
        MethodOverlap: MethodOverlap(
            names=["LAPE", "AP"],
            languages=["en"],
            size_a=[3],
            size_b=[2],
            intersection=[1],
            per_layer_a=[[2, 1]],
            per_layer_b=[[1, 1]],
            per_layer_intersection=[[1, 0]],
            d_mlp=4,
            provenance=PROV,
        ),
        LanguageSetDependency: LanguageSetDependency(
            names=["A", "B"],
            set_a=["en", "fr"],
            set_b=["en", "zh"],
            languages=["en"],
            size_a=[3],
            size_b=[4],
            intersection=[2],
            totals_a=[3, 2],
            totals_b=[4, 1],
            provenance=PROV,
        ),
        DeactivationValuePPL: DeactivationValuePPL(
            values=["zero", "-10"],
            languages=["en"],
            columns=["en"],
            base=[10.0],
            ppl=[[[11.5]], [[12.0]]],
            n_neurons=[3],
            written=[[0.0], [-10.0]],
            tokens=[100],
            provenance=PROV,
        ),
        SelectionSweep: SelectionSweep(
            language="fr",
            ratios=[0.01, 0.02],
            languages=["en", "fr"],
            base=[10.0, 12.0],
            ppl=[[10.5, 14.0], [11.0, 20.0]],
            n_neurons=[4, 8],
            per_layer=[[2, 2], [4, 4]],
            tokens=[50, 60],
            provenance=PROV,
        ),
        NeuronProjection: NeuronProjection(
            name="general",
            layer=1,
            n_neurons=5,
            languages=["en", "fr"],
            points=[[0.5, -1.0], [1.5, 2.0]],
            explained=[0.6, 0.3],
            separation=1.0,
            separation_2d=0.5,
            provenance=PROV,
        ),
        LanguageDominance: LanguageDominance(
            languages=["en", "fr"],
            matrix=[[[1.0, 0.5], [0.5, 1.0]], [[0.9, 0.1], [0.2, 0.8]]],
            scores=[[0.5, 0.25], [0.75, 0.125]],
            n_texts=3,
            pooling="mean",
            provenance=PROV,
        ),
        SentenceSimilarity: SentenceSimilarity(
            languages=["en", "fr"],
            matrix=[[[1.0, 1.0], [0.5, 0.25]], [[0.5, 0.25], [1.0, 1.0]]],
            mean=[0.5, 0.25],
            n_texts=3,
            pooling="mean",
            provenance=PROV,
        ),
        SteeringResult: SteeringResult(
            settings=["none", "cross"],
            languages=["en"],
            target="fr",
            generations=[
                Generation("none", "en", "en", "Hi", "Hello", "en", True, 3),
                Generation("cross", "en", "fr", "Hi", "", None, False, 0),
            ],
            provenance=PROV,
        ),
        TransferTable: TransferTable(
            rows=[{"setup": "a", "language": "vi"}],
            columns=["none", "zero"],
            cells=[
                {
                    "none": {"accuracy": 0.5, "macro_f1": 0.4, "n": 10},
                    "zero": {"accuracy": 0.25, "macro_f1": 0.2, "n": 10},
                }
            ],
            training={"steps": {"value": 3}},
            provenance=PROV,
        ),
        PPLChangeMatrix: PPLChangeMatrix(
            rows=["en", "random:en"],
            columns=["en", "fr"],
            base=[10.0, 20.0],
            ppl=[[15.0, 21.0], [10.5, 20.5]],
            tokens=[100, 120],
            provenance=PROV,
        ),
        TranslationResult: TranslationResult(
            src_lang="en",
            tgt_lang="fr",
            shots=0,
            scores=BLEU,
            prompts=["p1", "p2"],
            hypotheses=["h1", "h2"],
            references=["r1", "r2"],
            sources=["s1", "s2"],
            provenance=PROV,
        ),
        TranslationTable: TranslationTable(
            scores={"en-fr": BLEU, "fr-en": dataclasses.replace(BLEU, bleu=3.0)},
            setting="0-shot",
            provenance=PROV,
        ),
        QAResult: QAResult(
            language="vi",
            scores=QAScores(exact_match=50.0, f1=75.0, n=2),
            ids=["0", "1"],
            predictions=["a", "b c"],
            references=[["a"], ["b", "c d"]],
            exact_match=[100.0, 0.0],
            f1=[100.0, 50.0],
            provenance=PROV,
        ),
        TrainingLog: TrainingLog(
            steps=[
                TrainingStep(step=0, pair=("en", "fr"), loss=2.5, lr=0.01, seconds=0.5, tokens=8),
                TrainingStep(step=1, pair=("fr", "en"), loss=2.25, lr=0.01, seconds=0.5, tokens=9),
            ],
            trainable_parameters=42,
            provenance=PROV,
        ),
    }


SAMPLES = samples()


def test_every_result_class_has_a_sample() -> None:
    """A new result class must join SAMPLES (and so every test below)."""
    registered = {
        cls
        for cls in results_module._RESULT_CLASSES.values()
        if cls.__module__.startswith("lsn_mech")
    }
    assert registered == set(SAMPLES)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_round_trip_save_load_equal(cls: type[Result], tmp_path: Path) -> None:
    result = SAMPLES[cls]
    path = result.save(tmp_path / "result")
    assert path == tmp_path / "result.json"
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == f"lsn_mech.{cls.__name__}"
    loaded = cls.load(path)
    assert type(loaded) is cls and loaded == result
    assert cls.load(tmp_path / "result") == result  # the suffix may be left out
    assert cls.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_declared_table_feeds_csv_pandas_and_html(cls: type[Result], tmp_path: Path) -> None:
    result = SAMPLES[cls]
    header, rows = result.tabulate()
    lines = result.to_csv(tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",") == list(header)
    assert len(lines) == len(rows) + 1
    frame = result.to_pandas()
    assert list(frame.columns) == list(header) and len(frame) == len(rows)
    page = result._repr_html_()
    assert page is not None and cls.__name__ in page and "<table" in page


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_wrong_or_missing_tag_names_the_class_to_use(cls: type[Result], tmp_path: Path) -> None:
    other = OverlapResult if cls is not OverlapResult else LayerDistribution
    path = SAMPLES[other].save(tmp_path / "other.json")
    with pytest.raises(ResultFormatError, match=f"{other.__name__}.load"):
        cls.load(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["format"]
    untagged = tmp_path / "untagged.json"
    untagged.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ResultFormatError, match=rf"no 'format' tag.*{cls.__name__}\.save"):
        cls.load(untagged)


def test_other_bad_files(tmp_path: Path) -> None:
    (tmp_path / "text.json").write_text("not json", encoding="utf-8")
    with pytest.raises(ResultFormatError, match="not a JSON result file"):
        LayerDistribution.load(tmp_path / "text.json")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ResultFormatError, match="JSON list"):
        LayerDistribution.load(tmp_path / "list.json")
    (tmp_path / "routing.json").write_text('{"format": "lsn_mech.routing"}', encoding="utf-8")
    with pytest.raises(ResultFormatError, match="the class that wrote it"):
        LayerDistribution.load(tmp_path / "routing.json")
    data = SAMPLES[LayerDistribution].to_dict() | {"colour": "red"}
    with pytest.raises(ResultFormatError, match=r"\['colour'\]"):
        LayerDistribution.from_dict(data)
    with pytest.raises(FileNotFoundError):
        LayerDistribution.load(tmp_path / "missing.json")


def test_csv_of_a_hand_made_distribution_and_matrix(tmp_path: Path) -> None:
    distribution = SAMPLES[LayerDistribution].to_csv(tmp_path / "d.csv")
    assert distribution.read_text(encoding="utf-8").splitlines() == [
        "layer,en,fr,union,shared",
        "0,2,1,2,1",
        "1,1,0,1,0",
    ]
    matrix = SAMPLES[PPLChangeMatrix]
    assert matrix.to_csv(tmp_path / "m.csv").read_text(encoding="utf-8").splitlines() == [
        "deactivated,en,fr",
        "none (base),10.0,20.0",
        "en,15.0,21.0",
        "random:en,10.5,20.5",
    ]
    delta = matrix.to_csv(tmp_path / "delta.csv", kind="delta").read_text(encoding="utf-8")
    assert delta.splitlines()[2:] == ["en,5.0,1.0", "random:en,0.5,0.5"]
    assert matrix.to_pandas("ratio")["fr"].tolist() == [20.0, 21.0 / 20.0, 20.5 / 20.0]
    log = SAMPLES[TrainingLog].to_csv(tmp_path / "log.csv").read_text(encoding="utf-8")
    assert log.splitlines() == [
        "step,src,tgt,loss,lr,seconds,tokens",
        "0,en,fr,2.5,0.01,0.5,8",
        "1,fr,en,2.25,0.01,0.5,9",
    ]
    table = SAMPLES[TranslationTable].to_csv(tmp_path / "t.csv").read_text(encoding="utf-8")
    assert table.splitlines()[1] == "en-fr,en,fr,2,12.5,40.25,b,c"


def test_table_methods_are_the_declared_table() -> None:
    qa = SAMPLES[QAResult]
    assert qa.table()["references"].tolist() == [["a"], ["b", "c d"]]
    assert list(SAMPLES[TranslationResult].table().columns) == [
        "source",
        "reference",
        "hypothesis",
        "prompt",
    ]


def test_a_result_without_table_or_plot_says_so() -> None:
    @dataclasses.dataclass
    class Bare(Result):
        value: int
        provenance: Provenance = dataclasses.field(default_factory=Provenance)

    bare = Bare(3)
    assert Bare.format_tag == "lsn_mech.Bare"
    assert bare._repr_html_() is None
    with pytest.raises(ResultOperationError, match="declares no table"):
        bare.to_csv("never.csv")
    with pytest.raises(ResultOperationError, match="no plot"):
        bare.plot()
    assert Bare.from_dict(bare.to_dict()).value == 3


# ----------------------------------------------------------------------- files of the old code
def _write(path: Path, data: Any, indent: int) -> Path:
    path.write_text(json.dumps(data, indent=indent), encoding="utf-8")
    return path


def test_old_ppl_matrix_file_loads(tmp_path: Path) -> None:
    """PPLChangeMatrix.save wrote asdict + provenance + format, indent 2, ASCII."""
    matrix = SAMPLES[PPLChangeMatrix]
    data = dataclasses.asdict(matrix)
    data["provenance"] = PROV.to_dict()
    data["format"] = "lsn_mech.PPLChangeMatrix"
    assert PPLChangeMatrix.load(_write(tmp_path / "m.json", data, 2)) == matrix


def test_old_translation_and_qa_files_load(tmp_path: Path) -> None:
    """The translation stack wrote the format first, then asdict with scores through
    their ``to_dict``, indent 2."""
    result = SAMPLES[TranslationResult]
    fields = dataclasses.asdict(result) | {"scores": BLEU.to_dict(), "provenance": PROV.to_dict()}
    path = _write(tmp_path / "r.json", {"format": "lsn_mech.TranslationResult", **fields}, 2)
    assert TranslationResult.load(path) == result
    assert translation_module.read_scored_result_fields(path, TranslationScores) == {
        **dataclasses.asdict(result),
        "scores": BLEU,
        "provenance": PROV,
    }
    table = SAMPLES[TranslationTable]
    data = {
        "format": "lsn_mech.TranslationTable",
        "scores": {k: v.to_dict() for k, v in table.scores.items()},
        "setting": table.setting,
        "provenance": PROV.to_dict(),
    }
    assert TranslationTable.load(_write(tmp_path / "t.json", data, 2)) == table
    qa = SAMPLES[QAResult]
    fields = dataclasses.asdict(qa) | {"scores": qa.scores.to_dict(), "provenance": PROV.to_dict()}
    path = _write(tmp_path / "qa.json", {"format": "lsn_mech.QAResult", **fields}, 2)
    assert QAResult.load(path) == qa


def test_old_training_log_and_experiment_files_load(tmp_path: Path) -> None:
    log = SAMPLES[TrainingLog]
    data = {
        "format": "lsn_mech.TrainingLog",
        "trainable_parameters": 42,
        "provenance": PROV.to_dict(),
        "steps": [dataclasses.asdict(s) for s in log.steps],
    }
    _write(tmp_path / "log.json", data, 1)
    assert TrainingLog.load(tmp_path / "log") == log
    distribution = SAMPLES[LayerDistribution]
    data = dataclasses.asdict(distribution)
    data["provenance"] = PROV.to_dict()
    data["format"] = "lsn_mech.LayerDistribution"
    assert LayerDistribution.load(_write(tmp_path / "d.json", data, 1)) == distribution


def test_json_helpers_moved_and_still_importable_from_translation(tmp_path: Path) -> None:
    for name in ("write_result_json", "scored_result_fields", "read_scored_result_fields"):
        assert getattr(translation_module, name) is getattr(results_module, name)
    path = results_module.write_result_json({"format": "lsn_mech.X", "é": 1.1}, tmp_path / "x")
    assert path.name == "x.json" and "é" in path.read_text(encoding="utf-8")
    assert read_result_json(path, "lsn_mech.X") == {"é": 1.1}
    assert read_result_json(path) == {"é": 1.1}  # no expectation: the tag is only dropped
    with pytest.raises(ResultFormatError, match="not a Y"):
        read_result_json(path, "lsn_mech.Y")


def test_result_table_is_a_named_pair() -> None:
    header, rows = ResultTable(["a"], [[1]])
    assert header == ["a"] and rows == [[1]]


def test_method_run_has_named_fields_and_unpacks_as_before() -> None:
    row = MethodResult("lora", {"en-fr": 1.0}, {"en-fr": 2.0}, 10, 1.0, 2.0)
    run = MethodRun(row, {"en-fr": "evaluation"}, log="log", model="model")
    assert run.result is row and run.evaluated == {"en-fr": "evaluation"} and run.routing is None
    result, evaluated, (log, model, routing) = run
    assert (result, evaluated, log, model, routing) == (row, run.evaluated, "log", "model", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.log = None  # type: ignore[misc]


def test_scores_are_plain_records() -> None:
    assert BLEU.to_dict() == {
        "bleu": 12.5,
        "chrf": 40.25,
        "bleu_signature": "b",
        "chrf_signature": "c",
        "n": 2,
    }
    assert TranslationScores.from_dict({**BLEU.to_dict(), "extra": 1}) == BLEU
    assert QAScores.from_dict({"exact_match": 1.0, "f1": 2.0, "n": 3}) == QAScores(1.0, 2.0, 3)
    with pytest.raises(ResultFormatError, match=r"\['n'\]"):
        QAScores.from_dict({"exact_match": 1.0, "f1": 2.0})


def test_markdown_table_escapes_pipes_and_writes_non_strings_as_json() -> None:
    table = results_module.markdown_table(
        ["name", "value"], [["a|b", 3], ["two\nlines", {"k": [1, 2]}], ["plain", "0.50"]]
    )
    assert table.split("\n") == [
        "| name | value |",
        "|---|---|",
        "| a\\|b | 3 |",
        '| two lines | {"k": [1, 2]} |',
        "| plain | 0.50 |",
    ]
