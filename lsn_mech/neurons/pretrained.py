"""Shared neuron folders: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

A folder that can travel (to a colleague, to the Hugging Face hub) holds:

- ``neurons.safetensors``: the neurons in lsn_mech's own format (`neurons.file_format`);
- ``README.md``: the model card (`neurons.model_card`), numbers computed from the sets;
- ``lsn_mech.json``: the folder's format tag and version, the languages, the provenance
  and the SHA-256 of ``neurons.safetensors``. It is written last, so it commits the
  folder: a save interrupted halfway, a truncated download or a swapped file no longer
  matches it and is refused.

`from_pretrained` also reads what users already have: a bare neuron file, the output
folder of ``lsn-mech lape`` (``neurons.safetensors``), and the LAPE lists published by
Tang et al. (``<model>.neuron.pth``, or the ``lape_neurons.pt`` + ``.languages.json``
pair a LAPE job writes). `PretrainedMixin` puts the three methods on `LanguageNeurons`
from below: this module knows `NeuronSet` and the file formats, and builds through the
class it is called on (``cls``), so no import runs back up.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from lsn_mech._version import __version__
from lsn_mech.errors import (
    CorruptFileError,
    InvalidSettingError,
    MissingFileError,
    NeuronFormatError,
    WrongInputError,
)
from lsn_mech.files import (
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    make_folder,
    read_json,
    require_fields,
    require_file,
)
from lsn_mech.neurons import file_format, hub_transfer, lape_format
from lsn_mech.neurons.model_card import model_card
from lsn_mech.neurons.neuron_set import DEFAULT_SITE
from lsn_mech.provenance import Provenance

NEURONS_FILE = "neurons.safetensors"
CARD_FILE = "README.md"
CONFIG_FILE = "lsn_mech.json"
FOLDER_FORMAT = "lsn_mech.neurons.pretrained"
FOLDER_FORMAT_VERSION = 1
LAPE_SUFFIXES = (".pt", ".pth")
LANGUAGES_SUFFIX = ".languages.json"

_Neurons = TypeVar("_Neurons", bound="PretrainedMixin")

RESAVE = "Save the folder again with save_pretrained, or download it again."


@dataclasses.dataclass(frozen=True)
class LapeOptions:
    """What a LAPE file does not record, as passed to `from_pretrained` (``None``: not given)."""

    languages: Sequence[str] | None = None
    d_mlp: int | None = None
    model_id: str | None = None
    site: str | None = None

    def given(self) -> list[str]:
        """Names of the options the caller set."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]


