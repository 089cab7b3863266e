"""Shared machinery of the detectors: input handling, errors, quantiles, entropy selection.

Every statistics-based detector accepts either an `ActivationStats` or a plain
``[layer, d_mlp, lang]`` tensor with ``languages=[...]``; this module turns both into
one float64 tensor plus the provenance fields that come with it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lsn_mech.errors import (
    LsnMechError,
    MissingLanguageError,
    NothingToSelectError,
    WrongInputError,
)
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance
from lsn_mech.stats.container import ActivationStats, LanguageStats

QuantileMethod = Literal["kthvalue", "linear"]
"""How a global quantile ("bar") is taken over all values.

``"kthvalue"`` (default, the LAPE reference code): the ``k``-th smallest value with
``k = round(N · rate)`` (Python ``round``, clamped to ``[1, N]``), i.e.
``sorted(values)[k - 1]``. ``"linear"``: ``torch.quantile``'s default linear
interpolation, ``sorted[⌊r⌋] + (r − ⌊r⌋)·(sorted[⌊r⌋+1] − sorted[⌊r⌋])`` with
``r = rate · (N − 1)`` (computed by sorting, so it has no size limit).
"""


class DetectorInputError(LsnMechError, ValueError):
    """A detector got statistics, tensors or parameters it cannot work with."""


@dataclasses.dataclass(frozen=True)
class DetectorInput:
    """Values ``[layer, d_mlp, lang]`` (float64) and what is known about where they came from."""

    values: Tensor
    languages: list[str]
    source: str  # "ActivationStats" or "tensor"
    model_id: str | None
    corpus: str | None
    corpus_hash: str | None


def check_rate(name: str, value: float, *, allow_zero: bool) -> float:
    """Validate a rate parameter: ``(0, 1]`` (or ``[0, 1]`` with ``allow_zero``)."""
    low_ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise DetectorInputError(
            f"{name} must lie in {interval}, got {value!r}; it is a fraction "
            f"(e.g. {name}=0.01 for 1 %)."
        )
    return float(value)


def check_quantile_method(method: str) -> None:
    """Raise unless ``method`` is a `QuantileMethod`."""
    if method not in ("kthvalue", "linear"):
        raise DetectorInputError(f"quantile must be 'kthvalue' or 'linear', got {method!r}.")


def check_languages(languages: Sequence[str], n: int, what: str) -> list[str]:
    """Language codes for the last axis of a ``[..., lang]`` tensor of size ``n``."""
    if isinstance(languages, str):
        raise DetectorInputError(
            f"languages must be a list of codes, got the string {languages!r}; "
            f"write languages=[{languages!r}, ...]."
        )
    codes = list(languages)
    if len(codes) != n:
        raise DetectorInputError(
            f"The {what} has {n} languages on its last axis but languages= names "
            f"{len(codes)} ({', '.join(map(str, codes))}); pass one code per column, in order."
        )
    if len(set(codes)) != len(codes):
        raise DetectorInputError(f"languages contains duplicates: {codes}; codes must be unique.")
    for code in codes:
        if not isinstance(code, str) or not code:
            raise DetectorInputError(f"Language codes must be non-empty strings, got {code!r}.")
    return codes


def read_input(
    stats_or_values: ActivationStats | Tensor,
    languages: Sequence[str] | None,
    *,
    kind: Literal["probability", "mean"],
    site: str,
    model_id: str | None,
) -> DetectorInput:
    """Turn an `ActivationStats` or a plain tensor into float64 ``[layer, d_mlp, lang]``.

    With statistics, ``languages`` selects (and orders) a subset; with a tensor it names
    the columns and is required.
    """
    if isinstance(stats_or_values, ActivationStats):
        stats = stats_or_values
        if languages is not None:
            if isinstance(languages, str):
                raise DetectorInputError(
                    f"languages must be a list of codes, got the string {languages!r}."
                )
            stats = stats.subset(list(languages))  # MissingLanguageError names the fix
        getter = stats.activation_probability if kind == "probability" else stats.mean
        values = getter(site)
        prov = stats.provenance
        return DetectorInput(
            values=values.to(torch.float64),
            languages=list(stats.languages),
            source="ActivationStats",
            model_id=model_id if model_id is not None else prov.model_id,
            corpus=prov.corpus,
            corpus_hash=prov.corpus_hash,
        )
    if isinstance(stats_or_values, Tensor):
        values = stats_or_values
        what = "probability tensor" if kind == "probability" else "mean-activation tensor"
        if values.ndim != 3:
            raise DetectorInputError(
                f"Expected a [layer, d_mlp, lang] {what}, got shape {tuple(values.shape)}."
            )
        if not values.is_floating_point():
            raise DetectorInputError(
                f"The {what} must be floating point, got {values.dtype}; for counts divide "
                f"by the token counts first (or use activation_stats_from_lape)."
            )
        if languages is None:
            raise MissingLanguageError(
                f"A plain {what} carries no language names: pass languages=[...] with one "
                f"code per column of its last axis ({values.shape[-1]} columns)."
            )
        codes = check_languages(languages, values.shape[-1], what)
        return DetectorInput(
            values=values.detach().to(torch.float64),
            languages=codes,
            source="tensor",
            model_id=model_id,
            corpus=None,
            corpus_hash=None,
        )
    if isinstance(stats_or_values, LanguageStats):
        hint = (
            f" of one language ({stats_or_values.language!r}); pass the whole ActivationStats "
            "(detectors compare languages), not stats['...']"
        )
    else:
        hint = "; collect statistics with lsn_mech.collect_stats or load them"
    raise WrongInputError(
        f"Expected ActivationStats or a [layer, d_mlp, lang] tensor, got "
        f"{type(stats_or_values).__name__}{hint}."
    )


def check_probabilities(values: Tensor) -> None:
    """Raise unless every value is a probability in ``[0, 1]``."""
    if bool(torch.isnan(values).any()):
        raise DetectorInputError(
            "The activation probabilities contain NaN; check the statistics (a language "
            "with zero tokens?) before detecting."
        )
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1:
        raise DetectorInputError(
            f"Activation probabilities must lie in [0, 1], got values in [{low}, {high}]. "
            f"Pass probabilities (count / tokens), not counts or activation values "
            f"(for mean activations use lsn_mech.detect.lave)."
        )


def check_finite(values: Tensor, what: str) -> None:
    """Raise if any value is NaN or infinite."""
    if not bool(torch.isfinite(values).all()):
        raise DetectorInputError(f"The {what} contain NaN or infinite values; check the input.")


def check_selectable(
    values: Float[Tensor, "*neurons lang"],
    languages: Sequence[str],
    *,
    method: str,
    what: str,
    fix: str,
    dead: Literal["constant", "zero", "bounds"] = "constant",
) -> None:
    """Refuse input that cannot tell any neuron from another, instead of an empty or
    arbitrary (tie-broken) result.

    A language whose values are the same for every neuron (``dead="zero"``: all 0;
    ``dead="bounds"``: all 0 or all 1, for fractions whose interior values may legitimately
    sit close together) can select nothing, or only by the tie break; so can one whose
    values are all undefined (NaN: no token counted). Every language so: `NothingToSelectError`
    (the whole result would be meaningless). Only some: a warning naming them, since the
    other languages' sets are sound and one silent language is a finding, not a fault.
    """
    per_language = values.reshape(-1, values.shape[-1])
    if per_language.shape[0] == 0:
        return
    low, high = per_language.min(dim=0).values, per_language.max(dim=0).values
    flat = low == high
    if dead == "zero":
        flat = flat & (high == 0)
    elif dead == "bounds":
        flat = flat & ((high == 0) | (high == 1))
    undefined = ~torch.isfinite(per_language).any(dim=0)  # e.g. 0/0: no token counted
    flat = flat | undefined
    if not bool(flat.any()):
        return
    levels = [
        f"{lang}: {'undefined (no token counted)' if u else f'all {float(v):g}'}"
        for lang, v, f, u in zip(languages, low, flat, undefined)
        if f
    ]
    if bool(flat.all()):
        raise NothingToSelectError(
            f"{method} cannot select any neuron: the {what} are the same for all "
            f"{per_language.shape[0]} neurons in every language ({'; '.join(levels)}). {fix}"
        )
    warnings.warn(
        f"{method}: the {what} are the same for every neuron in {'; '.join(levels)}; no "
        f"neuron can be selected for those languages by its values. {fix}",
        stacklevel=3,
    )


PROBABILITY_FIX = (
    "All 0 means no neuron fired: check stats.tokens and the site ('mlp_pre'), or collect "
    "statistics on text in those languages; another constant means degenerate statistics."
)


def require_languages(n: int, method: str) -> None:
    """Entropy over fewer than two languages is always 0: refuse it."""
    if n < 2:
        raise DetectorInputError(
            f"{method} compares languages: it needs at least 2, got {n}. An entropy over one "
            f"language is always 0, so every neuron would look specific. Add languages."
        )


def global_quantile(values: Tensor, rate: float, method: QuantileMethod) -> float:
    """One quantile over every element of ``values`` (see `QuantileMethod`)."""
    flat = values.reshape(-1).sort().values
    n = flat.numel()
    if n == 0:
        raise DetectorInputError("Cannot take a quantile of an empty tensor.")
    if method == "kthvalue":
        k = min(max(round(n * rate), 1), n)
        return float(flat[k - 1])
    if method == "linear":
        position = rate * (n - 1)
        below = math.floor(position)
        above = math.ceil(position)
        weight = position - below
        low, high = flat[below], flat[above]
        return float(
            torch.lerp(low, high, torch.tensor(weight, dtype=flat.dtype, device=flat.device))
        )
    raise DetectorInputError(f"quantile must be 'kthvalue' or 'linear', got {method!r}.")


def normalised_entropy(values: Float[Tensor, "layer d_mlp lang"]) -> Float[Tensor, "layer d_mlp"]:
    """Entropy (natural log) of each neuron's L1-normalised distribution over languages.

    ``0 · log 0 = 0``; a neuron whose values are all zero normalises to all zeros
    (0/0 is taken as 0, as in the LAPE reference code) and gets entropy 0.

    The terms are summed in ascending order of the normalised values (sorted along the
    language axis; mathematically a no-op), so the result does not depend on the order of
    the languages and equal distributions tie exactly, bit for bit.
    """
    ordered = values.sort(dim=-1).values
    total = ordered.sum(dim=-1, keepdim=True)
    normed = torch.where(total > 0, ordered / torch.where(total > 0, total, 1.0), 0.0)
    logs = torch.where(normed > 0, normed.clamp_min(torch.finfo(normed.dtype).tiny).log(), 0.0)
    return -(normed * logs).sum(dim=-1)


def lowest_k(scores: Float[Tensor, "layer d_mlp"], k: int) -> Bool[Tensor, "layer d_mlp"]:
    """Mask of the ``k`` lowest scores over the whole model.

    Ties are broken by the flat index ``layer · d_mlp + neuron`` (lower layer first,
    then lower neuron index), via a stable sort, so the result is deterministic.
    """
    flat = scores.reshape(-1)
    k = min(max(k, 0), flat.numel())
    order = torch.sort(flat, stable=True).indices[:k]
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[order] = True
    return mask.view(scores.shape)


@dataclasses.dataclass(frozen=True)
class EntropySelection:
    """Everything an entropy detector (LAPE, LAVE, PV) computed on the way to its neurons.

    Fields:

    - ``neurons``: the result, one ``NeuronSet`` per language (a ``LanguageNeurons``).
    - ``values``: the ``[layer, d_mlp, lang]`` values the entropy was taken of
      (probabilities for LAPE, transformed means for LAVE, change rates for PV).
    - ``entropy``: ``[layer, d_mlp]`` entropy after filtering (``+inf`` = filtered out).
    - ``selected``: ``[layer, d_mlp]`` mask of the selected (lowest-entropy) neurons,
      whether or not they belong to any language.
    - ``membership``: ``[lang, layer, d_mlp]`` mask, true where a selected neuron belongs
      to a language (the mask ``neurons`` was built from).
    - ``filter_bar``: the value a neuron must exceed in some language to be kept
      (``None`` where the method has no such filter, as in PV).
    - ``activation_bar``: the value a selected neuron must exceed in a language to belong
      to it (``None`` where membership uses another rule, as in PV).
    """

    neurons: LanguageNeurons
    values: Float[Tensor, "layer d_mlp lang"]
    entropy: Float[Tensor, "layer d_mlp"]
    selected: Bool[Tensor, "layer d_mlp"]
    membership: Bool[Tensor, "lang layer d_mlp"]
    filter_bar: float | None
    activation_bar: float | None

    @property
    def scores(self) -> Float[Tensor, "layer d_mlp"]:
        """The ranking scores, ``entropy`` (lowest first; ``+inf`` = filtered out)."""
        return self.entropy


def entropy_select(
    values: Tensor,
    *,
    top_rate: float,
    filter_rate: float,
    activation_bar_ratio: float,
    quantile: QuantileMethod,
) -> tuple[Tensor, Tensor, Tensor, float, float]:
    """The LAPE recipe on any non-negative ``[layer, d_mlp, lang]`` values.

    Returns ``(entropy, selected, membership, filter_bar, activation_bar)``.
    """
    layers, d_mlp, _ = values.shape
    entropy = normalised_entropy(values)
    filter_bar = global_quantile(values, filter_rate, quantile)
    passes = (values > filter_bar).any(dim=-1)
    entropy = torch.where(passes, entropy, torch.full_like(entropy, float("inf")))
    k = round(top_rate * layers * d_mlp)
    selected = lowest_k(entropy, k)
    activation_bar = global_quantile(values, activation_bar_ratio, quantile)
    membership = (values > activation_bar).permute(2, 0, 1) & selected.unsqueeze(0)
    return entropy, selected, membership, filter_bar, activation_bar


@runtime_checkable
class EntropyParameters(Protocol):
    """What `entropy_detection` reads of a spec: the LAPE recipe's fields (LAPE, LAVE)."""

    @property
    def top_rate(self) -> float: ...
    @property
    def filter_rate(self) -> float: ...
    @property
    def activation_bar_ratio(self) -> float: ...
    @property
    def quantile(self) -> QuantileMethod: ...
    @property
    def neuron_site(self) -> str: ...

    def provenance(
        self, data: DetectorInput | None, derived: dict[str, Any] | None = None
    ) -> Provenance: ...


