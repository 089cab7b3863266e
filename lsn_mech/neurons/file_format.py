"""The neuron file on disk: index tensors plus a JSON header in one ``.safetensors`` file.

This module knows the container (paths, the header key, the format tag and version,
atomic writes, per-layer tensor keys) but not the classes stored in it, so
`NeuronSet` and `LanguageNeurons` can save and load themselves through it while
`lsn_mech.neurons.io` (which builds either from one file) sits above all three: imports
flow one way, ``file_format ← neuron_set ← language_neurons ← io``.

Layout: an ``int64`` index tensor per layer under ``"{prefix}{layer}"`` (``prefix`` is
``""`` for a `NeuronSet` and ``"{language}/"`` inside `LanguageNeurons`; empty layers
are zero-length tensors, which safetensors round-trips) and a JSON document under the
header metadata key ``"lsn_mech"``. Nothing is pickled, so loading cannot run code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from jaxtyping import Int64
from torch import Tensor

from lsn_mech.errors import CorruptFileError, LsnMechError, MissingFileError, NeuronFormatError
from lsn_mech.files import (
    atomic_save_safetensors,
    parse_metadata,
    read_safetensors,
    require_fields,
)

FORMAT_NAME = "lsn_mech.neurons"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
META_KEY = "lsn_mech"

T = TypeVar("T")

REWRITE = "Save the neurons again with `lsn_mech.neurons.save`."
"""The fix named when a neuron file is broken: only a new save repairs it."""

_LOADERS = {"NeuronSet": "NeuronSet.load", "LanguageNeurons": "LanguageNeurons.load"}


def save_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``.safetensors`` appended unless it already ends with it."""
    path = Path(path)
    return path if path.name.endswith(SUFFIX) else path.with_name(path.name + SUFFIX)


def load_path(path: str | os.PathLike[str]) -> Path:
    """The existing file ``path`` or ``path.safetensors``; an error naming both otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    with_suffix = save_path(path)
    if with_suffix.is_file():
        return with_suffix
    raise MissingFileError(
        f"No neuron file at {str(path)!r} (nor {str(with_suffix)!r}); save one with "
        f"`lsn_mech.neurons.save(neurons, path)` first, or check the path."
    )


def layer_tensors(prefix: str, layers: Sequence[Int64[Tensor, " _n"]]) -> dict[str, Tensor]:
    """One contiguous tensor per layer under ``"{prefix}{layer}"``."""
    return {f"{prefix}{layer}": t.contiguous() for layer, t in enumerate(layers)}


def read_layers(tensors: dict[str, Tensor], prefix: str, n_layers: int) -> list[Tensor]:
    """The ``n_layers`` tensors stored under ``prefix`` (unchecked until a `NeuronSet` is
    built from them), or an error if one is missing."""
    layers = []
    for layer in range(n_layers):
        key = f"{prefix}{layer}"
        if key not in tensors:
            raise NeuronFormatError(
                f"Neuron file is missing tensor {key!r}; it is truncated or edited. {REWRITE}"
            )
        layers.append(tensors[key])
    return layers


def write(tensors: dict[str, Tensor], meta: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``tensors`` with ``meta`` (plus the format tag) to ``path`` atomically.

    The file is written to a temporary name first and then moved into place, so an
    interrupted save never leaves a truncated file behind. Returns the path written.
    """
    target = save_path(path)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta}
    metadata = {META_KEY: json.dumps(header, ensure_ascii=False)}
    return atomic_save_safetensors(target, tensors, metadata)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The header and tensors of a neuron file, after checking its format tag and version."""
    resolved = load_path(path)
    fix = f"For a LAPE `.pt` list use `lsn_mech.neurons.from_lape_file`; otherwise {REWRITE}"
    try:
        header, tensors = read_safetensors(resolved, fix=fix)
        if META_KEY not in header:
            raise NeuronFormatError(
                f"{str(resolved)!r} has no {META_KEY!r} metadata: it was not written by "
                f"lsn_mech.neurons.save. Re-save the neurons with `lsn_mech.neurons.save`."
            )
        meta = parse_metadata(resolved, header, META_KEY, fix=REWRITE)
    except NeuronFormatError:
        raise
    except CorruptFileError as exc:
        raise NeuronFormatError(str(exc)) from None
    if meta.get("format") != FORMAT_NAME:
        raise NeuronFormatError(
            f"{str(resolved)!r} holds {meta.get('format')!r}, not neurons; load it with the "
            f"class that wrote it, or pass a file written by `lsn_mech.neurons.save`."
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NeuronFormatError(
            f"{str(resolved)!r} uses neuron format version {version!r}; this lsn_mech reads "
            f"up to version {FORMAT_VERSION}. Upgrade lsn_mech to read it."
        )
    return meta, tensors


def check_fields(meta: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a header of a known kind that lacks a field or holds one of the wrong type
    (a hand edit), before any of it is used to rebuild the neurons."""
    fields: dict[str, type | tuple[type, ...]] = {
        "kind": str,
        "n_layers": int,
        "d_mlp": int,
        "site": str,
        "model_id": (str, type(None)),
    }
    if meta.get("kind") == "LanguageNeurons":
        fields["languages"] = list
    try:
        require_fields(load_path(path), meta, fields, fix=REWRITE)
    except CorruptFileError as exc:
        raise NeuronFormatError(str(exc)) from None


def check_kind(meta: dict[str, Any], path: str | os.PathLike[str], expected: str) -> None:
    """Raise unless the file holds ``expected`` (``"NeuronSet"`` or ``"LanguageNeurons"``)
    with every field that kind needs."""
    kind = meta.get("kind")
    if kind == expected:
        check_fields(meta, path)
        return
    if kind == "LanguageNeurons":
        raise NeuronFormatError(
            f"{str(path)!r} holds LanguageNeurons ({', '.join(meta.get('languages', []))}), "
            f"not a single NeuronSet; use `LanguageNeurons.load` and pick a language."
        )
    if kind == "NeuronSet":
        raise NeuronFormatError(
            f"{str(path)!r} holds a single NeuronSet, not LanguageNeurons; use "
            f"`NeuronSet.load`, or wrap it: `LanguageNeurons({{'xx': neuron_set}})`."
        )
    raise NeuronFormatError(
        f"{str(path)!r} holds an unknown kind of neurons: {kind!r}; this lsn_mech reads "
        f"{' and '.join(_LOADERS)} files ({', '.join(_LOADERS.values())})."
    )


def build(path: str | os.PathLike[str], make: Callable[[], T], fix: str = REWRITE) -> T:
    """``make()`` (the neurons built from a file just read), with any refusal of their
    contents (indices out of range, a header that disagrees with the tensors after a hand
    edit) turned into a `NeuronFormatError` that names the file and ``fix``."""
    try:
        return make()
    except (LsnMechError, ValueError, TypeError, KeyError, IndexError) as exc:
        if isinstance(exc, NeuronFormatError) and str(path) in str(exc):
            raise
        raise NeuronFormatError(
            f"{str(path)!r} does not hold usable neurons ({exc}); was it damaged or edited "
            f"by hand? {fix}"
        ) from None
