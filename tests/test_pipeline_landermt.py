"""The LANDeRMT job end to end on a tiny model (a few steps), its report and its command."""

from __future__ import annotations

import json

import pytest
import torch

from lsn_mech.cli import main
from lsn_mech.detect import AwarenessSplit, LayerSelection
from lsn_mech.pipelines import LandermtConfig, run_landermt
from lsn_mech.pipelines.landermt import LandermtConfigError, awareness_batches


def tiny_config(tmp_path, **changes) -> LandermtConfig:  # type: ignore[no-untyped-def]
    values = dict(
        model="tiny-llama",
        directions=("en-fr", "en-zh"),
        output=tmp_path / "landermt",
        train_pairs=40,
        test_pairs=3,
        k=1,
        layer_batches=2,
        awareness_batches=2,
        steps=2,
        batch_size=4,
        max_length=96,
        max_new_tokens=6,
        eval_batch_size=4,
        shots=2,
        resamples=100,  # intervals and tests on 3 sentences: resampling cost, not accuracy
    )
    values.update(changes)
    return LandermtConfig(**values)


def test_landermt_job_writes_a_complete_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path)
    report = run_landermt(config, progress=False, log=lambda _: None)
    out = config.output
    # detection results reload as the library's objects
    assert LayerSelection.load(out / "layers.json").layers() == report.layers.layers()
    split = AwarenessSplit.load(out / "neurons")
    assert split.general == report.split.general and split.layers == report.layers.layers()
    # every method ran on every direction, the frozen entries stayed frozen
    assert list(report.results) == list(config.methods)
    for method, result in report.results.items():
        assert set(result.bleu) == {"en-fr", "en-zh"}
        assert all(0.0 <= v <= 100.0 for v in result.bleu.values())
        if method in ("layers", "lg", "ls", "landermt"):
            assert result.unchanged_outside_masks is True, method
    params = {m: r.trainable_parameters for m, r in report.results.items()}
    assert params["0-shot"] == 0 and params["5-shot"] == 0
    assert params["ls"] < params["landermt"] < params["full"]
    assert params["lg"] < params["landermt"]
    # the report and its data
    text = (out / "report.md").read_text()
    for needle in ("Tables 1–2", "LANDeRMT-LG", "Selected layers", "Sample translations"):
        assert needle in text
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(config.methods)
    assert json.loads((out / "results.json").read_text())["landermt"]["method"] == "landermt"
    for name in (
        "layer_deltas.html",
        "awareness_general.html",
        "bleu.html",
        "projection_specific.html",
    ):
        assert (out / name).exists(), name
    assert (out / "training" / "landermt.json").exists()
    assert (out / "translations" / "5-shot_en-zh.json").exists()


def test_transfer_matrix_has_one_row_per_trained_direction(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(tmp_path, methods=("0-shot",), transfer=True, steps=2)
    report = run_landermt(config, progress=False, log=lambda _: None)
    assert report.transfer is not None
    assert set(report.transfer) == {"en-fr", "en-zh"}
    assert all(set(row) == {"en-fr", "en-zh"} for row in report.transfer.values())
    assert (config.output / "transfer.html").exists()


def test_awareness_data_sources(tmp_path, llama) -> None:  # type: ignore[no-untyped-def]
    batch = {"input_ids": torch.zeros(1, 2, dtype=torch.long)}
    batches = {("en", "fr"): [batch] * 3, ("en", "zh"): [batch] * 3}
    config = tiny_config(tmp_path, awareness_batches=4)
    by_language = awareness_batches(llama.tokenizer, batches, config)
    # en is in both pairs: interleaved from both; fr and zh from their own pair only
    assert len(by_language["en"]) == 4 and len(by_language["fr"]) == 3
    mono = awareness_batches(
        llama.tokenizer, batches, tiny_config(tmp_path, awareness_source="monolingual")
    )
    assert set(mono) == {"en", "fr", "zh"}
    first = mono["fr"][0]
    assert (first["labels"] != -100).any() and (first["labels"][:, 0] == -100).all()


def test_bad_settings_are_refused_with_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LandermtConfigError, match="src-tgt"):
        tiny_config(tmp_path, directions=("enfr",)).check()
    with pytest.raises(LandermtConfigError, match="Unknown methods"):
        tiny_config(tmp_path, methods=("qlora",)).check()
    with pytest.raises(LandermtConfigError, match="--k between 1 and 2"):
        run_landermt(tiny_config(tmp_path, k=4), progress=False, log=lambda _: None)


