"""The published LAPE neuron format (Tang et al., 2024), read into `NeuronSet`s.

A LAPE file is ``torch.save`` of a list over languages of lists over layers of 1-D
``LongTensor`` neuron indices (the authors publish ``<model>.neuron.pth`` files; their
languages 0-6 are en, zh, fr, es, vi, id, ja). It records neither the language order
nor ``d_mlp``. This module turns such a list into one `NeuronSet` per language without
knowing `LanguageNeurons`, so both `lsn_mech.neurons.io` (above the class) and the
class's own `from_pretrained` (`lsn_mech.neurons.pretrained`) build on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from lsn_mech.errors import NeuronFormatError, NeuronIndexError
from lsn_mech.files import require_file
from lsn_mech.neurons.neuron_set import NeuronSet

REFERENCE_LANGUAGES = ("en", "zh", "fr", "es", "vi", "id", "ja")
"""Language order of the neuron files published with the LAPE reference code."""


def check_languages(languages: Sequence[str]) -> list[str]:
    """The language codes as a list; refuses a bare string and duplicates."""
    if isinstance(languages, str):
        raise TypeError(
            f"languages must be a sequence of language codes, e.g. ['en', 'fr'], not the "
            f"string {languages!r}."
        )
    codes = list(languages)
    if len(set(codes)) != len(codes):
        raise NeuronFormatError(f"Duplicate language codes in {codes}.")
    return codes


def sets_from_lape(
    obj: object,
    languages: Sequence[str],
    *,
    d_mlp: int,
    site: str,
    model_id: str | None,
) -> dict[str, NeuronSet]:
    """One `NeuronSet` per language of a loaded LAPE list, in the order given."""
    codes = check_languages(languages)
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
    return sets


def read_lape(path: str | os.PathLike[str]) -> tuple[Path, object]:
    """``(path, object)`` of a LAPE file, unpickled with ``weights_only=True`` (no code runs)."""
    source = require_file(path, fix="Pass the path of a LAPE `activation_mask` file.")
    try:
        return source, torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have many types
        raise NeuronFormatError(
            f"Could not read {str(path)!r} as a LAPE file (a torch.save-d list of lists of "
            f"LongTensors) with weights_only=True: {exc}"
        ) from exc
