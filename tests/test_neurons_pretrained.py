"""Shared neuron folders: save_pretrained / from_pretrained / push_to_hub, the model card,
published LAPE files through the same entry point, and fast offline refusals.

No test reaches the network: the hub's side is either refused (offline, or an endpoint on
the loopback discard port that refuses connections) or replaced by a fake that records
what would have been sent.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from jaxtyping import install_import_hook

import lsn_mech.hub
from lsn_mech._version import __version__
from lsn_mech.errors import (
    CorruptFileError,
    HubAccessError,
    HubUnavailableError,
    InvalidSettingError,
    LsnMechError,
    MissingFileError,
)
from lsn_mech.provenance import Provenance

with install_import_hook("lsn_mech.neurons", "beartype.beartype"):
    from lsn_mech.neurons import (
        LanguageNeurons,
        NeuronFormatError,
        NeuronSet,
        pretrained,
        to_lape_file,
    )

UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port on the loopback: refused at once
MODEL = "google/gemma-3-270m"


@pytest.fixture
def neurons() -> LanguageNeurons:
    en = NeuronSet([[1, 3], [], [7]], d_mlp=8, model_id=MODEL)
    fr = NeuronSet([[3], [0], []], d_mlp=8, model_id=MODEL)
    zh = NeuronSet([[3], [], [0, 7, 5]], d_mlp=8, model_id=MODEL)
    provenance = Provenance(
        model_id=MODEL,
        corpus="bible(en, fr, zh)",
        corpus_hash="0123456789abcdef",
        method="lape",
        parameters={"top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95},
    )
    return LanguageNeurons({"en": en, "fr": fr, "zh": zh}, provenance=provenance)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where the hub refuses connections (and no proxy hides that)."""
    for variable in (*lsn_mech.hub.PROXY_VARIABLES, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)


# ---------------------------------------------------------------------- round trip


def test_round_trip_keeps_neurons_and_provenance(tmp_path: Path, neurons: LanguageNeurons) -> None:
    folder = neurons.save_pretrained(tmp_path / "shared")
    assert folder == tmp_path / "shared"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "lsn_mech.json",
        "neurons.safetensors",
    ]
    for source in (folder, str(folder), folder / "neurons.safetensors", folder / "lsn_mech.json"):
        back = LanguageNeurons.from_pretrained(source)
        assert isinstance(back, LanguageNeurons)
        assert back == neurons and back.languages == ("en", "fr", "zh")
        assert back.provenance == neurons.provenance
        assert back.model_id == MODEL and back.d_mlp == 8 and back.n_layers == 3
    config = json.loads((folder / "lsn_mech.json").read_text())
    assert config["format"] == "lsn_mech.neurons.pretrained" and config["format_version"] == 1
    assert config["counts"] == {"en": 3, "fr": 2, "zh": 4}
    assert config["provenance"] == neurons.provenance.to_dict()  # type: ignore[union-attr]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", config["sha256"])


def test_saving_again_replaces_the_folder_contents(
    tmp_path: Path, neurons: LanguageNeurons
) -> None:
    neurons.save_pretrained(tmp_path)
    fewer = neurons.subset(["zh", "en"])
    fewer.save_pretrained(tmp_path)
    back = LanguageNeurons.from_pretrained(tmp_path)
    assert back == fewer and back.languages == ("zh", "en")


def test_a_lape_job_folder_loads_its_neurons(tmp_path: Path, neurons: LanguageNeurons) -> None:
    # what `lsn-mech lape` leaves: neurons.safetensors, a random baseline, the LAPE pair
    neurons.save(tmp_path / "neurons.safetensors")
    neurons.map(lambda s: s.random_like(seed=0)).save(tmp_path / "random_neurons.safetensors")
    to_lape_file(neurons, tmp_path / "lape_neurons.pt")
    (tmp_path / "lape_neurons.languages.json").write_text('["en", "fr", "zh"]')
    back = LanguageNeurons.from_pretrained(tmp_path)
    assert back == neurons and back.provenance == neurons.provenance