class PretrainedMixin:
    """``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` for `LanguageNeurons`."""

    __slots__ = ()

    def save_pretrained(
        self,
        folder: str | os.PathLike[str],
        *,
        repo_id: str | None = None,
        base_model: str | None = None,
    ) -> Path:
        """Write a shareable folder: ``neurons.safetensors``, ``README.md``, ``lsn_mech.json``.

        Args:
            folder: created if missing; these three files are replaced, others kept.
            repo_id: the hub repository the folder is meant for (shown in the card's snippet).
            base_model: hub id of the model for the card's ``base_model``; by default the
                model id when it has the form ``owner/name`` (zoo names and paths do not).

        Returns the folder. ``LanguageNeurons.from_pretrained(folder)`` reads it back.
        """
        target = make_folder(folder, argument="folder")
        neurons: Any = self
        neurons_path = neurons.save(target / NEURONS_FILE)
        atomic_write_text(
            target / CARD_FILE, model_card(neurons, repo_id=repo_id, base_model=base_model)
        )
        provenance = neurons.provenance
        config = {
            "format": FOLDER_FORMAT,
            "format_version": FOLDER_FORMAT_VERSION,
            "neurons_file": NEURONS_FILE,
            "sha256": file_sha256(neurons_path, fix=RESAVE),
            "languages": list(neurons.languages),
            "n_layers": neurons.n_layers,
            "d_mlp": neurons.d_mlp,
            "site": neurons.site,
            "model_id": neurons.model_id,
            "counts": {language: len(s) for language, s in neurons.items()},
            "provenance": None if provenance is None else provenance.to_dict(),
            "lsn_mech_version": __version__,
        }
        atomic_write_json(target / CONFIG_FILE, config)  # last: it commits the folder
        return target

    @classmethod
    def from_pretrained(
        cls: type[_Neurons],
        source: str | os.PathLike[str],
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        languages: Sequence[str] | None = None,
        d_mlp: int | None = None,
        model_id: str | None = None,
        site: str | None = None,
    ) -> _Neurons:
        """Load neurons from a folder, a file, or a Hugging Face repository.

        ``source`` is, in this order:

        - a folder written by `save_pretrained` (its checksum is checked);
        - a folder holding ``neurons.safetensors`` (the output folder of ``lsn-mech lape``);
        - a folder holding one LAPE list (``*.pt`` / ``*.pth``);
        - a file: a neuron ``.safetensors`` file, or a LAPE list;
        - otherwise a hub repository id (``owner/name``), downloaded with ``revision``,
          ``token`` and ``cache_dir``. Offline (``HF_HUB_OFFLINE`` or no connection) a
          cached copy is used, or `HubUnavailableError` is raised at once.

        ``languages``, ``d_mlp``, ``model_id`` and ``site`` describe a LAPE list, which
        records none of them: languages in file order (else from ``<file>.languages.json``
        or ``languages.json`` beside it, else the reference order en, zh, fr, es, vi, id,
        ja for the 7-language files Tang et al. publish) and ``d_mlp`` (else from that
        JSON when it is an object with a ``"d_mlp"``). lsn_mech files record all four, so
        passing them there is refused.
        """
        if not isinstance(source, (str, os.PathLike)):
            raise WrongInputError(
                f"from_pretrained takes a folder, a file or a hub repository id, got "
                f"{type(source).__name__}."
            )
        options = LapeOptions(languages, d_mlp, model_id, site)
        path = Path(source)
        if path.exists():
            if revision is not None:
                raise InvalidSettingError(
                    f"revision={revision!r} selects a version of a hub repository, but "
                    f"{str(source)!r} is a local path; leave revision out."
                )
            return _load_local(cls, path, options, origin=str(source))
        repo_id = str(source)
        if not isinstance(source, str) or not _valid_repo_id(repo_id):
            raise MissingFileError(
                f"No folder or file at {repo_id!r}, and it is not a Hugging Face repository "
                f"id (owner/name) either. Check the path, or write the folder first with "
                f"neurons.save_pretrained({repo_id!r})."
            )
        folder = hub_transfer.download(repo_id, revision=revision, token=token, cache_dir=cache_dir)
        return _load_local(cls, folder, options, origin=f"hub:{repo_id}")

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        base_model: str | None = None,
    ) -> str:
        """Upload the `save_pretrained` folder to a model repository on the Hugging Face hub.

        The repository is created if it does not exist (``private`` applies then). The
        hub is asked first: offline (``HF_HUB_OFFLINE``, or no connection to
        ``HF_ENDPOINT``) it raises `HubUnavailableError` at once, naming the offline way
        (``save_pretrained(DIR)``, later ``hf upload REPO DIR``). Returns the commit URL
        (the pull request's with ``create_pr``).
        """
        hub_transfer.check_repo_id(repo_id)
        hub_transfer.refuse_offline_upload(repo_id)
        neurons: Any = self
        method = (neurons.provenance.method if neurons.provenance else None) or "neurons"
        message = commit_message or f"Upload {method} language neurons (lsn_mech {__version__})"
        with tempfile.TemporaryDirectory(prefix="lsn_mech_push_") as temporary:
            folder = self.save_pretrained(temporary, repo_id=repo_id, base_model=base_model)
            return hub_transfer.upload(
                folder,
                repo_id,
                private=private,
                token=token,
                commit_message=message,
                revision=revision,
                create_pr=create_pr,
            )


