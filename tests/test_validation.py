"""Validation before compute: every job refuses a bad setting before its first forward
pass, in one line that names the flag; library calls name the argument."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import lsn_mech as lm
from lsn_mech.errors import (
    DeviceUnavailableError,
    InvalidSettingError,
    LsnMechError,
    MissingLanguageError,
    NeuronShapeMismatchError,
    OutputFolderError,
)
from lsn_mech.models import check_device, check_window, context_length
from lsn_mech.pipelines import validation
from lsn_mech.pipelines.jobs import JOBS
from lsn_mech.pipelines.validation import FIELD_RULES, UNCHECKED_FIELDS, flag

BAD: dict[str, list[Any]] = {
    "model": ["", "  "],
    "dtype": ["float8"],
    "languages": [(), ("en", "en"), ("e n",), ("fr,en",)],
    "text_files": [{"en": "/no/such/file.txt"}, {}],
    "split": ["dev"],
    "nonfinite": ["ignore", ""],
    "window": [1, 0, -5, 2.5, "512", True],
    "batch_size": [0, -1, 1.5],
    "eval_batch_size": [0],
    "max_tokens": [0, -100],
    "stats_tokens": [0],
    "eval_tokens": [0],
    "ppl_tokens": [0],
    "checkpoint_every": [0],
    "neurons": [Path("/no/such/neurons.safetensors")],
    "stats": [Path("/no/such/stats.safetensors")],
    "top_rate": [0, 0.0, 1.5, -0.1, math.nan, math.inf],
    "filter_rate": [-0.1, 1.01, math.nan],
    "activation_bar_ratio": [2.0, -1.0],
    "random_seed": [-1, 2**63],
    "seed": [-1, 1.5],
    "k": [0, -2],
    "attribute_to": ["sideways"],
    "layer_batches": [0],
    "epsilon": [1.5, -0.1, math.nan],
    "awareness_source": ["web"],
    "awareness_batches": [0],
    "awareness_reduce": ["layer"],
    "car_formula": ["1.5", "-0.1", "nan", "papers"],
    "directions": [(), ("en-en",), ("en",), ("en-fr", "en-fr"), ("en-fr-de",)],
    "train_pairs": [0],
    "test_pairs": [0],
    "source": ["", "e n"],
    "targets": [(), ("vi", "vi")],
    "detection_languages": [(), ("en", "en")],
    "finetune_targets": [("v i",)],
    "train_per_genre": [0],
    "test_per_genre": [0],
    "methods": [(), ("nope",), ("full", "full")],
    "steps": [0],
    "grad_accumulation": [0],
    "lr": [0.0, -1e-3, math.inf, math.nan],
    "weight_decay": [-0.01, math.nan],
    "lora_r": [0],
    "lora_alpha": [0, -8],
    "max_length": [1, 0],
    "epochs": [0, 0.0, -1.0, math.nan],
    "shots": [-1],
    "max_new_tokens": [0],
    "interventions": [(), ("p200",), ("bogus",), ("none", "none")],
    "ppl_values": [(), ("none",), ("p-5",)],
    "read_site": ["mlp_mid"],
    "setups": [("sometimes",), ("none", "none")],
    "top_k": [0, -1, 2.5],
    "context": [-1, 1.5],
    "max_neurons": [0],
    "report_to": ["bogus", "TensorBoard", ""],
    "resamples": [0, -1, 2.5],
    "confidence": [0, 1, 1.5, math.nan],
    "bootstrap_seed": [-1, 1.5],
    "seeds": [(), (0, 0), (-1,)],
}
"""Field → values its rule must refuse (out of range, malformed, wrong type)."""

CASES = [
    (name, field, value)
    for name, job in JOBS.items()
    for field in (f.name for f in dataclasses.fields(job.config))
    if field in FIELD_RULES
    for value in BAD[field]
]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: validation must refuse before any load."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(lm.models, "load_model", refuse)


def run_job(name: str, tmp_path: Path, **values: Any) -> None:
    job = JOBS[name]
    config = job.config(output=tmp_path / "out")
    for field, value in values.items():  # set after init: a wrong type gets past the
        setattr(config, field, value)  # run-time type check, as a careless caller's would
    job.run(config, progress=False, log=lambda line: None)


def assert_one_line_naming(error: BaseException, flag_name: str) -> None:
    message = str(error)
    assert "\n" not in message and flag_name in message, message


def test_every_field_of_every_job_has_a_rule_or_says_where_it_is_checked() -> None:
    for name, job in JOBS.items():
        for field in dataclasses.fields(job.config):
            assert field.name in FIELD_RULES or field.name in UNCHECKED_FIELDS, (name, field)
    assert set(BAD) == set(FIELD_RULES)  # every rule is tried below


@pytest.mark.parametrize("name", list(JOBS))
def test_every_default_setting_passes(name: str, tmp_path: Path) -> None:
    config = JOBS[name].config(output=tmp_path / "out")
    validation.validate_config(config)  # no error: the rules refuse no default


@pytest.mark.parametrize(("name", "field", "value"), CASES, ids=lambda v: repr(v)[:24])
def test_a_bad_setting_fails_before_any_model_load_naming_its_flag(
    name: str, field: str, value: Any, tmp_path: Path, no_model: None
) -> None:
    with pytest.raises(LsnMechError) as caught:  # no_model: nothing loaded, nothing run
        run_job(name, tmp_path, **{field: value})
    assert_one_line_naming(caught.value, flag(field))
    assert isinstance(caught.value, ValueError)
    assert not (tmp_path / "out").exists()  # refused before the folder was made


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", list(JOBS))
@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "gpu"])
def test_an_absent_device_fails_before_the_model_loads(
    name: str, device: str, tmp_path: Path, no_model: None
) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(DeviceUnavailableError) as caught:
        run_job(name, tmp_path, device=device)
    assert_one_line_naming(caught.value, "--device")


@pytest.mark.parametrize("name", list(JOBS))
def test_an_output_that_cannot_be_a_folder_is_refused(
    name: str, tmp_path: Path, no_model: None
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for output in (blocker, blocker / "below"):
        with pytest.raises(OutputFolderError) as caught:
            run_job(name, tmp_path, output=output)
        assert_one_line_naming(caught.value, "--output")
        assert isinstance(caught.value, OSError)


def test_prepare_output_creates_the_folder_and_leaves_no_probe(tmp_path: Path) -> None:
    out = validation.prepare_output(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "values", "flag_name"),
    [
        ("stats", {"languages": ("en", "xx")}, "--languages"),
        ("ppl", {"languages": ("qq",)}, "--languages"),
        ("lape", {"languages": ("en", "zz")}, "--languages"),
        ("landermt", {"directions": ("en-xx",)}, "--directions"),
        ("transfer", {"source": "xx", "detection_languages": ("xx", "vi", "hi", "zh")}, "--source"),
        ("transfer", {"targets": ("zz",), "detection_languages": ("en", "zz")}, "--targets"),
    ],
)
def test_a_language_missing_from_the_corpus_is_refused_up_front(
    name: str, values: dict[str, Any], flag_name: str, tmp_path: Path, no_model: None
) -> None:
    with pytest.raises(MissingLanguageError) as caught:
        run_job(name, tmp_path, **values)
    assert_one_line_naming(caught.value, flag_name)


def test_languages_must_be_in_the_text_files(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "en.txt"
    path.write_text("hello\n")
    for name in ("stats", "ppl", "lape"):
        with pytest.raises(MissingLanguageError) as caught:
            run_job(name, tmp_path, languages=("en", "fr"), text_files={"en": str(path)})
        assert_one_line_naming(caught.value, "--languages")
        assert "--text-files" in str(caught.value)


# ----- after the model loads, before the first forward pass --------------------------
def test_stats_window_past_the_context_fails_before_any_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: ``lsn-mech stats --model tiny-gpt2`` with the default window 512."""
    from lsn_mech.pipelines import inputs

    def no_forward(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("statistics collection started")

    monkeypatch.setattr(inputs, "collect_job_stats", no_forward)
    for name in ("stats", "ppl", "lape"):
        with pytest.raises(InvalidSettingError) as caught:
            run_job(name, tmp_path / name, model="tiny-gpt2")
        assert_one_line_naming(caught.value, "--window")
        assert "256" in str(caught.value)


def test_landermt_max_length_past_the_context_fails_before_layer_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lsn_mech.detect

    monkeypatch.setattr(lsn_mech.detect, "select_layers", pytest.fail)
    with pytest.raises(InvalidSettingError) as caught:
        run_job("landermt", tmp_path, model="tiny-gpt2", max_length=300, directions=("en-fr",))
    assert_one_line_naming(caught.value, "--max-length")


def test_neurons_of_another_shape_fail_before_the_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lsn_mech.evaluate

    other = lm.neurons.LanguageNeurons({"en": lm.neurons.NeuronSet([[1], [2]], d_mlp=64)})
    path = tmp_path / "other.safetensors"
    other.save(path)
    monkeypatch.setattr(lsn_mech.evaluate, "ppl_change_matrix", pytest.fail)
    with pytest.raises(NeuronShapeMismatchError) as caught:
        run_job("ppl", tmp_path, model="tiny-llama", neurons=path, languages=("en",))
    assert_one_line_naming(caught.value, "--neurons")


# ----- library calls ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2() -> Any:
    return lm.load_model("tiny-gpt2")


def test_context_length_is_the_hard_limit_only() -> None:
    assert context_length(lm.load_model("tiny-gpt2")) == 256  # learned position table
    assert context_length(lm.load_model("tiny-bloom")) is None  # ALiBi
    assert context_length(lm.load_model("tiny-llama")) is None  # rotary


def test_library_calls_refuse_a_window_past_the_context(gpt2: Any) -> None:
    texts = ["hello world, " * 20]
    calls = {
        "collect_stats": lambda: lm.collect_stats(gpt2, {"en": texts}, progress=False),
        "perplexity": lambda: lm.evaluate.perplexity(gpt2, texts),
        "ppl_change_matrix": lambda: lm.evaluate.ppl_change_matrix(
            gpt2, {}, {"en": texts}, progress=False
        ),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidSettingError, match=r"^window 512 .* window=256 or less") as e:
            call()
        assert isinstance(e.value, ValueError), name
    assert lm.evaluate.perplexity(gpt2, texts, window=256).tokens > 0  # the limit itself runs


def test_library_calls_check_the_width_of_token_windows(gpt2: Any) -> None:
    from lsn_mech.corpora.windows import tokenize_windows

    wide = tokenize_windows(gpt2.tokenizer, ["abc " * 200], window=300)
    with pytest.raises(InvalidSettingError, match="300 tokens wide"):
        lm.evaluate.perplexity(gpt2, wide, window=16)
    with pytest.raises(InvalidSettingError, match="300 tokens wide"):
        lm.collect_stats(gpt2, {"en": wide}, progress=False)
    narrow = tokenize_windows(gpt2.tokenizer, ["abc " * 20], window=32)
    assert lm.evaluate.perplexity(gpt2, narrow).tokens > 0  # default window=512 unused


@pytest.mark.parametrize("window", [1, 0, "512", 2.0, True])
def test_check_window_names_the_argument(gpt2: Any, window: Any) -> None:
    with pytest.raises(InvalidSettingError, match=r"^--win "):
        check_window(gpt2, window, argument="--win")


@pytest.mark.parametrize("argument", ["batch_size", "logits_chunk"])
def test_perplexity_refuses_bad_counts(gpt2: Any, argument: str) -> None:
    with pytest.raises(InvalidSettingError, match=f"^{argument} must be"):
        lm.evaluate.perplexity(gpt2, ["hello"], window=32, **{argument: 0})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_model_refuses_an_absent_device_before_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lsn_mech.models import loading

    monkeypatch.setattr(loading, "_resolve", pytest.fail)
    for device in ("cuda", "cuda:3", torch.device("cuda", 1), "tpu9"):
        with pytest.raises(DeviceUnavailableError, match=r"^device "):
            lm.load_model("tiny-gpt2", device=device)
    check_device(None)
    check_device("cpu")
    check_device(torch.device("cpu"))