# ---------------------------------------------------------------------- the model card


def _front_matter(card: str) -> dict[str, Any]:
    match = re.match(r"---\n(.*?)\n---\n", card, flags=re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def _table(card: str, heading: str) -> list[list[str]]:
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_card_front_matter_is_what_the_hub_reads(tmp_path: Path, neurons: LanguageNeurons) -> None:
    from huggingface_hub import ModelCard

    folder = neurons.save_pretrained(tmp_path, repo_id="someone/gemma-lape")
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["library_name"] == "lsn_mech"
    assert "language-specific-neurons" in meta["tags"] and "lape" in meta["tags"]
    assert meta["base_model"] == MODEL
    assert meta["language"] == ["en", "fr", "zh"]
    hub_view = ModelCard.load(folder / "README.md").data  # huggingface_hub's own parser
    assert hub_view.library_name == "lsn_mech" and hub_view.base_model == MODEL
    assert 'LanguageNeurons.from_pretrained("someone/gemma-lape")' in card


def test_card_numbers_match_the_neurons(tmp_path: Path, neurons: LanguageNeurons) -> None:
    card = (neurons.save_pretrained(tmp_path) / "README.md").read_text(encoding="utf-8")
    by_language = {row[0]: row[1:] for row in _table(card, "Neurons per language")}
    assert by_language["en"] == ["3", "12.500 %", "1"]  # (0,1) is English only
    assert by_language["fr"] == ["2", "8.333 %", "1"]  # (1,0)
    assert by_language["zh"] == ["4", "16.667 %", "2"]  # (2,0), (2,5)
    assert by_language["any language"][0] == str(len(neurons.union())) == "6"
    per_layer = _table(card, "Neurons per layer")
    assert [int(row[0]) for row in per_layer] == [0, 1, 2]
    for language_column, language in enumerate(neurons.languages, start=1):
        assert [int(row[language_column]) for row in per_layer] == neurons.per_layer()[language]
    assert [int(row[-1]) for row in per_layer] == neurons.union().per_layer() == [2, 1, 3]
    provenance = dict(row[:2] for row in _table(card, "Provenance"))
    assert provenance["model"] == f"`{MODEL}`" and provenance["method"] == "lape"
    assert provenance["corpus"] == "bible(en, fr, zh)"
    assert provenance["corpus hash"] == "`0123456789abcdef`"
    assert provenance["saved with lsn_mech"] == __version__
    parameters = card.split("### Parameters\n", 1)[1].split("\n## ", 1)[0]
    assert "| `top_rate` | 0.01 |" in parameters and "| `filter_rate` | 0.95 |" in parameters


def test_card_leaves_non_hub_names_out_of_the_metadata(tmp_path: Path) -> None:
    # a zoo name is no hub id, and "random:en" is no language code: the hub would refuse both
    sets = {"random:en": NeuronSet([[0]], d_mlp=4, model_id="gemma-3-270m")}
    bare = LanguageNeurons(sets)
    meta = _front_matter((bare.save_pretrained(tmp_path / "a") / "README.md").read_text())
    assert "base_model" not in meta and "language" not in meta
    assert meta["library_name"] == "lsn_mech"
    named = bare.save_pretrained(tmp_path / "b", base_model="google/gemma-3-270m")
    assert _front_matter((named / "README.md").read_text())["base_model"] == MODEL
    assert LanguageNeurons.from_pretrained(tmp_path / "a").provenance is None


# ---------------------------------------------------------------------- published LAPE files


def test_a_published_lape_file_loads_in_the_reference_language_order(tmp_path: Path) -> None:
    # Tang et al. publish <model>.neuron.pth: 7 languages, en zh fr es vi id ja
    layers = [[torch.tensor([i, 10 + i]), torch.tensor([], dtype=torch.long)] for i in range(7)]
    torch.save(layers, tmp_path / "tiny.neuron.pth")
    back = LanguageNeurons.from_pretrained(tmp_path / "tiny.neuron.pth", d_mlp=32)
    assert back.languages == ("en", "zh", "fr", "es", "vi", "id", "ja")
    assert list(back["es"]) == [(0, 3), (0, 13)] and back.d_mlp == 32
    assert back.provenance is not None and back.provenance.method == "imported"
    assert back.provenance.parameters["format"] == "lape"
    assert "reference order" in back.provenance.parameters["languages_from"]
    same = LanguageNeurons.from_pretrained(tmp_path, d_mlp=32)  # the folder holding it
    assert same == back


def test_a_lape_folder_with_its_languages_list(tmp_path: Path, neurons: LanguageNeurons) -> None:
    to_lape_file(neurons, tmp_path / "lape_neurons.pt")
    (tmp_path / "lape_neurons.languages.json").write_text('["en", "fr", "zh"]')
    back = LanguageNeurons.from_pretrained(tmp_path, d_mlp=8, model_id=MODEL)
    assert back == neurons
    described = tmp_path / "described"
    described.mkdir()
    to_lape_file(neurons, described / "mask.pt")
    (described / "languages.json").write_text(
        json.dumps({"languages": ["en", "fr", "zh"], "d_mlp": 8, "model_id": MODEL})
    )
    assert LanguageNeurons.from_pretrained(described) == neurons  # nothing else to pass
    explicit = LanguageNeurons.from_pretrained(
        described / "mask.pt", languages=["zh", "fr", "en"], model_id=MODEL
    )
    assert explicit["zh"] == neurons["en"]  # the argument wins over the file


def test_a_lape_file_without_what_it_does_not_record(tmp_path: Path) -> None:
    torch.save([[torch.tensor([1])], [torch.tensor([2])]], tmp_path / "two.pt")
    with pytest.raises(InvalidSettingError, match=r"languages=\[\.\.\.\] in file order"):
        LanguageNeurons.from_pretrained(tmp_path / "two.pt", d_mlp=4)
    with pytest.raises(InvalidSettingError, match="d_mlp="):
        LanguageNeurons.from_pretrained(tmp_path / "two.pt", languages=["en", "fr"])
    with pytest.raises(NeuronFormatError, match="2 languages but 3"):
        LanguageNeurons.from_pretrained(tmp_path / "two.pt", languages=["a", "b", "c"], d_mlp=4)
    torch.save([[torch.tensor([1])]], tmp_path / "other.pth")
    with pytest.raises(NeuronFormatError, match="several LAPE files"):
        LanguageNeurons.from_pretrained(tmp_path, languages=["en"], d_mlp=4)


# ---------------------------------------------------------------------- refusals


def test_an_empty_or_foreign_folder_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"it is empty.*save_pretrained") as error:
        LanguageNeurons.from_pretrained(tmp_path)
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, LsnMechError)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MissingFileError, match=r"holds notes\.txt"):
        LanguageNeurons.from_pretrained(tmp_path)
    with pytest.raises(NeuronFormatError, match="nor a LAPE list"):
        LanguageNeurons.from_pretrained(tmp_path / "notes.txt", languages=["en"], d_mlp=4)
    with pytest.raises(MissingFileError, match="not a Hugging Face repository id"):
        LanguageNeurons.from_pretrained(str(tmp_path / "missing" / "deep" / "path"))
    with pytest.raises(MissingFileError, match="No folder or file at"):
        LanguageNeurons.from_pretrained(Path("no-such-run/lape"))  # a Path is no repo id


