"""Argument checks for neuron sets: the wrong kind of object is refused by name, with the fix.

A `LanguageNeurons` is a mapping of sets, and it has ``n_layers``, ``d_mlp``, ``site``
and ``to_mask()`` like a single `NeuronSet`; passed where one set is meant, code that
only reads those attributes runs and edits the wrong neurons. Every public entry point
that takes a set calls `expect_neuron_set` first, so the mix-up fails before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lsn_mech.errors import WrongInputError
from lsn_mech.neurons.language_neurons import LanguageNeurons
from lsn_mech.neurons.neuron_set import NeuronSet


def _languages(value: Mapping[Any, Any]) -> list[str]:
    return [str(language) for language in value]


def _listed(languages: list[str], limit: int = 8) -> str:
    shown = ", ".join(languages[:limit])
    return shown + (f", … ({len(languages)} in all)" if len(languages) > limit else "")


def _fix_for(value: Any, argument: str) -> str:
    """What to pass instead of ``value`` where one `NeuronSet` is meant."""
    if isinstance(value, Mapping) and value:
        languages = _languages(value)
        return (
            f"it holds one set per language ({_listed(languages)}); pass one of them, "
            f"e.g. {argument}[{languages[0]!r}], or all together with "
            f"{argument}.union() (LanguageNeurons) / a | b."
        )
    if isinstance(value, Tensor):
        return "build a set from a [layer, d_mlp] bool mask with NeuronSet.from_mask(mask)."
    if isinstance(value, (str, os.PathLike)):
        return "load the file first with lsn_mech.neurons.load(path)."
    if isinstance(value, (list, tuple)):
        return (
            "build a set from (layer, index) pairs with "
            "NeuronSet.from_pairs(pairs, n_layers=..., d_mlp=...)."
        )
    return "detect one with lsn_mech.detect (e.g. lape(stats)['fr']) or build a NeuronSet."


def expect_neuron_set(value: Any, argument: str = "neurons", *, caller: str) -> NeuronSet:
    """``value`` if it is a `NeuronSet`, else a `WrongInputError` saying what was meant.

    Args:
        value: what the user passed.
        argument: the parameter's name, as the message shows it.
        caller: the public function, as the message shows it (``"lsn_mech.deactivate"``).
    """
    if isinstance(value, NeuronSet):
        return value
    fix = _fix_for(value, argument)
    raise WrongInputError(f"{caller}: {argument} must be one NeuronSet, got {_kind(value)}; {fix}")


def expect_language_neurons(
    value: Any, argument: str = "neurons", *, caller: str
) -> LanguageNeurons:
    """``value`` if it is a `LanguageNeurons`, else a `WrongInputError` naming the fix."""
    if isinstance(value, LanguageNeurons):
        return value
    if isinstance(value, NeuronSet):
        fix = "wrap it with its language: LanguageNeurons({'fr': neuron_set})."
    elif isinstance(value, Mapping) and all(isinstance(v, NeuronSet) for v in value.values()):
        fix = "wrap the mapping: LanguageNeurons(mapping)."
    else:
        fix = "detect them with lsn_mech.detect (e.g. lape(stats)) or load a saved file."
    raise WrongInputError(
        f"{caller}: {argument} must be a LanguageNeurons (one NeuronSet per language), got "
        f"{_kind(value)}; {fix}"
    )


def _kind(value: Any) -> str:
    if isinstance(value, LanguageNeurons):
        return f"a LanguageNeurons of {len(value)} languages"
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
