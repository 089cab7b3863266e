"""lsn_mech: find, test and use language-specific neurons in multilingual language models.

    import lsn_mech as lm
    model = lm.load_model("gemma-3-270m")
    corpus = lm.corpora.bible(["en", "fr", "zh"])
    stats = lm.collect_stats(model, corpus, max_tokens_per_language=50_000)
    with lm.deactivate(model, neurons["fr"]):
        ppl = lm.evaluate.perplexity(model, corpus.test("fr"))

Names are imported lazily so that ``import lsn_mech`` and ``lsn-mech --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lsn_mech._version import __version__

_EXPORTS: dict[str, str] = {
    "load_model": "lsn_mech.models",
    "hook_sites": "lsn_mech.models",
    "collect_stats": "lsn_mech.stats",
    "ActivationStats": "lsn_mech.stats",
    "NeuronSet": "lsn_mech.neurons",
    "LanguageNeurons": "lsn_mech.neurons",
    "deactivate": "lsn_mech.interventions",
    "set_to": "lsn_mech.interventions",
    "activate": "lsn_mech.interventions",
    "scale": "lsn_mech.interventions",
    "add": "lsn_mech.interventions",
    "compose": "lsn_mech.interventions",
    "Provenance": "lsn_mech.provenance",
    "LsnMechError": "lsn_mech.errors",
}
_SUBMODULES = (
    "corpora",
    "detect",
    "errors",
    "evaluate",
    "experiments",
    "interventions",
    "models",
    "neurons",
    "peft",
    "pipelines",
    "plots",
    "results",
    "stats",
    "training",
)

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from lsn_mech import (
        corpora,
        detect,
        errors,
        evaluate,
        experiments,
        interventions,
        models,
        neurons,
        pipelines,
        plots,
        stats,
    )
    from lsn_mech.errors import LsnMechError
    from lsn_mech.interventions import activate, add, compose, deactivate, scale, set_to
    from lsn_mech.models import hook_sites, load_model
    from lsn_mech.neurons import LanguageNeurons, NeuronSet
    from lsn_mech.provenance import Provenance
    from lsn_mech.stats import ActivationStats, collect_stats


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"lsn_mech.{name}")
    else:
        raise AttributeError(f"module 'lsn_mech' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