def test_a_damaged_neuron_file_is_refused(tmp_path: Path, neurons: LanguageNeurons) -> None:
    folder = neurons.save_pretrained(tmp_path)
    path = folder / "neurons.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of an index: still a valid safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(NeuronFormatError, match=r"does not match the SHA-256.*save_pretrained"):
        LanguageNeurons.from_pretrained(folder)
    neurons.save_pretrained(folder)
    path.write_bytes(path.read_bytes()[:-40])  # cut short
    with pytest.raises(NeuronFormatError, match="SHA-256"):
        LanguageNeurons.from_pretrained(folder)


def test_a_damaged_or_newer_config_is_refused(tmp_path: Path, neurons: LanguageNeurons) -> None:
    folder = neurons.save_pretrained(tmp_path)
    config_path = folder / "lsn_mech.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(config_path.read_text()[:50])
    with pytest.raises(CorruptFileError, match=r"not valid JSON.*save_pretrained"):
        LanguageNeurons.from_pretrained(folder)
    config_path.write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(NeuronFormatError, match=r"version 99.*Upgrade lsn_mech"):
        LanguageNeurons.from_pretrained(folder)
    config_path.write_text(json.dumps({**config, "neurons_file": "../elsewhere.safetensors"}))
    with pytest.raises(NeuronFormatError, match="not a file in the folder"):
        LanguageNeurons.from_pretrained(folder)
    del config["sha256"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(CorruptFileError, match="lacks the field 'sha256'"):
        LanguageNeurons.from_pretrained(folder)


def test_lape_options_on_an_lsn_mech_folder_are_refused(
    tmp_path: Path, neurons: LanguageNeurons
) -> None:
    folder = neurons.save_pretrained(tmp_path)
    with pytest.raises(InvalidSettingError, match=r"languages=, d_mlp= describe a LAPE list"):
        LanguageNeurons.from_pretrained(folder, languages=["en"], d_mlp=8)
    with pytest.raises(InvalidSettingError, match="revision="):
        LanguageNeurons.from_pretrained(folder, revision="v1")


# ---------------------------------------------------------------------- the hub, offline


def test_offline_mode_refuses_a_repo_id_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as error:
        LanguageNeurons.from_pretrained("someone/lape-neurons", cache_dir=tmp_path)
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert "HF_HUB_OFFLINE is set" in message
    assert "hf download someone/lape-neurons --local-dir DIR" in message
    assert "from_pretrained('DIR')" in message
    assert isinstance(error.value, LsnMechError) and isinstance(error.value, OSError)


def test_an_unreachable_hub_refuses_download_and_upload_at_once(
    tmp_path: Path, neurons: LanguageNeurons, no_hub: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=r"cannot connect to 127\.0\.0\.1:9"):
        LanguageNeurons.from_pretrained("someone/lape-neurons", cache_dir=tmp_path)
    with pytest.raises(HubUnavailableError, match="hf upload someone/lape-neurons DIR"):
        neurons.push_to_hub("someone/lape-neurons")
    assert time.perf_counter() - start < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match=r"HF_HUB_OFFLINE is set.*save_pretrained"):
        neurons.push_to_hub("someone/lape-neurons")
    assert time.perf_counter() - start < 5
    with pytest.raises(InvalidSettingError, match="repo_id='not a repo'"):
        neurons.push_to_hub("not a repo")


