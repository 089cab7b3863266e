"""The lsn-mech command on a tiny model and local text files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsn_mech.cli import build_parser, main
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.stats import ActivationStats


@pytest.fixture
def text_files(tmp_path: Path, texts) -> list[str]:  # type: ignore[no-untyped-def]
    files = []
    for language in ("en", "fr"):
        path = tmp_path / f"{language}.txt"
        path.write_text("\n".join(texts[language] * 3) + "\n")
        files.append(f"{language}={path}")
    return files


def test_stats_command_writes_resumable_statistics(tmp_path, text_files, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    argv = [
        "stats",
        "--model",
        "tiny-llama",
        "--text-files",
        *text_files,
        "--split",
        "train",
        "--max-tokens",
        "100",
        "--window",
        "32",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokens"] == {"en": 100, "fr": 100}
    stats = ActivationStats.load(out / "stats.safetensors")
    assert stats.languages == ["en", "fr"]
    assert main(argv) == 0  # finished runs are reloaded, not recomputed
    assert ActivationStats.load(out / "stats.safetensors").equal(stats)


def test_ppl_command_with_and_without_neurons(tmp_path, text_files) -> None:  # type: ignore[no-untyped-def]
    common = [
        "--model",
        "tiny-llama",
        "--text-files",
        *text_files,
        "--split",
        "train",
        "--languages",
        "en,fr",
        "--window",
        "32",
        "--max-tokens",
        "200",
    ]
    assert main(["ppl", *common, "--output", str(tmp_path / "plain")]) == 0
    table = json.loads((tmp_path / "plain" / "perplexity.json").read_text())
    assert set(table) == {"en", "fr"} and table["en"]["ppl"] > 1.0
    neurons = LanguageNeurons(
        {"en": NeuronSet([[1], [2], [3]], d_mlp=128), "fr": NeuronSet([[4], [], []], d_mlp=128)}
    )
    path = neurons.save(tmp_path / "neurons")
    assert main(["ppl", *common, "--neurons", str(path), "--output", str(tmp_path / "m")]) == 0
    for name in ("ppl_matrix.json", "ppl_matrix.csv", "ppl_matrix.html"):
        assert (tmp_path / "m" / name).exists()


def test_errors_are_reported_with_their_fix(tmp_path, text_files, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        [
            "ppl",
            "--model",
            "tiny-llama",
            "--text-files",
            *text_files,
            "--languages",
            "de",
            "--split",
            "train",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "lsn-mech: error:" in error and "'de'" in error


def test_info_and_help(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    assert "transformer-lens" in shown and "gemma-3-270m" in shown
    help_text = build_parser().format_help()
    assert "stats" in help_text and "ppl" in help_text


def test_ppl_defaults_to_the_languages_of_the_files(tmp_path, text_files) -> None:  # type: ignore[no-untyped-def]
    argv = [
        "ppl",
        "--model",
        "tiny-llama",
        "--text-files",
        *text_files,
        "--split",
        "train",
        "--window",
        "32",
        "--max-tokens",
        "64",
        "--output",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert set(json.loads((tmp_path / "perplexity.json").read_text())) == {"en", "fr"}