# ---------------------------------------------------------------------- reading


def _valid_repo_id(name: str) -> bool:
    try:
        hub_transfer.check_repo_id(name)
    except InvalidSettingError:
        return False
    return True


def _load_local(cls: Any, path: Path, options: LapeOptions, *, origin: str) -> Any:
    """Neurons from an existing folder or file (see `PretrainedMixin.from_pretrained`)."""
    if path.is_file():
        if path.name == CONFIG_FILE:
            return _load_folder(cls, path.parent, options)
        if path.name.endswith(file_format.SUFFIX):
            _refuse_lape_options(options, path)
            return cls.load(path)
        return _load_lape(cls, path, options, origin=origin)
    if (path / CONFIG_FILE).is_file():
        return _load_folder(cls, path, options)
    if (path / NEURONS_FILE).is_file():
        _refuse_lape_options(options, path / NEURONS_FILE)
        return cls.load(path / NEURONS_FILE)
    lape_files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in LAPE_SUFFIXES)
    if len(lape_files) == 1:
        return _load_lape(cls, lape_files[0], options, origin=f"{origin}/{lape_files[0].name}")
    if lape_files:
        names = ", ".join(p.name for p in lape_files)
        raise NeuronFormatError(
            f"{path} holds several LAPE files ({names}); pass the one to load, e.g. "
            f"from_pretrained('{path / lape_files[0].name}', languages=[...], d_mlp=...)."
        )
    contents = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    held = f"it holds {', '.join(contents[:8])}{' …' if len(contents) > 8 else ''}"
    where = f"The hub repository {origin[4:]!r}" if origin.startswith("hub:") else str(path)
    raise MissingFileError(
        f"{where} holds no neurons ({held if contents else 'it is empty'}): from_pretrained "
        f"reads a folder written by save_pretrained ({CONFIG_FILE} + {NEURONS_FILE}), a "
        f"{NEURONS_FILE}, or one LAPE list (*.pt / *.pth). Write one with "
        f"neurons.save_pretrained('{path}'), or pass the file to load."
    )


def _refuse_lape_options(options: LapeOptions, path: Path) -> None:
    given = options.given()
    if given:
        raise InvalidSettingError(
            f"{', '.join(f'{name}=' for name in given)} describe a LAPE list, but {path} is "
            f"an lsn_mech neuron file, which records them: leave them out (pick languages "
            f"afterwards with .subset([...]))."
        )


