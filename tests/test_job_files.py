"""Every file a long job writes, other than the statistics checkpoint (tests/test_stats.py),
is committed atomically and refused by name when it is broken; a job killed midway leaves
a folder that a reader refuses and a rerun completes (docs/cli.md, "What resumes")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from lsn_mech import files
from lsn_mech.detect.awareness import Awareness
from lsn_mech.errors import CorruptFileError, LsnMechError, MissingFileError, NeuronFormatError
from lsn_mech.experiments.layers import LayerDistribution
from lsn_mech.models import build_tiny
from lsn_mech.neurons import LanguageNeurons, NeuronSet, from_lape_file, load, to_lape_file
from lsn_mech.peft import load_masked_lora, masked_lora, save_masked_lora
from lsn_mech.pipelines import StatsConfig, run_stats
from lsn_mech.pipelines.stages import JOB_FILE, completed_job
from lsn_mech.provenance import Provenance
from lsn_mech.results import ResultFormatError
from lsn_mech.training.routing import ConditionalAwarenessRouting

D_MLP = 128
NEURONS = NeuronSet([[3, 5, 64], [], [0, 127]], d_mlp=D_MLP)


# ---------------------------------------------------------------------- damage


def truncations(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file cut at several offsets: empty, inside the header, halfway, two bytes short
    (one short would only drop the final newline of a JSON file)."""
    for offset in sorted({0, 1, 7, 9, len(data) // 3, len(data) // 2, len(data) - 2}):
        yield f"cut at {offset}", data[:offset]


def header_flips(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Bytes of the header flipped: the length prefix of safetensors, the opening of JSON."""
    for position in (0, 3, 7, 8, 12):
        if position < len(data):
            damaged = bytearray(data)
            damaged[position] ^= 0xFF
            yield f"byte {position} flipped", bytes(damaged)


def damaged_copies(path: Path) -> Iterator[tuple[str, bytes]]:
    data = path.read_bytes()
    yield from truncations(data)
    yield from header_flips(data)


def assert_refused_by_name(
    path: Path, read: Callable[[], object], error: type[Exception] = CorruptFileError
) -> int:
    """Damage ``path`` every way in turn; each read must raise ``error`` naming the file."""
    original = path.read_bytes()
    cases = 0
    for label, data in damaged_copies(path):
        path.write_bytes(data)
        with pytest.raises(error) as info:
            read()
        assert path.name in str(info.value), (label, str(info.value))
        cases += 1
    path.write_bytes(original)
    read()  # the undamaged file still loads
    return cases


def rewrite_metadata(path: Path, edit: Callable[[dict], None]) -> None:
    """Hand-edit the ``lsn_mech`` JSON header of a safetensors file, tensors unchanged."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    meta = json.loads(raw["lsn_mech"])
    edit(meta)
    save_file(tensors, str(path), metadata={**raw, "lsn_mech": json.dumps(meta)})


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(files.TEMPORARY_SUFFIX)]


# ---------------------------------------------------------------------- neuron files


def test_neuron_files_refuse_damage_by_name(tmp_path: Path) -> None:
    single = NEURONS.save(tmp_path / "set")
    languages = LanguageNeurons({"en": NEURONS, "fr": NeuronSet.empty(3, D_MLP)}).save(
        tmp_path / "languages"
    )
    assert assert_refused_by_name(single, lambda: NeuronSet.load(single), NeuronFormatError) >= 10
    assert assert_refused_by_name(languages, lambda: load(languages), NeuronFormatError) >= 10


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m.pop("d_mlp"), "'d_mlp'"),
        (lambda m: m.update(n_layers="3"), "'n_layers'"),
        (lambda m: m.update(n_layers=4), "missing tensor"),
        (lambda m: m.update(d_mlp=64), "usable neurons"),
        (lambda m: m.update(kind="Statistics"), "unknown kind"),
        (lambda m: m.update(format="lsn_mech.Awareness"), "not neurons"),
    ],
)
def test_hand_edited_neuron_headers_are_refused(tmp_path: Path, edit, words: str) -> None:  # type: ignore[no-untyped-def]
    path = NEURONS.save(tmp_path / "set")
    rewrite_metadata(path, edit)
    with pytest.raises(NeuronFormatError, match=words) as info:
        load(path)
    assert "set.safetensors" in str(info.value)