def check_entropy_rates(spec: EntropyParameters) -> None:
    """Validate and normalise a frozen spec's recipe fields, in its ``__post_init__``.

    One check for every spec that runs `entropy_select`, so LAPE and LAVE refuse the
    same rates with the same messages.
    """
    object.__setattr__(spec, "top_rate", check_rate("top_rate", spec.top_rate, allow_zero=False))
    for name in ("filter_rate", "activation_bar_ratio"):
        object.__setattr__(spec, name, check_rate(name, getattr(spec, name), allow_zero=True))
    check_quantile_method(spec.quantile)


def entropy_detection(
    spec: EntropyParameters,
    data: DetectorInput,
    values: Float[Tensor, "layer d_mlp lang"],
    *,
    stored_values: Float[Tensor, "layer d_mlp lang"] | None = None,
) -> EntropySelection:
    """Run `entropy_select` with ``spec``'s fields and wrap it as an `EntropySelection`.

    The one owner of the steps after a detector has its non-negative ``values``: the
    derived provenance (bars, tie break, count), the neurons at ``spec.neuron_site``
    and the result. ``stored_values`` is what the result keeps as ``values`` (default:
    ``values``).
    """
    entropy, selected, membership, filter_bar, activation_bar = entropy_select(
        values,
        top_rate=spec.top_rate,
        filter_rate=spec.filter_rate,
        activation_bar_ratio=spec.activation_bar_ratio,
        quantile=spec.quantile,
    )
    derived = {
        "tie_break": "flat_index",
        "filter_bar": filter_bar,
        "activation_bar": activation_bar,
        "n_selected": int(selected.sum()),
    }
    neurons = LanguageNeurons.from_mask(
        membership,
        data.languages,
        site=spec.neuron_site,
        model_id=data.model_id,
        provenance=spec.provenance(data, derived),
    )
    return EntropySelection(
        neurons=neurons,
        values=values if stored_values is None else stored_values,
        entropy=entropy,
        selected=selected,
        membership=membership,
        filter_bar=filter_bar,
        activation_bar=activation_bar,
    )


def make_provenance(
    data: DetectorInput | None,
    *,
    method: str,
    parameters: dict[str, Any],
    model_id: str | None = None,
) -> Provenance:
    """Provenance of a detector result: inherits model and corpus from the statistics."""
    if data is None:
        return Provenance(model_id=model_id, method=method, parameters=parameters)
    return Provenance(
        model_id=data.model_id,
        corpus=data.corpus,
        corpus_hash=data.corpus_hash,
        method=method,
        parameters={"input": data.source, "languages": list(data.languages), **parameters},
    )
