"""Neuron sets: which MLP neurons of a model matter for which language.

`NeuronSet` is an immutable, shape-aware set of ``(layer, index)`` neurons with
set algebra and masks; `LanguageNeurons` maps languages to sets; `.io`
saves and loads both losslessly and imports/exports the published LAPE format;
`.pretrained` shares them as a folder with a model card, locally or on the hub
(``LanguageNeurons.save_pretrained`` / ``from_pretrained`` / ``push_to_hub``).
"""

from lsn_mech.neurons.io import (
    NeuronFormatError,
    from_lape_file,
    from_lape_object,
    load,
    save,
    to_lape_file,
    to_lape_object,
)
from lsn_mech.neurons.language_neurons import LanguageNeurons, OverlapMatrix
from lsn_mech.neurons.neuron_set import NeuronSet, NotEnoughNeuronsError, Overlap

__all__ = [
    "LanguageNeurons",
    "NeuronFormatError",
    "NeuronSet",
    "NotEnoughNeuronsError",
    "Overlap",
    "OverlapMatrix",
    "from_lape_file",
    "from_lape_object",
    "load",
    "save",
    "to_lape_file",
    "to_lape_object",
]