def test_wrong_kinds_and_missing_neuron_files(tmp_path: Path) -> None:
    awareness = sample_awareness().save(tmp_path / "awareness")
    with pytest.raises(NeuronFormatError, match=r"lsn_mech.Awareness"):
        load(awareness)
    path = NEURONS.save(tmp_path / "set")
    with pytest.raises(CorruptFileError, match="not an lsn_mech Awareness"):
        Awareness.load(path)
    with pytest.raises(MissingFileError) as info:
        load(tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError) and "missing" in str(info.value)


def test_lape_files_refuse_damage_by_name(tmp_path: Path) -> None:
    neurons = LanguageNeurons({"en": NEURONS, "fr": NEURONS})
    path = to_lape_file(neurons, tmp_path / "activation_mask")
    read = lambda: from_lape_file(path, ["en", "fr"], d_mlp=D_MLP)  # noqa: E731
    data = path.read_bytes()
    for offset in (0, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:offset])
        with pytest.raises(NeuronFormatError, match="activation_mask"):
            read()
    path.write_bytes(data)
    with pytest.raises(NeuronFormatError, match="activation_mask"):  # languages do not fit
        from_lape_file(path, ["en"], d_mlp=D_MLP)
    with pytest.raises(MissingFileError):
        from_lape_file(tmp_path / "nothing", ["en"], d_mlp=D_MLP)


# ---------------------------------------------------------------------- result JSON


def sample_distribution() -> LayerDistribution:
    return LayerDistribution(
        languages=["en", "fr"],
        counts=[[2, 1], [1, 0]],
        union=[2, 1],
        shared=[1, 0],
        d_mlp=4,
        provenance=Provenance(model_id="m", method="lape"),
    )


def test_result_json_refuses_damage_by_name(tmp_path: Path) -> None:
    path = sample_distribution().save(tmp_path / "distribution")
    read = lambda: LayerDistribution.load(path)  # noqa: E731
    assert assert_refused_by_name(path, read, ResultFormatError) >= 10
    for edit in (
        lambda d: d.pop("union"),
        lambda d: d.update(counts=5),
        lambda d: d.update(provenance="lape"),
        lambda d: d.update(format="lsn_mech.OverlapResult"),
    ):
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        with pytest.raises(ResultFormatError, match=r"distribution.json"):
            read()
        sample_distribution().save(path)
    with pytest.raises(MissingFileError):
        LayerDistribution.load(tmp_path / "absent.json")


# ---------------------------------------------------------------------- awareness, routing


def sample_awareness() -> Awareness:
    return Awareness(
        languages=["en", "fr"],
        layers=[0, 2],
        scores=torch.rand(2, D_MLP, 2),
        passes=[3, 3],
        losses=[1.5, 2.5],
        n_layers=3,
    )


def test_awareness_refuses_damage_and_hand_edits(tmp_path: Path) -> None:
    path = sample_awareness().save(tmp_path / "awareness")
    assert assert_refused_by_name(path, lambda: Awareness.load(path)) >= 10
    for edit, words in (
        (lambda m: m.update(layers=[0, 1, 2]), "do not fit"),
        (lambda m: m.pop("passes"), "'passes'"),
        (lambda m: m.update(colour="red"), "unknown fields"),
    ):
        sample_awareness().save(path)
        rewrite_metadata(path, edit)
        with pytest.raises(CorruptFileError, match=words):
            Awareness.load(path)


