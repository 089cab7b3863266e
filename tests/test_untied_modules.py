"""The lower modules that untied two import circles: `lsn_mech.neurons.file_format`
(under `NeuronSet`/`LanguageNeurons`) and `lsn_mech.stats.quantile_state` (under
`ActivationStats`), and the functions above them that now delegate to the classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lsn_mech.errors import NeuronFormatError, StatisticsMismatchError
from lsn_mech.neurons import LanguageNeurons, NeuronSet, file_format, io
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats, percentiles, quantile_state


def _header(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["lsn_mech"])


# ----------------------------------------------------------------------------- neurons


@pytest.fixture
def fr() -> NeuronSet:
    return NeuronSet([[1, 3], [], [7]], d_mlp=8, model_id="m")


@pytest.fixture
def neurons(fr: NeuronSet) -> LanguageNeurons:
    en = NeuronSet([[0], [2, 5], []], d_mlp=8)
    return LanguageNeurons({"fr": fr, "en": en}, provenance=Provenance(created="t"))


def test_neuron_set_file_by_hand(tmp_path: Path, fr: NeuronSet) -> None:
    path = fr.save(tmp_path / "fr")
    assert path == tmp_path / "fr.safetensors"
    assert _header(path) == {
        "format": "lsn_mech.neurons",
        "format_version": 1,
        "kind": "NeuronSet",
        "n_layers": 3,
        "d_mlp": 8,
        "site": "mlp_post",
        "model_id": "m",
    }
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["0", "1", "2"]
        assert handle.get_tensor("0").tolist() == [1, 3]
        assert handle.get_tensor("1").tolist() == []
    assert io.save(fr, tmp_path / "again").read_bytes() == path.read_bytes()


def test_language_neurons_file_by_hand(tmp_path: Path, neurons: LanguageNeurons) -> None:
    path = neurons.save(tmp_path / "ln.safetensors")
    header = _header(path)
    assert {k: v for k, v in header.items() if k != "provenance"} == {
        "format": "lsn_mech.neurons",
        "format_version": 1,
        "kind": "LanguageNeurons",
        "n_layers": 3,
        "d_mlp": 8,
        "site": "mlp_post",
        "model_id": "m",
        "languages": ["fr", "en"],
        "model_ids": {"fr": "m", "en": None},
    }
    assert header["provenance"]["created"] == "t"
    back = io.load(path)
    assert isinstance(back, LanguageNeurons)
    assert back == neurons and back["en"].model_id is None and back["fr"].model_id == "m"
    assert io.save(neurons, tmp_path / "again").read_bytes() == path.read_bytes()


def test_kind_errors_name_the_loader(
    tmp_path: Path, fr: NeuronSet, neurons: LanguageNeurons
) -> None:
    neurons.save(tmp_path / "ln")
    with pytest.raises(
        NeuronFormatError, match=r"LanguageNeurons \(fr, en\).*LanguageNeurons\.load"
    ):
        io.load_neuron_set(tmp_path / "ln")
    fr.save(tmp_path / "fr")
    with pytest.raises(NeuronFormatError, match=r"single NeuronSet.*NeuronSet\.load"):
        io.load_language_neurons(tmp_path / "fr")
    file_format.write({}, {"kind": "Pickle"}, tmp_path / "odd")
    for load in (io.load, NeuronSet.load, LanguageNeurons.load):
        with pytest.raises(NeuronFormatError, match=r"unknown kind.*'Pickle'.*NeuronSet\.load"):
            load(tmp_path / "odd")


def test_truncated_file(tmp_path: Path, fr: NeuronSet) -> None:
    meta = {"format": "lsn_mech.neurons", "format_version": 1, "kind": "NeuronSet"}
    meta.update(n_layers=3, d_mlp=8, site="mlp_post", model_id=None)
    layers = {"0": torch.tensor([1]), "1": torch.tensor([], dtype=torch.int64)}
    save_file(layers, str(tmp_path / "cut.safetensors"), metadata={"lsn_mech": json.dumps(meta)})
    with pytest.raises(NeuronFormatError, match=r"missing tensor '2'.*truncated"):
        NeuronSet.load(tmp_path / "cut")


def test_write_is_atomic_and_adds_the_tag(tmp_path: Path) -> None:
    path = file_format.write({"0": torch.tensor([2])}, {"kind": "NeuronSet"}, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]
    meta, tensors = file_format.read(tmp_path / "x")
    assert meta == {"format": "lsn_mech.neurons", "format_version": 1, "kind": "NeuronSet"}
    assert tensors["0"].tolist() == [2] and path == tmp_path / "x.safetensors"


# ----------------------------------------------------------------------------- stats


def _stats(tokens: list[int]) -> ActivationStats:
    """One layer, two neurons, two languages; batch-averaged P90 sums over 2 batches."""
    state = {
        "mlp_pre/sum": torch.tensor([[[2.0, 4.0], [6.0, 8.0]]], dtype=torch.float64),
        "mlp_pre/bq_sum_p90": torch.tensor([[[1.0, 3.0], [5.0, 7.0]]], dtype=torch.float64),
        "mlp_pre/bq_batches": torch.tensor([[[2, 2], [2, 2]]]),
    }
    return ActivationStats(
        languages=["en", "fr"],
        n_layers=1,
        d_mlp=2,
        sites=("mlp_pre",),
        tokens=torch.tensor(tokens),
        state=state,
        accumulators=[],
    )


def test_parse_statistic() -> None:
    assert quantile_state.parse_statistic("mean") is None
    assert quantile_state.parse_statistic("p90") == pytest.approx(0.9)
    assert quantile_state.parse_statistic("p2.5") == pytest.approx(0.025)
    for bad in ("p101", "median", "90"):
        with pytest.raises(ValueError, match="p90"):
            quantile_state.parse_statistic(bad)
    assert percentiles.parse_statistic is quantile_state.parse_statistic
    assert percentiles.STATISTICS == quantile_state.STATISTICS


def test_batch_mean_by_hand() -> None:
    stats = _stats([2, 2])
    expected = torch.tensor([[[0.5, 1.5], [2.5, 3.5]]], dtype=torch.float64)
    assert torch.equal(stats.quantile(0.9, "mlp_pre", estimate="batch_mean"), expected)
    assert torch.equal(percentiles.quantile(stats, 0.9, "mlp_pre", "batch_mean"), expected)
    assert torch.equal(
        percentiles.statistic(stats, "p90", "mlp_pre", "batch_mean"),
        stats.statistic("p90", "mlp_pre", estimate="batch_mean"),
    )
    assert torch.equal(percentiles.statistic(stats, "mean", "mlp_pre"), stats.mean("mlp_pre"))
    value = percentiles.statistic_value(stats, "fr", "p90", estimate="batch_mean")
    assert list(value) == ["mlp_post"] and value["mlp_post"].tolist() == [[1.5, 3.5]]
    assert stats["fr"].statistic("p90", estimate="batch_mean")["mlp_pre"].tolist() == [[1.5, 3.5]]
    assert percentiles.quantile_sites(stats, "batch_mean") == ["mlp_pre"]
    assert percentiles.quantile_sites(stats) == []


def test_quantile_errors_name_the_fix() -> None:
    stats = _stats([2, 2])
    with pytest.raises(StatisticsMismatchError, match="QuantileAccumulator"):
        stats.quantile(0.9, "mlp_pre")
    with pytest.raises(StatisticsMismatchError, match="QuantileAccumulator"):
        percentiles.histogram(stats, "mlp_pre")
    with pytest.raises(StatisticsMismatchError, match=r"BatchQuantileAccumulator.*0\.5"):
        stats.quantile(0.5, "mlp_pre", estimate="batch_mean")
    with pytest.raises(ValueError, match="'histogram' or 'batch_mean'"):
        stats.quantile(0.9, "mlp_pre", estimate="exact")
    with pytest.raises(StatisticsMismatchError, match="No tokens were counted for fr"):
        _stats([2, 0]).quantile(0.9, "mlp_pre", estimate="batch_mean")