def _load_folder(cls: Any, folder: Path, options: LapeOptions) -> Any:
    """A `save_pretrained` folder: its config checked, then the checksummed neuron file."""
    config_path = folder / CONFIG_FILE
    config = read_json(config_path, fix=RESAVE)
    require_fields(
        config_path,
        config,
        {"format": str, "format_version": int, "neurons_file": str, "sha256": str},
        fix=RESAVE,
    )
    if config["format"] != FOLDER_FORMAT:
        raise NeuronFormatError(
            f"{config_path} describes {config['format']!r}, not a neuron folder "
            f"({FOLDER_FORMAT!r}). {RESAVE}"
        )
    if config["format_version"] > FOLDER_FORMAT_VERSION:
        raise NeuronFormatError(
            f"{config_path} uses neuron folder format version {config['format_version']}; "
            f"this lsn_mech reads up to version {FOLDER_FORMAT_VERSION}. Upgrade lsn_mech "
            "to read it."
        )
    name = config["neurons_file"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise NeuronFormatError(
            f"{config_path} names the neuron file {name!r}, which is not a file in the "
            f"folder. {RESAVE}"
        )
    neurons_path = require_file(folder / name, fix=RESAVE)
    _refuse_lape_options(options, neurons_path)
    if file_sha256(neurons_path, fix=RESAVE) != config["sha256"]:
        raise NeuronFormatError(
            f"{neurons_path} does not match the SHA-256 recorded in {CONFIG_FILE} (damaged, "
            f"cut short or replaced since it was saved). {RESAVE}"
        )
    return cls.load(neurons_path)


def _languages_file(lape_path: Path) -> Path | None:
    """The JSON beside a LAPE list that names its languages, if any."""
    stem = lape_path.name[: -len(lape_path.suffix)] if lape_path.suffix else lape_path.name
    for candidate in (
        lape_path.with_name(stem + LANGUAGES_SUFFIX),
        lape_path.with_name(lape_path.name + LANGUAGES_SUFFIX),
        lape_path.with_name("languages.json"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _sidecar(lape_path: Path) -> dict[str, Any]:
    """What the languages JSON says: a list of codes, or an object with ``languages`` and
    optionally ``d_mlp``, ``model_id``, ``site``."""
    path = _languages_file(lape_path)
    if path is None:
        return {}
    fix = (
        'Write it as a JSON list of language codes in file order (["en", "zh", ...]) or '
        'an object {"languages": [...], "d_mlp": ...}, or pass languages= and d_mlp=.'
    )
    value = read_json(path, fix=fix, kind=object)
    if isinstance(value, list):
        value = {"languages": value}
    if not isinstance(value, dict):
        raise NeuronFormatError(f"{path} holds a JSON {type(value).__name__}. {fix}")
    fields: dict[str, type | tuple[type, ...]] = {"languages": list}
    for name, kind in (("d_mlp", int), ("model_id", str), ("site", str)):
        if name in value:
            fields[name] = kind
    try:
        require_fields(path, value, fields, fix=fix)
    except CorruptFileError as exc:
        raise NeuronFormatError(str(exc)) from None
    return {**value, "languages_from": path.name}


def _load_lape(cls: Any, path: Path, options: LapeOptions, *, origin: str) -> Any:
    """A LAPE list with what it does not record taken from the options, the languages
    JSON beside it, or (languages only) the reference order of the published files."""
    try:
        source, obj = lape_format.read_lape(path)
    except NeuronFormatError as exc:
        raise NeuronFormatError(
            f"{path} is neither a folder written by save_pretrained, nor a neuron "
            f"{file_format.SUFFIX} file, nor a LAPE list. {exc}"
        ) from None
    side = _sidecar(path)
    count = len(obj) if isinstance(obj, (list, tuple)) else None
    languages: Sequence[str] | None = options.languages or side.get("languages")
    languages_from = "argument" if options.languages else side.get("languages_from")
    if languages is None and count == len(lape_format.REFERENCE_LANGUAGES):
        languages = lape_format.REFERENCE_LANGUAGES
        languages_from = "LAPE reference order (en, zh, fr, es, vi, id, ja)"
    if languages is None:
        raise InvalidSettingError(
            f"{path} is a LAPE list of {count} languages, which records no language codes: "
            f"pass languages=[...] in file order, or write them beside it as "
            f"{path.stem}{LANGUAGES_SUFFIX}."
        )
    d_mlp = options.d_mlp if options.d_mlp is not None else side.get("d_mlp")
    if d_mlp is None:
        raise InvalidSettingError(
            f"{path} is a LAPE list, which does not record d_mlp: pass d_mlp= (the model's "
            f"intermediate_size, e.g. 11008 for LLaMA-2 7B, 14336 for Mistral 7B)."
        )
    model_id = options.model_id or side.get("model_id")
    site = options.site or side.get("site") or DEFAULT_SITE
    codes = list(languages)
    sets = file_format.build(
        source,
        lambda: lape_format.sets_from_lape(
            obj, codes, d_mlp=int(d_mlp), site=site, model_id=model_id
        ),
        "Check the languages (in file order) and d_mlp passed to from_pretrained.",
    )
    provenance = Provenance(
        model_id=model_id,
        method="imported",
        parameters={"format": "lape", "source": origin, "languages_from": languages_from},
    )
    return cls(sets, provenance=provenance)
