"""Saving and loading neuron sets: our safetensors format, and the published LAPE lists.

Our format is one ``.safetensors`` file: an ``int64`` index tensor per layer (keys
``"{layer}"`` for a `NeuronSet`, ``"{language}/{layer}"`` for
`LanguageNeurons`; empty layers are stored as zero-length tensors, which
safetensors round-trips), plus a JSON document under the header metadata key
``"lsn_mech"`` with the shape, site, model ids, language order, provenance and format
version. Nothing is pickled, so loading a file cannot run code.

The LAPE format (Tang et al., 2024, reference code) is a ``torch.save``-d list over
languages of lists over layers of 1-D ``LongTensor`` neuron indices. It records
neither the language order nor ``d_mlp``; both must be passed in when importing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lsn_mech.errors import NeuronFormatError, NeuronIndexError
from lsn_mech.neurons.language_neurons import LanguageNeurons
from lsn_mech.neurons.neuron_set import DEFAULT_SITE, NeuronSet
from lsn_mech.provenance import Provenance

FORMAT_NAME = "lsn_mech.neurons"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_META_KEY = "lsn_mech"


# ---------------------------------------------------------------------- our format


def _save_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path if path.name.endswith(SUFFIX) else path.with_name(path.name + SUFFIX)


def _load_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    with_suffix = _save_path(path)
    if with_suffix.is_file():
        return with_suffix
    raise FileNotFoundError(
        f"No neuron file at {str(path)!r} (nor {str(with_suffix)!r}); save one with "
        f"`lsn_mech.neurons.save(neurons, path)` first, or check the path."
    )


def _set_meta(s: NeuronSet) -> dict[str, Any]:
    return {"n_layers": s.n_layers, "d_mlp": s.d_mlp, "site": s.site, "model_id": s.model_id}


def save(obj: NeuronSet | LanguageNeurons, path: str | os.PathLike[str]) -> Path:
    """Write a `NeuronSet` or `LanguageNeurons` losslessly to safetensors.

    ``.safetensors`` is appended to ``path`` unless it already ends with it. The file is
    written to a temporary name first and then moved into place, so an interrupted save
    never leaves a truncated file behind. Returns the path written.
    """
    target = _save_path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    if isinstance(obj, NeuronSet):
        meta.update(kind="NeuronSet", **_set_meta(obj))
        for layer, t in enumerate(obj.layers):
            tensors[str(layer)] = t.contiguous()
    else:
        meta.update(
            kind="LanguageNeurons",
            n_layers=obj.n_layers,
            d_mlp=obj.d_mlp,
            site=obj.site,
            model_id=obj.model_id,
            languages=list(obj.languages),
            model_ids={language: s.model_id for language, s in obj.items()},
            provenance=None if obj.provenance is None else obj.provenance.to_dict(),
        )
        for language, s in obj.items():
            for layer, t in enumerate(s.layers):  # `.layers` copies: no shared storage
                tensors[f"{language}/{layer}"] = t.contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, ensure_ascii=False)})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise NeuronFormatError(
            f"{str(path)!r} is not a readable safetensors file ({exc}). For a LAPE `.pt` "
            f"list use `lsn_mech.neurons.from_lape_file`."
        ) from exc
    if _META_KEY not in header:
        raise NeuronFormatError(
            f"{str(path)!r} has no {_META_KEY!r} metadata: it was not written by "
            f"lsn_mech.neurons.save. Re-save the neurons with `lsn_mech.neurons.save`."
        )
    meta = json.loads(header[_META_KEY])
    if meta.get("format") != FORMAT_NAME:
        raise NeuronFormatError(f"{str(path)!r} holds {meta.get('format')!r}, not neurons.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NeuronFormatError(
            f"{str(path)!r} uses neuron format version {version!r}; this lsn_mech reads up to "
            f"version {FORMAT_VERSION}. Upgrade lsn_mech to read it."
        )
    return meta, tensors


def _build_set(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str, model_id: str | None
) -> NeuronSet:
    layers = []
    for layer in range(int(meta["n_layers"])):
        key = f"{prefix}{layer}"
        if key not in tensors:
            raise NeuronFormatError(f"Neuron file is missing tensor {key!r}; it is truncated.")
        layers.append(tensors[key])
    return NeuronSet(layers, d_mlp=int(meta["d_mlp"]), site=meta["site"], model_id=model_id)


def load(path: str | os.PathLike[str]) -> NeuronSet | LanguageNeurons:
    """Read what `save` wrote: a `NeuronSet` or `LanguageNeurons`.

    ``path`` may be given with or without the ``.safetensors`` suffix.
    """
    resolved = _load_path(path)
    meta, tensors = _read(resolved)
    kind = meta.get("kind")
    if kind == "NeuronSet":
        return _build_set(meta, tensors, "", meta.get("model_id"))
    if kind == "LanguageNeurons":
        model_ids = meta.get("model_ids") or {}
        sets = {
            language: _build_set(meta, tensors, f"{language}/", model_ids.get(language))
            for language in meta["languages"]
        }
        provenance = meta.get("provenance")
        return LanguageNeurons(
            sets, provenance=None if provenance is None else Provenance.from_dict(provenance)
        )
    raise NeuronFormatError(f"{str(resolved)!r} holds an unknown kind of neurons: {kind!r}.")


def load_neuron_set(path: str | os.PathLike[str]) -> NeuronSet:
    """Like `load`, but insist on a single `NeuronSet`."""
    obj = load(path)
    if not isinstance(obj, NeuronSet):
        raise NeuronFormatError(
            f"{str(path)!r} holds LanguageNeurons ({', '.join(obj.languages)}), not a single "
            f"NeuronSet; use `LanguageNeurons.load` and pick a language."
        )
    return obj


def load_language_neurons(path: str | os.PathLike[str]) -> LanguageNeurons:
    """Like `load`, but insist on `LanguageNeurons`."""
    obj = load(path)
    if not isinstance(obj, LanguageNeurons):
        raise NeuronFormatError(
            f"{str(path)!r} holds a single NeuronSet, not LanguageNeurons; use "
            f"`NeuronSet.load`, or wrap it: `LanguageNeurons({{'xx': neuron_set}})`."
        )
    return obj


# ---------------------------------------------------------------------- LAPE format


def _check_languages(languages: Sequence[str]) -> list[str]:
    if isinstance(languages, str):
        raise TypeError(
            f"languages must be a sequence of language codes, e.g. ['en', 'fr'], not the "
            f"string {languages!r}."
        )
    codes = list(languages)
    if len(set(codes)) != len(codes):
        raise NeuronFormatError(f"Duplicate language codes in {codes}.")
    return codes


def from_lape_object(
    obj: object,
    languages: Sequence[str],
    *,
    d_mlp: int,
    site: str = DEFAULT_SITE,
    model_id: str | None = None,
    provenance: Provenance | None = None,
) -> LanguageNeurons:
    """Convert an already-loaded LAPE list (languages × layers × index tensors).

    Args:
        obj: ``obj[i][layer]`` is a 1-D integer tensor (or list) of neuron indices of
            language ``languages[i]``.
        languages: language codes in the order the list was written.
        d_mlp: neurons per layer of the model (not recorded in LAPE files).
        site: hook site the neurons live at; LAPE's are the down projection's input.
        model_id: model the neurons belong to, if known.
        provenance: recorded on the result; by default, a note that it was imported.
    """
    codes = _check_languages(languages)
    if not isinstance(obj, (list, tuple)):
        raise NeuronFormatError(
            f"A LAPE object is a list over languages of lists over layers of index "
            f"tensors; got {type(obj).__name__}."
        )
    if len(obj) != len(codes):
        raise NeuronFormatError(
            f"The LAPE list holds {len(obj)} languages but {len(codes)} language codes were "
            f"given ({', '.join(codes)}); pass exactly one code per entry, in the order "
            f"the file was written."
        )
    n_layers = None
    sets: dict[str, NeuronSet] = {}
    for language, layers in zip(codes, obj, strict=True):
        if not isinstance(layers, (list, tuple)):
            raise NeuronFormatError(
                f"Language {language!r}: expected a list over layers, got {type(layers).__name__}."
            )
        if n_layers is None:
            n_layers = len(layers)
        elif len(layers) != n_layers:
            raise NeuronFormatError(
                f"Language {language!r} has {len(layers)} layers but {codes[0]!r} has "
                f"{n_layers}; every language must list every layer of the same model."
            )
        try:
            sets[language] = NeuronSet(layers, d_mlp=d_mlp, site=site, model_id=model_id)
        except NeuronIndexError as exc:
            raise NeuronIndexError(
                f"Language {language!r}: {exc} LAPE files do not record d_mlp: pass the "
                f"d_mlp of the model the file was computed on."
            ) from None
    if provenance is None:
        provenance = Provenance(model_id=model_id, method="imported", parameters={"format": "lape"})
    return LanguageNeurons(sets, provenance=provenance)


def from_lape_file(
    path: str | os.PathLike[str],
    languages: Sequence[str],
    *,
    d_mlp: int,
    site: str = DEFAULT_SITE,
    model_id: str | None = None,
    provenance: Provenance | None = None,
) -> LanguageNeurons:
    """Load a LAPE ``activation_mask`` file (``torch.load(..., weights_only=True)``).

    See `from_lape_object` for the arguments; ``languages`` must list the
    languages in the order the file was written.
    """
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors have many types
        raise NeuronFormatError(
            f"Could not read {str(path)!r} as a LAPE file (a torch.save-d list of lists of "
            f"LongTensors) with weights_only=True: {exc}"
        ) from exc
    if provenance is None:
        provenance = Provenance(
            model_id=model_id,
            method="imported",
            parameters={"format": "lape", "source": str(path)},
        )
    return from_lape_object(
        obj, languages, d_mlp=d_mlp, site=site, model_id=model_id, provenance=provenance
    )


def to_lape_object(language_neurons: LanguageNeurons) -> list[list[torch.Tensor]]:
    """The LAPE structure: a list over languages of lists over layers of LongTensors."""
    return [list(s.layers) for s in language_neurons.values()]


def to_lape_file(language_neurons: LanguageNeurons, path: str | os.PathLike[str]) -> Path:
    """Write neurons in the LAPE reference format (``torch.save`` of `to_lape_object`).

    The file records neither the language order (``language_neurons.languages``) nor
    ``d_mlp``, site, model id or provenance: keep them alongside it. Returns the path.
    """
    path = Path(path)
    torch.save(to_lape_object(language_neurons), path)
    return path
