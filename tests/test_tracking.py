"""Training runs people can follow: the finetuning loops report to TensorBoard or W&B.

The event files are read back with TensorBoard's own reader and compared with what the
loops return; a W&B run is written offline (no network here) and read as bytes; a
missing package or login is refused before a single optimiser step.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_selective import PAIRS, make_batches, neurons_of
from test_transfer import FAST, toy_task

from lsn_mech.cli import main
from lsn_mech.errors import InvalidSettingError, LsnMechError, MissingDependencyError
from lsn_mech.models import build_tiny
from lsn_mech.pipelines import JOBS
from lsn_mech.pipelines import jobs as job_table
from lsn_mech.training import baselines, finetune_classifier, selective_finetune
from lsn_mech.training.selective import TrainingLog
from lsn_mech.training.tracking import REPORT_TO, Tracker, check_report_to, make_tracker

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="reading event files needs tensorboard (pip install 'lsn-mech[tracking]')",
)

STEPS = 3


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard run folder: ``[(step, value), ...]``."""
    reader = event_accumulator.EventAccumulator(str(run))
    reader.Reload()
    return {
        tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]
    }


def as_float32(values: list[float]) -> list[float]:
    """TensorBoard stores scalars as float32: the exact values it holds for ``values``."""
    return [float(np.float32(v)) for v in values]


def selective_run(steps: int = STEPS, **kwargs: object) -> TrainingLog:
    """``steps`` turns of LANDeRMT masks on a fresh tiny Llama, pairs alternating."""
    model = build_tiny("tiny-llama").model
    general, specific = neurons_of(model)
    masks = baselines.landermt(model, PAIRS, general, specific)
    batches = {pair: make_batches(steps, seed=i) for i, pair in enumerate(PAIRS)}
    return selective_finetune(
        model, batches, masks, steps=steps, lr=1e-2, grad_accumulation=1, progress=False, **kwargs
    )


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingLog, Path]:
    runs = tmp_path_factory.mktemp("tensorboard") / "runs"
    return selective_run(report_to="tensorboard", run_dir=runs, run_name="lg"), runs / "lg"


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingLog, Path]:
    """The same run with ``report_to="none"``, from inside an empty working folder."""
    folder = tmp_path_factory.mktemp("quiet")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return selective_run(report_to="none"), folder


# ----- TensorBoard --------------------------------------------------------------------------


def test_selective_finetuning_writes_the_logged_losses_to_tensorboard(
    tensorboard_run: tuple[TrainingLog, Path],
) -> None:
    log, run = tensorboard_run
    found = scalars(run)
    steps = list(range(STEPS))
    assert [s for s, _ in found["train/loss"]] == steps
    assert [v for _, v in found["train/loss"]] == as_float32(log.losses())
    assert [v for _, v in found["train/learning_rate"]] == as_float32([1e-2] * STEPS)
    for pair in PAIRS:  # each pair's curve holds its own turns (round robin)
        tag = f"train/loss_{pair[0]}-{pair[1]}"
        mine = [s for s in log.steps if s.pair == pair]
        assert found[tag] == list(zip([s.step for s in mine], as_float32(log.losses(pair))))
    per_second = [s.tokens / s.seconds for s in log.steps]
    assert [v for _, v in found["train/target_tokens_per_second"]] == as_float32(per_second)
    assert all(v > 0 for v in per_second)


def test_the_same_losses_with_and_without_a_tracker(
    tensorboard_run: tuple[TrainingLog, Path], quiet_run: tuple[TrainingLog, Path]
) -> None:
    assert tensorboard_run[0].losses() == quiet_run[0].losses()  # reporting only reads


def test_report_to_none_writes_nothing(quiet_run: tuple[TrainingLog, Path], tmp_path: Path) -> None:
    log, folder = quiet_run
    assert len(log.steps) == STEPS and list(folder.iterdir()) == []
    tracker = make_tracker("none", tmp_path / "runs", "x")
    tracker.log({"train/loss": 1.0}, step=0)
    tracker.finish()
    assert tracker.directory is None and list(tmp_path.iterdir()) == []


def test_the_classifier_writes_its_losses_to_tensorboard(tmp_path: Path, llama) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(FAST, epochs=1.5)  # 3 steps of 4 rows
    classifier = finetune_classifier(
        llama, toy_task(), config=config, progress=False, report_to="tensorboard", run_dir=tmp_path
    )
    found = scalars(tmp_path / "classifier_run")
    losses = classifier.record.losses
    assert len(found["train/loss"]) == classifier.record.steps == len(losses) == 3
    assert [v for _, v in found["train/loss"]] == as_float32(losses)
    assert [s for s, _ in found["train/loss"]] == list(range(len(losses)))
    # the linear schedule: the logged rate is the one each step used, decaying
    rates = [v for _, v in found["train/learning_rate"]]
    assert rates[-1] < max(rates) <= FAST.lr
    for tag in ("train/examples_per_second", "train/tokens_per_second", "train/grad_norm"):
        assert len(found[tag]) == len(losses) and all(v > 0 for _, v in found[tag]), tag


def test_a_tracker_handed_in_stays_open_for_the_evaluation(tmp_path: Path) -> None:
    with make_tracker("tensorboard", tmp_path, "mine", {"method": "lg"}) as tracker:
        log = selective_run(steps=1, report_to=tracker)
        tracker.log({"eval/bleu_en-fr": 12.5}, step=len(log.steps))
    found = scalars(tmp_path / "mine")
    assert found["eval/bleu_en-fr"] == [(1, 12.5)]
    assert len(found["train/loss"]) == 1


# ----- refused before training ------------------------------------------------------------


