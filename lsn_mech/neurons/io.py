"""Saving and loading neuron sets: our safetensors format, and the published LAPE lists.

Our format is one ``.safetensors`` file: an ``int64`` index tensor per layer (keys
``"{layer}"`` for a `NeuronSet`, ``"{language}/{layer}"`` for
`LanguageNeurons`; empty layers are stored as zero-length tensors, which
safetensors round-trips), plus a JSON document under the header metadata key
``"lsn_mech"`` with the shape, site, model ids, language order, provenance and format
version. Nothing is pickled, so loading a file cannot run code. The container lives in
`lsn_mech.neurons.file_format`, through which both classes save and load themselves;
this module sits above them and only picks which class a file holds.

The LAPE format (Tang et al., 2024, reference code) is a ``torch.save``-d list over
languages of lists over layers of 1-D ``LongTensor`` neuron indices. It records
neither the language order nor ``d_mlp``; both must be passed in when importing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from lsn_mech.errors import NeuronFormatError as NeuronFormatError  # re-exported
from lsn_mech.files import atomic_write
from lsn_mech.neurons import file_format, lape_format
from lsn_mech.neurons.language_neurons import LanguageNeurons
from lsn_mech.neurons.neuron_set import DEFAULT_SITE, NeuronSet
from lsn_mech.provenance import Provenance

FORMAT_NAME = file_format.FORMAT_NAME
FORMAT_VERSION = file_format.FORMAT_VERSION
SUFFIX = file_format.SUFFIX


# ---------------------------------------------------------------------- our format


def save(obj: NeuronSet | LanguageNeurons, path: str | os.PathLike[str]) -> Path:
    """Write a `NeuronSet` or `LanguageNeurons` losslessly to safetensors.

    ``.safetensors`` is appended to ``path`` unless it already ends with it. The file is
    written to a temporary name first and then moved into place, so an interrupted save
    never leaves a truncated file behind. Returns the path written.
    """
    return obj.save(path)


def load(path: str | os.PathLike[str]) -> NeuronSet | LanguageNeurons:
    """Read what `save` wrote: a `NeuronSet` or `LanguageNeurons`.

    ``path`` may be given with or without the ``.safetensors`` suffix.
    """
    meta, tensors = file_format.read(path)
    if meta.get("kind") == "LanguageNeurons":
        return file_format.build(path, lambda: LanguageNeurons._from_file(meta, tensors))
    file_format.check_kind(meta, path, "NeuronSet")
    return file_format.build(path, lambda: NeuronSet._from_file(meta, tensors))


def load_neuron_set(path: str | os.PathLike[str]) -> NeuronSet:
    """Like `load`, but insist on a single `NeuronSet`."""
    return NeuronSet.load(path)


def load_language_neurons(path: str | os.PathLike[str]) -> LanguageNeurons:
    """Like `load`, but insist on `LanguageNeurons`."""
    return LanguageNeurons.load(path)


# ---------------------------------------------------------------------- LAPE format


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
    sets = lape_format.sets_from_lape(obj, languages, d_mlp=d_mlp, site=site, model_id=model_id)
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
    source, obj = lape_format.read_lape(path)
    if provenance is None:
        provenance = Provenance(
            model_id=model_id,
            method="imported",
            parameters={"format": "lape", "source": str(path)},
        )
    fix = "Check the languages (in file order) and d_mlp passed to from_lape_file."
    return file_format.build(
        source,
        lambda: from_lape_object(
            obj, languages, d_mlp=d_mlp, site=site, model_id=model_id, provenance=provenance
        ),
        fix,
    )


def to_lape_object(language_neurons: LanguageNeurons) -> list[list[torch.Tensor]]:
    """The LAPE structure: a list over languages of lists over layers of LongTensors."""
    return [list(s.layers) for s in language_neurons.values()]


def to_lape_file(language_neurons: LanguageNeurons, path: str | os.PathLike[str]) -> Path:
    """Write neurons in the LAPE reference format (``torch.save`` of `to_lape_object`).

    The file records neither the language order (``language_neurons.languages``) nor
    ``d_mlp``, site, model id or provenance: keep them alongside it. Returns the path.
    """
    lape_object = to_lape_object(language_neurons)
    return atomic_write(path, lambda temporary: torch.save(lape_object, temporary))