def test_offline_a_cached_download_is_used(
    tmp_path: Path, neurons: LanguageNeurons, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = neurons.save_pretrained(tmp_path / "snapshot")
    calls: list[dict[str, Any]] = []

    def cached_only(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        assert kwargs["local_files_only"] is True  # offline: never the network
        return str(shared)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.snapshot_download", cached_only)
    assert LanguageNeurons.from_pretrained("someone/lape-neurons") == neurons
    assert calls[0]["repo_id"] == "someone/lape-neurons"


# ---------------------------------------------------------------------- the hub, faked


class FakeHub:
    """Stands in for huggingface_hub's HfApi and snapshot_download: records the calls and
    keeps each pushed folder, so a pull returns what a push sent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def api(self, **settings: Any) -> FakeHub:
        self.calls.append(("HfApi", settings))
        return self

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://hub.test/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: Path, **kwargs: Any) -> Any:
        self.calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
        shutil.copytree(folder_path, self.root / repo_id)
        return type("CommitInfo", (), {"commit_url": f"https://hub.test/{repo_id}/commit/1"})()

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("snapshot_download", {"repo_id": repo_id, **kwargs}))
        return str(self.root / repo_id)


def test_push_then_pull_through_the_hub_client(
    tmp_path: Path, neurons: LanguageNeurons, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(pretrained.hub_transfer, "why_hub_unusable", lambda timeout=2.0: None)
    monkeypatch.setattr("huggingface_hub.HfApi", hub.api)
    monkeypatch.setattr("huggingface_hub.snapshot_download", hub.snapshot_download)
    url = neurons.push_to_hub("someone/lape-neurons", private=True, token="hf_x")
    assert url == "https://hub.test/someone/lape-neurons/commit/1"
    steps = dict(hub.calls)
    assert steps["HfApi"]["token"] == "hf_x" and steps["HfApi"]["library_name"] == "lsn_mech"
    assert steps["create_repo"] == {
        "repo_id": "someone/lape-neurons",
        "private": True,
        "exist_ok": True,
    }
    assert steps["upload_folder"]["commit_message"].startswith("Upload lape language neurons")
    pushed = tmp_path / "hub" / "someone" / "lape-neurons"
    assert sorted(p.name for p in pushed.iterdir()) == [
        "README.md",
        "lsn_mech.json",
        "neurons.safetensors",
    ]
    assert 'from_pretrained("someone/lape-neurons")' in (pushed / "README.md").read_text()
    back = LanguageNeurons.from_pretrained("someone/lape-neurons", revision="v1")
    assert back == neurons and back.provenance == neurons.provenance
    download = dict(hub.calls)["snapshot_download"]
    assert download["revision"] == "v1" and "neurons.safetensors" in download["allow_patterns"]
    assert "*.safetensors" not in download["allow_patterns"]  # never a model's weights


def test_hub_refusals_become_errors_that_name_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx  # huggingface_hub's HTTP client: its errors carry the response
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(repo_id: str, **kwargs: Any) -> str:
        response = httpx.Response(404, request=httpx.Request("GET", "https://hub.test/x"))
        raise RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)

    monkeypatch.setattr(pretrained.hub_transfer, "why_hub_unusable", lambda timeout=2.0: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", missing)
    with pytest.raises(HubAccessError, match="neither a local folder or file nor") as error:
        LanguageNeurons.from_pretrained("runs/lape")  # a path that does not exist here
    assert "hf auth login" in str(error.value) and isinstance(error.value, OSError)


def test_a_hub_repository_without_neurons_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("{}")  # e.g. a model's repository
    monkeypatch.setattr(pretrained.hub_transfer, "why_hub_unusable", lambda timeout=2.0: None)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: str(tmp_path))
    with pytest.raises(MissingFileError, match=r"hub repository 'someone/model' holds no neurons"):
        LanguageNeurons.from_pretrained("someone/model")


@pytest.fixture
def refusing_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """A hub on the loopback that knows no repository and refuses every write, so the real
    huggingface_hub client runs end to end without the network."""
    requests: list[tuple[str, str]] = []

    class Refuse(BaseHTTPRequestHandler):
        def _answer(self, status: int, headers: dict[str, str]) -> None:
            requests.append((self.command, self.path))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        def do_GET(self) -> None:
            self._answer(404, {"X-Error-Code": "RepoNotFound"})

        do_HEAD = do_GET

        def do_POST(self) -> None:
            self._answer(401, {})

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for variable in (*lsn_mech.hub.PROXY_VARIABLES, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield requests
    server.shutdown()
    server.server_close()


def test_the_real_hub_client_meets_a_refusing_hub(
    tmp_path: Path, neurons: LanguageNeurons, refusing_hub: list[tuple[str, str]]
) -> None:
    with pytest.raises(HubAccessError, match="neither a local folder or file nor"):
        LanguageNeurons.from_pretrained("someone/nothing", cache_dir=tmp_path)
    with pytest.raises(HubAccessError, match=r"401.*hf auth login.*token=") as error:
        neurons.push_to_hub("someone/nothing", token="hf_not_a_token")
    assert "\n" not in str(error.value)
    assert ("POST", "/api/repos/create") in refusing_hub
    assert any(path.startswith("/api/models/someone/nothing") for _, path in refusing_hub)