def test_a_missing_package_is_refused_before_any_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    model = build_tiny("tiny-llama").model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    general, specific = neurons_of(model)
    masks = baselines.landermt(model, PAIRS, general, specific)
    batches = {pair: make_batches(2, seed=i) for i, pair in enumerate(PAIRS)}
    with pytest.raises(MissingDependencyError) as caught:
        selective_finetune(
            model, batches, masks, steps=1, report_to="tensorboard", run_dir=tmp_path
        )
    message = str(caught.value)
    assert "pip install 'lsn-mech[tracking]'" in message and "\n" not in message
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(MissingDependencyError, match=r"lsn-mech\[tracking\]"):
        finetune_classifier(llama, toy_task(), config=FAST, report_to="tensorboard")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["TensorBoard", "tb", "", "all"])
def test_an_unknown_reporter_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSettingError, match="none, tensorboard, wandb"):
        check_report_to(bad)
    with pytest.raises(InvalidSettingError, match="report_to"):
        selective_run(report_to=bad)


# ----- Weights & Biases ------------------------------------------------------------------


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No login anywhere: no key, an empty HOME and netrc, W&B's own folders in tmp."""
    pytest.importorskip("wandb")
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def settled(path: Path, timeout: float = 30.0) -> bytes:
    """The run file once W&B's writer has flushed it: its service writes the records
    asynchronously, up to about a second after ``run.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while b"train/loss" not in (data := path.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return data


def test_wandb_offline_writes_a_run_with_the_logged_losses(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = selective_run(report_to="wandb", run_dir=wandb_env / "runs", run_name="lg")
    (run,) = (wandb_env / "runs" / "wandb").glob("offline-run-*")
    (data,) = run.glob("run-*.wandb")
    written = settled(data)  # protobuf records: keys and JSON values stay readable
    assert b"train/loss" in written and b"lsn-mech" in written
    for loss in log.losses():
        assert json.dumps(loss).encode() in written


def test_wandb_disabled_writes_nothing(wandb_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log = selective_run(steps=1, report_to="wandb", run_dir=wandb_env / "runs")
    assert len(log.steps) == 1
    assert not list((wandb_env / "runs").rglob("*.wandb"))


def test_wandb_online_without_a_login_says_what_to_set(wandb_env: Path) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        selective_run(report_to="wandb", run_dir=wandb_env / "runs")
    assert "WANDB_API_KEY" in str(caught.value) and "WANDB_MODE=offline" in str(caught.value)
    assert not (wandb_env / "runs").exists()


# ----- the jobs ----------------------------------------------------------------------------


def test_the_job_table_lists_the_library_reporters() -> None:
    assert job_table.REPORT_TO == REPORT_TO
    for name in ("landermt", "transfer"):
        assert JOBS[name].choices["report_to"] == REPORT_TO
        assert JOBS[name].config().report_to == "none"


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("lsn-mech: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("name", ["landermt", "transfer"])
def test_a_bad_report_to_flag_is_one_line_and_exit_2(name: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:  # argparse refuses it, as every bad choice
        main([name, "--report-to", "bogus", "--output", str(out)])
    assert done.value.code == 2
    assert "--report-to" in error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["landermt", "transfer"])
def test_a_job_without_tensorboard_stops_before_loading_the_model(  # type: ignore[no-untyped-def]
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import lsn_mech.models

    monkeypatch.setitem(sys.modules, "tensorboard", None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before --report-to was checked")

    monkeypatch.setattr(lsn_mech.models, "load_model", refuse)
    out = tmp_path / "out"
    assert main([name, "--report-to", "tensorboard", "--output", str(out)]) == 2
    line = error_line(capsys.readouterr().err)
    assert "--report-to" in line and "pip install 'lsn-mech[tracking]'" in line
    assert not out.exists()


def test_a_landermt_method_reports_training_and_scores_under_output_runs(
    tmp_path: Path, llama
) -> None:  # type: ignore[no-untyped-def]
    """One trained method of the job (the stages before it are not what is tested)."""
    from types import SimpleNamespace

    from test_pipeline_landermt import tiny_config

    from lsn_mech.neurons import NeuronSet
    from lsn_mech.pipelines.landermt import load_translation_data, run_method, training_batches

    config = tiny_config(
        tmp_path,
        directions=("en-fr",),
        train_pairs=8,
        test_pairs=1,
        max_new_tokens=2,
        layer_batches=1,
        awareness_batches=1,
        report_to="tensorboard",
    )
    train, test = load_translation_data(config)
    batches = training_batches(llama.tokenizer, train, config)
    general = NeuronSet([[0, 1, 2]] * llama.cfg.n_layers, d_mlp=llama.cfg.d_mlp)
    run = run_method(
        "lg",
        llama,
        llama.tokenizer,
        batches,
        test,
        config,
        layers=[0],
        split=SimpleNamespace(general=general),
        awareness=None,
        progress=False,
    )
    runs = config.output / "runs"
    assert [p.name for p in runs.iterdir()] == ["lg"]
    found = scalars(runs / "lg")
    assert [v for _, v in found["train/loss"]] == as_float32(run.log.losses())
    assert len(run.log.steps) == config.steps
    assert found["eval/bleu_en-fr"] == [(config.steps, float(np.float32(run.result.bleu["en-fr"])))]
    assert found["eval/chrf_en-fr"] == [(config.steps, float(np.float32(run.result.chrf["en-fr"])))]


def test_library_errors_are_lsn_mech_errors() -> None:
    assert issubclass(MissingDependencyError, LsnMechError)
    assert issubclass(MissingDependencyError, ImportError)
    assert repr(Tracker("none")) == "Tracker('none')"
