"""The random baseline (Tang et al. §3.1 (e)): as many neurons per layer, drawn at random.

Exported as ``lsn_mech.detect.random``; the module is named ``random_baseline`` so that
it does not shadow the standard library's ``random`` inside the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, overload

from lsn_mech.detect._common import DetectorInputError
from lsn_mech.detect.registry import Detection, DetectorSpec, get, register, run
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


@register("random", label="random")
@dataclasses.dataclass(frozen=True)
class RandomSpec(DetectorSpec):
    """The random baseline's parameters: which detector's per-layer counts to copy, and seeds.

    ``detect`` takes statistics (then it first runs the detector named ``like`` with its
    paper defaults, and copies that result's per-layer counts) or the ``LanguageNeurons``
    to copy directly (then ``like`` is not used; provenance records ``like_method``).
    """

    reads: ClassVar[str] = "what the detector `like` reads, or the LanguageNeurons to copy"

    like: str | None = "lape"
    """Registered detector whose per-layer counts are copied (Tang et al.: LAPE's).
    ``None``: the source must be the ``LanguageNeurons`` to copy."""
    seed: int = 0
    """Base seed; per-language seeds are derived from it and the language code."""
    exclude_own: bool = False
    """Draw each language's set disjoint from that language's own set."""

    def __post_init__(self) -> None:
        if self.like == "random":
            raise DetectorInputError("random cannot copy itself: like='random'; use 'lape'.")
        if self.like is not None:
            get(self.like)  # UnknownDetectorError lists the registered names

    def detect(
        self,
        source: Any,
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> Detection:
        """Random neurons with the per-layer counts of ``like``'s (or ``source``'s) neurons."""
        if isinstance(source, LanguageNeurons):
            like = source.subset(languages) if languages is not None else source
        elif self.like is None:
            raise DetectorInputError(
                f"random with like=None copies given neurons: pass LanguageNeurons, not "
                f"{type(source).__name__}, or name a detector to run, e.g. like='lape'."
            )
        else:
            like = run(self.like, source, languages=languages, model_id=model_id).neurons
        seeds = {lang: language_seed(self.seed, lang) for lang in like}
        sets = {
            lang: s.random_like(seeds[lang], exclude=s if self.exclude_own else None)
            for lang, s in like.items()
        }
        origin = like.provenance
        provenance = Provenance(
            model_id=like.model_id,
            corpus=origin.corpus if origin else None,
            corpus_hash=origin.corpus_hash if origin else None,
            method=self.method or self.name,
            parameters={
                **self.parameters(),
                "language_seeds": seeds,
                "like_method": origin.method if origin else None,
                "per_layer": like.per_layer(),
            },
        )
        return Detection(neurons=LanguageNeurons(sets, provenance=provenance), scores=None)


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
    spec = RandomSpec(like=None, seed=seed, exclude_own=exclude_own)
    return spec.detect(like).neurons
