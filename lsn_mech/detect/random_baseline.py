"""The random baseline (Tang et al. §3.1 (e)): as many neurons per layer, drawn at random.

Exported as ``lsn_mech.detect.random``; the module is named ``random_baseline`` so that
it does not shadow the standard library's ``random`` inside the package.
"""

from __future__ import annotations

import hashlib
from typing import overload

from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance


def language_seed(seed: int, language: str) -> int:
    """The seed used for one language: a stable 63-bit hash of ``(seed, language)``.

    Keyed by the language *name*, so a language gets the same random set whatever
    other languages are drawn alongside it, and different languages get independent
    draws even when their per-layer counts agree.
    """
    digest = hashlib.sha256(f"lsn_mech.detect.random:{seed}:{language}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@overload
def random(
    like: LanguageNeurons, *, seed: int = 0, exclude_own: bool = False
) -> LanguageNeurons: ...


@overload
def random(like: NeuronSet, *, seed: int = 0, exclude_own: bool = False) -> NeuronSet: ...


def random(
    like: LanguageNeurons | NeuronSet,
    *,
    seed: int = 0,
    exclude_own: bool = False,
) -> LanguageNeurons | NeuronSet:
    """Random neurons with the same per-layer counts as ``like``, per language.

    Each language's set is ``like[lang].random_like(language_seed(seed, lang))``:
    uniform without replacement within each layer, deterministic for a given ``seed``.

    - ``like``: the neurons whose per-layer counts to copy (e.g. the result of ``lape``).
    - ``seed``: base seed; per-language seeds are derived from it and the language code.
    - ``exclude_own``: draw each language's set disjoint from that language's own set.

    Returns a ``LanguageNeurons`` with provenance method ``"random"`` (its parameters:
    the seed, the per-language seeds, ``exclude_own``, the per-layer counts and the method
    ``like`` came from). A ``NeuronSet`` gives a ``NeuronSet`` drawn with ``seed`` itself
    (a set carries no provenance).
    """
    if isinstance(like, NeuronSet):
        return like.random_like(seed, exclude=like if exclude_own else None)
    if not isinstance(like, LanguageNeurons):
        kind = type(like).__name__
        raise TypeError(f"random() needs LanguageNeurons or a NeuronSet, got {kind}.")
    seeds = {lang: language_seed(seed, lang) for lang in like}
    sets = {
        lang: s.random_like(seeds[lang], exclude=s if exclude_own else None)
        for lang, s in like.items()
    }
    source = like.provenance
    provenance = Provenance(
        model_id=like.model_id,
        corpus=source.corpus if source else None,
        corpus_hash=source.corpus_hash if source else None,
        method="random",
        parameters={
            "seed": seed,
            "language_seeds": seeds,
            "exclude_own": exclude_own,
            "like_method": source.method if source else None,
            "per_layer": like.per_layer(),
        },
    )
    return LanguageNeurons(sets, provenance=provenance)