def test_landermt_command(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "cli"
    code = main(
        [
            "landermt", "--model", "tiny-llama", "--directions", "en-fr", "en-de", "--k", "1",
            "--train-pairs", "20", "--test-pairs", "2", "--steps", "2", "--batch-size", "4",
            "--layer-batches", "1", "--awareness-batches", "1", "--max-new-tokens", "4",
            "--methods", "0-shot", "landermt", "--no-learned-car", "--output", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert "# LANDeRMT report" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["learned_car"] is False and config["directions"] == ["en-fr", "en-de"]
    assert main(["landermt", "--model", "tiny-llama", "--k", "9", "--output", str(out)]) == 2
    assert "--k between 1 and 2" in capsys.readouterr().err


def test_landermt_job_with_seeds_significance_and_resume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tiny_config(
        tmp_path,
        test_pairs=4,
        methods=("0-shot", "lora", "landermt"),
        seeds=(0, 1),
        resume=True,
    )
    messages: list[str] = []
    report = run_landermt(config, progress=False, log=messages.append)
    out = config.output
    lora = report.results["lora"]
    assert set(lora.bleu_per_seed["en-fr"]) == {0, 1}
    summary = lora.seed_summary("en-fr")
    assert summary.mean == pytest.approx(lora.bleu["en-fr"])
    assert lora.estimate("en-fr").value == lora.bleu_per_seed["en-fr"][0]
    assert set(report.results["0-shot"].bleu_per_seed["en-fr"]) == {0}  # no training: one run
    for name in ("lora_en-fr.json", "lora_seed1_en-zh.json", "landermt_seed1_en-fr.json"):
        assert (out / "translations" / name).exists(), name
    # LANDeRMT against 0-shot and LoRA, per direction and metric, one test per seed
    assert {(c.method, c.direction, c.metric) for c in report.significance} == {
        (m, d, x) for m in ("0-shot", "lora") for d in ("en-fr", "en-zh") for x in ("bleu", "chrf")
    }
    assert all(len(c.tests) == 2 for c in report.significance)
    saved = json.loads((out / "significance.json").read_text())
    assert len(saved) == 8 and saved[0]["tests"][0]["test"].startswith("sacreBLEU paired")
    text = (out / "report.md").read_text()
    assert "## Significance" in text and "sacreBLEU paired bootstrap" in text
    scores = (out / "scores.csv").read_text().splitlines()
    assert scores[0] == "method,direction,seed,bleu,bleu_low,bleu_high,chrf,chrf_low,chrf_high"
    assert len(scores) == 1 + 2 * (1 + 2 + 2)
    # resume: every finished run is reused; a run whose record is gone is redone
    (out / "methods" / "lora_seed1.json").unlink()
    messages.clear()
    again = run_landermt(config, progress=False, log=messages.append)
    reused = [m for m in messages if "reused the saved run" in m]
    assert len(reused) == 4 and not any("lora (seed 1)" in m for m in reused)
    assert again.results["landermt"].bleu == report.results["landermt"].bleu
    # other settings: nothing is reused
    messages.clear()
    run_landermt(
        LandermtConfig(**{**config.__dict__, "max_new_tokens": 5, "methods": ("0-shot",)}),
        progress=False,
        log=messages.append,
    )
    assert not any("reused" in m for m in messages)