def test_routing_refuses_damage_and_a_half_finished_save(tmp_path: Path) -> None:
    general = NeuronSet([[0, 1], [2], [3]], d_mlp=D_MLP)
    specific = LanguageNeurons({"en": NeuronSet([[5], [6], [7]], d_mlp=D_MLP), "fr": NEURONS})
    routing = ConditionalAwarenessRouting([0, 2], general, specific, car_formula=0.5)
    folder = routing.save(tmp_path / "routing")
    read = lambda: ConditionalAwarenessRouting.load(folder)  # noqa: E731
    assert assert_refused_by_name(folder / "routing.safetensors", read) >= 10
    assert assert_refused_by_name(folder / "routing.json", read, LsnMechError) >= 10
    spec = json.loads((folder / "routing.json").read_text())
    for edited in ({**spec, "pairs": "en-fr"}, {k: v for k, v in spec.items() if k != "site"}):
        (folder / "routing.json").write_text(json.dumps(edited))
        with pytest.raises(CorruptFileError, match="routing"):
            read()
    # tensors of another routing under this spec: a save killed between the two files
    routing.save(folder)
    other = ConditionalAwarenessRouting(
        [0], general, specific, car_formula=0.5, learned=True, d_model=16
    )
    other.save(tmp_path / "other")
    (folder / "routing.safetensors").write_bytes(
        (tmp_path / "other/routing.safetensors").read_bytes()
    )
    with pytest.raises(CorruptFileError, match="interrupted"):
        read()


# ---------------------------------------------------------------------- adapters


def test_masked_lora_refuses_damage_and_other_models(tmp_path: Path) -> None:
    peft_model = masked_lora(build_tiny("tiny-gpt2").model, NEURONS, attention=())
    folder = save_masked_lora(peft_model, tmp_path / "adapter")
    read = lambda: load_masked_lora(build_tiny("tiny-gpt2").model, folder)  # noqa: E731
    cases = 0
    for name in ("adapter_model.safetensors", "lsn_masks.json", "lsn_masks.safetensors"):
        path = folder / name
        original = path.read_bytes()
        for label, data in list(truncations(original))[::2] + list(header_flips(original))[:2]:
            path.write_bytes(data)
            with pytest.raises(LsnMechError) as info:
                read()
            assert name in str(info.value), (name, label, str(info.value))
            cases += 1
        path.write_bytes(original)
    assert cases >= 15
    for shape, words in (
        ({"n_layer": 3, "n_embd": 32, "n_inner": 64}, "3 of 64"),  # other MLP width
        ({"n_layer": 4, "n_embd": 64, "n_inner": 128}, "4 of 128"),  # other depth
        ({"n_layer": 3, "n_embd": 32, "n_inner": 128}, "size mismatch"),  # other hidden size
    ):
        other_size = GPT2LMHeadModel(GPT2Config(n_head=2, **shape))
        with pytest.raises(LsnMechError, match=words) as info:
            load_masked_lora(other_size, folder)
        assert "trained on" in str(info.value)
    with pytest.raises(LsnMechError):  # another architecture with the same MLP shape
        load_masked_lora(build_tiny("tiny-llama").model, folder)
    (folder / "lsn_masks.json").unlink()
    with pytest.raises(LsnMechError, match=r"lsn_masks.json"):
        read()


