"""The statistics file on disk: an `ActivationStats`' tensors plus a JSON header.

Written through `lsn_mech.files` (atomic commit, content checksum in the header) and
checked field by field on reading, so a truncated, damaged, foreign or hand-edited file
is refused with a `CorruptFileError` that names it and the fix, and is never read as
statistics of another shape. This module knows the layout, not the class:
`ActivationStats.save`/`load` and the run checkpoints (`lsn_mech.stats.checkpoint`) go
through it. Imports flow one way: ``registry ← stats_file ← container ← checkpoint``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsn_mech.errors import CorruptFileError, LsnMechError
from lsn_mech.files import (
    parse_metadata,
    read_safetensors,
    require_fields,
    save_checked_safetensors,
    verify_checksum,
)
from lsn_mech.stats.registry import ACCUMULATOR_TYPES, build_accumulator

META_KEY = "lsn_mech"
FORMAT = "lsn_mech.ActivationStats"
FORMAT_VERSION = 2
"""2: the header carries a content checksum (version 1 files, without one, still load)."""
LOAD_FIX = (
    "Re-collect the statistics with `lsn-mech stats` or lsn_mech.collect_stats(...).save(path)."
)
"""What to do about a broken statistics file that is not part of a run folder."""

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "languages": list,
    "n_layers": int,
    "d_mlp": int,
    "sites": list,
    "accumulators": list,
    "provenance": dict,
}


def write_stats_file(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    records: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Commit statistics atomically: ``meta`` under ``"lsn_mech"``, each of ``records``
    (e.g. a run's position) under its own header key, all covered by one checksum."""
    header = {META_KEY: json.dumps(meta, ensure_ascii=False)}
    header.update({key: json.dumps(value) for key, value in (records or {}).items()})
    return save_checked_safetensors(path, tensors, header)


def read_stats_file(
    path: str | os.PathLike[str], *, fix: str = LOAD_FIX, checksum_required: bool = False
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, str]]:
    """``(meta, tensors, raw header)`` of a statistics file, every part checked, on the CPU.

    Version 1 files (written before checksums existed) load unless ``checksum_required``.
    """
    source = Path(path)
    raw, tensors = read_safetensors(source, fix=fix)
    meta = parse_metadata(source, raw, META_KEY, fix=fix)
    version = meta.get("format_version")
    required = checksum_required or not (isinstance(version, int) and version < 2)
    verify_checksum(source, tensors, raw, fix=fix, required=required)
    check_stats_contents(source, meta, tensors, fix=fix)
    return meta, tensors, raw


def check_stats_contents(
    path: Path, meta: Mapping[str, Any], tensors: Mapping[str, Tensor], *, fix: str
) -> None:
    """Refuse a header or tensor that does not describe statistics of the shape it claims."""
    found = meta.get("format")
    if found != FORMAT:
        kind = f"a {found!r} file" if isinstance(found, str) else "a file of another kind"
        raise _refuse(path, f"is {kind}, not activation statistics", fix)
    require_fields(path, meta, _FIELDS, fix=fix)
    if meta["format_version"] > FORMAT_VERSION:
        raise _refuse(
            path,
            f"has statistics format version {meta['format_version']}, newer than this "
            f"lsn_mech reads ({FORMAT_VERSION})",
            "Upgrade lsn_mech (pip install -U lsn-mech).",
        )
    languages, sites = meta["languages"], meta["sites"]
    if not all(isinstance(x, str) for x in languages + sites) or len(set(languages)) < len(
        languages
    ):
        raise _refuse(path, "has languages or sites that are not distinct names", fix)
    if meta["format_version"] < 1 or meta["n_layers"] < 1 or meta["d_mlp"] < 1:
        raise _refuse(path, "has a format version, layer or neuron count below 1", fix)
    _check_tokens(path, tensors, len(languages), fix)
    owned = _check_accumulators(path, meta, tensors, fix)
    shape = (meta["n_layers"], meta["d_mlp"], len(languages))
    for key, tensor in tensors.items():
        if key == "tokens":
            continue
        site = key.split("/", 1)[0]
        if site not in sites or "/" not in key:
            raise _refuse(path, f"holds a tensor {key!r} outside its sites {sites}", fix)
        if tensor.dim() < 3 or (*tensor.shape[:2], tensor.shape[-1]) != shape:
            raise _refuse(
                path,
                f"holds {key!r} of shape {tuple(tensor.shape)}, which does not fit "
                f"{shape[0]} layers x {shape[1]} neurons x {shape[2]} languages",
                fix,
            )
        if owned is not None and key not in owned:
            raise _refuse(path, f"holds a tensor {key!r} that none of its accumulators keeps", fix)


def _check_tokens(path: Path, tensors: Mapping[str, Tensor], n_languages: int, fix: str) -> None:
    tokens = tensors.get("tokens")
    if tokens is None:
        raise _refuse(path, "has no 'tokens' tensor", fix)
    if tokens.dtype != torch.int64 or tuple(tokens.shape) != (n_languages,):
        raise _refuse(
            path,
            f"has 'tokens' of dtype {tokens.dtype} and shape {tuple(tokens.shape)}, "
            f"not int64 of shape ({n_languages},)",
            fix,
        )
    if bool((tokens < 0).any()):
        raise _refuse(path, "has negative token counts", fix)


def _check_accumulators(
    path: Path, meta: Mapping[str, Any], tensors: Mapping[str, Tensor], fix: str
) -> set[str] | None:
    """Check the tensors of every registered accumulator exactly (shape, integer or
    floating dtype); return every key the accumulators own, or ``None`` when one of them
    is not registered in this process (then only the generic shape check applies)."""
    owned: set[str] | None = set()
    for config in meta["accumulators"]:
        if not isinstance(config, dict):
            raise _refuse(path, f"has an accumulator record {config!r} that is not an object", fix)
        require_fields(path, config, {"name": str, "sites": list}, fix=fix)
        if config["name"] not in ACCUMULATOR_TYPES:
            owned = None
            continue
        try:
            expected = build_accumulator(config).init_state(
                meta["n_layers"], meta["d_mlp"], len(meta["languages"]), torch.device("meta")
            )
        except (LsnMechError, TypeError, ValueError) as exc:
            problem = f"has an unusable accumulator record {config!r} ({exc})"
            raise _refuse(path, problem, fix) from None
        for key, template in expected.items():
            tensor = tensors.get(key)
            if tensor is None:
                raise _refuse(path, f"lacks the tensor {key!r} of its {config['name']!r}", fix)
            if tensor.shape != template.shape or (
                tensor.is_floating_point() != template.is_floating_point()
            ):
                raise _refuse(
                    path,
                    f"holds {key!r} as {tensor.dtype} {tuple(tensor.shape)}, not "
                    f"{template.dtype} {tuple(template.shape)}",
                    fix,
                )
        if owned is not None:
            owned.update(expected)
    return owned


def _refuse(path: Path, problem: str, fix: str) -> CorruptFileError:
    return CorruptFileError(f"{path} {problem}. {fix}")
