"""The LAPE job end to end on a tiny model and local text files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lsn_mech.cli import main
from lsn_mech.errors import LsnMechError
from lsn_mech.evaluate import PPLChangeMatrix
from lsn_mech.neurons import LanguageNeurons, from_lape_file
from lsn_mech.pipelines import LapeConfig, run_lape
from lsn_mech.pipelines.report import dominance_summary


def write_files(tmp_path: Path, texts: dict[str, list[str]]) -> dict[str, str]:
    files = {}
    for language, lines in texts.items():
        path = tmp_path / f"{language}.txt"
        numbered = [f"{i}. {line}" for i, line in enumerate(lines * 20)]  # unique lines
        path.write_text("\n".join(numbered) + "\n")
        files[language] = str(path)
    return files


def test_lape_job_writes_a_complete_report(tmp_path, texts) -> None:  # type: ignore[no-untyped-def]
    config = LapeConfig(
        model="tiny-llama",
        languages=("en", "fr", "zh"),
        output=tmp_path / "out",
        stats_tokens=300,
        eval_tokens=64,
        window=32,
        text_files=write_files(tmp_path, texts),
    )
    report = run_lape(config, progress=False, log=lambda line: None)
    out = config.output
    for name in (
        "report.md",
        "config.json",
        "timings.json",
        "stats/stats.safetensors",
        "neurons.safetensors",
        "random_neurons.safetensors",
        "lape_neurons.pt",
        "ppl_matrix.json",
        "ppl_matrix.csv",
        "ppl_matrix.html",
        "ppl_matrix_random.json",
        "layer_distribution.csv",
        "layer_distribution.html",
        "overlap.csv",
        "overlap.html",
    ):
        assert (out / name).exists(), name
    neurons = LanguageNeurons.load(out / "neurons.safetensors")
    assert neurons == report.neurons
    published = from_lape_file(
        out / "lape_neurons.pt",
        json.loads((out / "lape_neurons.languages.json").read_text()),
        d_mlp=128,
    )
    assert all(published[x] == neurons[x].relabel(model_id=None) for x in neurons.languages)
    random = LanguageNeurons.load(out / "random_neurons.safetensors")
    for language in neurons.languages:
        assert random[language].per_layer() == neurons[language].per_layer()
    matrix = PPLChangeMatrix.load(out / "ppl_matrix.json")
    assert matrix.rows == list(neurons.languages) and matrix.columns == ["en", "fr", "zh"]
    text = (out / "report.md").read_text()
    assert "## Finding" in text and "Random baseline" in text
    assert set(report.seconds) >= {"collect statistics", "PPL-change matrix (LAPE + random rows)"}


def test_dominance_summary_by_hand() -> None:
    lape = PPLChangeMatrix(
        ["a", "b"], ["a", "b"], [10.0, 10.0], [[20.0, 11.0], [12.0, 11.0]], [1, 1]
    )
    rand = PPLChangeMatrix(
        ["a", "b"], ["a", "b"], [10.0, 10.0], [[10.5, 10.0], [10.0, 11.5]], [1, 1]
    )
    summary = dominance_summary(lape, rand)
    assert summary["a"]["diagonal_dominant"] and summary["a"]["beats_random"]
    assert not summary["b"]["diagonal_dominant"]  # 12 on a's column beats 11 on its own
    assert not summary["b"]["beats_random"]  # random raised b's PPL to 11.5 > 11


def test_lape_command(tmp_path, texts) -> None:  # type: ignore[no-untyped-def]
    files = write_files(tmp_path, texts)
    argv = [
        "lape",
        "--model",
        "tiny-llama",
        "--text-files",
        *(f"{k}={v}" for k, v in files.items()),
        "--stats-tokens",
        "200",
        "--eval-tokens",
        "32",
        "--window",
        "32",
        "--top-rate",
        "0.05",
        "--output",
        str(tmp_path / "cli"),
    ]
    assert main(argv) == 0
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["top_rate"] == 0.05 and config["languages"] == ["en", "fr", "zh"]
    neurons = LanguageNeurons.load(tmp_path / "cli" / "neurons.safetensors")
    assert len(neurons.union()) <= round(0.05 * 3 * 128)
    assert torch.is_tensor(neurons.to_mask())


def test_lape_job_runs_the_detector_it_names(tmp_path, texts) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech import detect

    config = LapeConfig(
        model="tiny-llama",
        languages=("en", "fr", "zh"),
        output=tmp_path / "out",
        stats_tokens=300,
        eval_tokens=64,
        window=32,
        detector="lave",
        top_rate=0.05,
        text_files=write_files(tmp_path, texts),
    )
    report = run_lape(config, progress=False, log=lambda line: None)
    expected = detect.lave(report.stats, top_rate=0.05)
    assert report.neurons == expected
    assert report.neurons.provenance.method == expected.provenance.method
    assert json.loads((config.output / "config.json").read_text())["detector"] == "lave"


def test_lape_job_refuses_a_detector_without_statistics_before_any_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name, message in (("pv", "does not read statistics"), ("nope", "available")):
        config = LapeConfig(model="tiny-llama", output=tmp_path / name, detector=name)
        with pytest.raises(LsnMechError, match=message):
            run_lape(config, progress=False, log=lambda line: None)
        assert not (tmp_path / name).exists()