# ---------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("kind", ["neurons", "result", "awareness"])
def test_a_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    save = {
        "neurons": lambda: NEURONS.save(tmp_path / "file"),
        "result": lambda: sample_distribution().save(tmp_path / "file"),
        "awareness": lambda: sample_awareness().save(tmp_path / "file"),
    }[kind]
    path = save()
    before = path.read_bytes()

    def crash(descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert no_temporaries(tmp_path)


# ---------------------------------------------------------------------- job folders


def stats_config(tmp_path: Path, texts: dict[str, list[str]]) -> StatsConfig:
    text_files = {}
    for language, lines in texts.items():
        source = tmp_path / f"{language}.txt"
        source.write_text("\n".join(f"{i}. {line}" for i, line in enumerate(lines * 10)) + "\n")
        text_files[language] = str(source)
    return StatsConfig(
        model="tiny-llama",
        languages=("en", "fr"),
        text_files=text_files,
        window=32,
        batch_size=2,
        max_tokens=128,
        output=tmp_path / "run",
    )


def test_a_job_killed_midway_is_refused_then_completed_by_a_rerun(
    tmp_path: Path, texts: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsn_mech.pipelines import stats as stats_job

    config = stats_config(tmp_path, {k: texts[k] for k in ("en", "fr")})
    real_write = stats_job.atomic_write_json

    def die_at_the_summary(path: Path, value: object, **options: object) -> Path:
        raise KeyboardInterrupt  # the job dies after its statistics, before its summary

    monkeypatch.setattr(stats_job, "atomic_write_json", die_at_the_summary)
    with pytest.raises(KeyboardInterrupt):
        run_stats(config, progress=False, log=lambda line: None)
    output = config.output
    marker = json.loads((output / JOB_FILE).read_text())
    assert marker["job"] == "stats" and marker["status"] == "running"
    assert (output / "config.json").exists() and not (output / "summary.json").exists()
    with pytest.raises(CorruptFileError, match="unfinished stats job") as info:
        completed_job(output)
    assert str(output) in str(info.value) and "again" in str(info.value)
    stats_file = output / "stats.safetensors"
    with pytest.raises(NeuronFormatError, match=r"stats.safetensors"):  # not read as neurons
        load(stats_file)
    first = stats_file.read_bytes()

    monkeypatch.setattr(stats_job, "atomic_write_json", real_write)
    report = run_stats(config, progress=False, log=lambda line: None)
    assert stats_file.read_bytes() == first  # the rerun resumed: nothing counted twice
    done = completed_job(output, job="stats")
    assert done["status"] == "complete"
    assert {"summary.json", "timings.json", "config.json"} <= set(done["files"])
    assert json.loads((output / "summary.json").read_text()) == report.summary
    assert no_temporaries(output)
    with pytest.raises(CorruptFileError, match="not 'lape'"):
        completed_job(output, job="lape")


def test_a_folder_no_job_wrote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="not the output folder"):
        completed_job(tmp_path)
    (tmp_path / JOB_FILE).write_text('{"job": "lape", "stat')
    with pytest.raises(CorruptFileError, match=JOB_FILE):
        completed_job(tmp_path)


def test_classifier_refuses_damage_and_a_half_finished_save(llama, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.models.hf import plain_hf_model
    from lsn_mech.training.classifier import ClassifierConfig, ClassifierError, TransferClassifier

    base = plain_hf_model(llama, copy=True)
    width = base.get_input_embeddings().weight.shape[1]
    classifier = TransferClassifier(
        masked_lora(base, NEURONS, attention=()),
        torch.nn.Linear(width, 2),
        ["law", "poetry"],
        llama.tokenizer,
        config=ClassifierConfig(),
    )
    folder = classifier.save(tmp_path / "classifier")
    read = lambda: TransferClassifier.load(folder, llama)  # noqa: E731
    assert read().labels == ("law", "poetry")
    for name in ("classifier.json", "head.safetensors"):
        path = folder / name
        original = path.read_bytes()
        for _, data in list(truncations(original))[::2] + list(header_flips(original))[:2]:
            path.write_bytes(data)
            with pytest.raises(CorruptFileError, match=name.replace(".", r"\.")):
                read()
        path.write_bytes(original)
    meta = json.loads((folder / "classifier.json").read_text())
    for edited in ({**meta, "labels": ["a", "b", "c"]}, {**meta, "config": {"rank_of_lora": 8}}):
        (folder / "classifier.json").write_text(json.dumps(edited))
        with pytest.raises(CorruptFileError, match=r"classifier\.json|head\.safetensors"):
            read()
    (folder / "classifier.json").unlink()  # a save killed before its last file
    with pytest.raises(ClassifierError, match="killed midway"):
        read()
