"""Detectors by name: each method is a frozen dataclass of its parameters (a *spec*).

A spec's fields are the method's parameters with the paper's defaults; its ``detect``
method runs it and returns a `DetectorResult`: the selection (``LanguageNeurons``) and
the scores it was made from. ``@register("name")`` on the spec class makes it reachable
by name, so pipelines and the command line pick detectors by string::

    lm.detect.available()                         # ('act-prob-90p', 'lap', 'lape', ...)
    lm.detect.get("lape")                         # the spec class, LapeSpec
    lm.detect.run("act-prob-90p", stats, rate=0.0025).neurons

The provenance of a result is ``dataclasses.asdict(spec)``, plus what the detector read
(input kind, languages, model, corpus) and what it derived (bars, counts).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from torch import Tensor

from lsn_mech.detect._common import DetectorInput, DetectorInputError, make_provenance
from lsn_mech.errors import LsnMechError
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance

__all__ = [
    "DETECTORS",
    "Detection",
    "DetectorParameterError",
    "DetectorResult",
    "DetectorSpec",
    "UnknownDetectorError",
    "available",
    "get",
    "register",
    "run",
    "spec",
    "spec_keywords",
]


class UnknownDetectorError(LsnMechError, KeyError):
    """A detector name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DetectorParameterError(DetectorInputError, TypeError):
    """A keyword that is not a parameter of the detector's spec."""


@runtime_checkable
class DetectorResult(Protocol):
    """What every detector returns: the selection and the scores it was made from."""

    @property
    def neurons(self) -> LanguageNeurons: ...

    @property
    def scores(self) -> Tensor | None: ...


@dataclasses.dataclass(frozen=True)
class Detection:
    """The result of a detector that needs no richer type (LAP, random, the LANDeRMT split).

    - ``neurons``: the selection, one ``NeuronSet`` per language.
    - ``scores``: the values the selection was ranked or thresholded on (the detector's
      documentation says which), or ``None`` where there are none (random).
    - ``details``: the method's own richer result, if it has one (e.g. an
      `AwarenessSplit` with the language-general set).
    """

    neurons: LanguageNeurons
    scores: Tensor | None
    details: Any = None


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """Base of every detector spec: a frozen dataclass whose fields are its parameters.

    Subclasses define fields (with the paper's defaults, each documented) and ``detect``;
    ``@register("name")`` sets `name`. Validate and normalise fields in
    ``__post_init__`` (with ``object.__setattr__``), so a spec that exists is a valid one
    and its ``asdict`` is exactly what ran.
    """

    name: ClassVar[str] = ""
    """Registry name (set by `register`), e.g. ``"act-prob-90p"``."""
    label: ClassVar[str] = ""
    """Name for tables and plots, e.g. ``"Act-Prob-90p"`` (default: `name`)."""
    method: ClassVar[str] = ""
    """``provenance.method`` of the results (default: `name`)."""
    reads: ClassVar[str] = "ActivationStats, or a [layer, d_mlp, lang] tensor with languages="
    """What ``detect`` takes as ``source``, in words (for error messages and docs)."""
    reads_statistics: ClassVar[bool] = True
    """Whether ``detect`` runs on `ActivationStats` (so statistics pipelines can use it)."""

    def detect(
        self,
        source: Any,
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> DetectorResult:
        """Run the method on ``source`` (see `reads`); ``languages`` selects or names them."""
        raise NotImplementedError(f"{type(self).__name__} does not define detect().")

    def parameters(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)``: the parameters that ran, for provenance."""
        return dataclasses.asdict(self)

    def provenance(
        self,
        data: DetectorInput | None,
        derived: Mapping[str, Any] | None = None,
        *,
        model_id: str | None = None,
    ) -> Provenance:
        """Provenance of a result: the input's, ``asdict(self)`` and ``derived`` values."""
        return make_provenance(
            data,
            method=self.method or self.name,
            parameters={**self.parameters(), **(derived or {})},
            model_id=model_id,
        )


S = TypeVar("S", bound=DetectorSpec)
F = TypeVar("F", bound=Callable[..., Any])

DETECTORS: dict[str, type[DetectorSpec]] = {}
"""Every registered spec class by name; filled when `lsn_mech.detect` is imported."""


def register(name: str, *, label: str | None = None) -> Callable[[type[S]], type[S]]:
    """Class decorator: register a frozen-dataclass spec under ``name``.

    Registering the same class again (a reloaded module) replaces it; another class
    under a taken name is refused.
    """

    def decorate(spec_type: type[S]) -> type[S]:
        params = vars(spec_type).get("__dataclass_params__")  # not a base class's
        if not (isinstance(spec_type, type) and issubclass(spec_type, DetectorSpec)):
            raise DetectorInputError(
                f"@register({name!r}) needs a DetectorSpec subclass, got {spec_type!r}."
            )
        if params is None or not params.frozen:
            raise DetectorInputError(
                f"{spec_type.__qualname__} must be a frozen dataclass: put "
                f"@dataclasses.dataclass(frozen=True) under @register({name!r})."
            )
        if spec_type.detect is DetectorSpec.detect:
            raise DetectorInputError(f"{spec_type.__qualname__} must define detect().")
        taken = DETECTORS.get(name)
        if taken is not None and _qualified(taken) != _qualified(spec_type):
            raise DetectorInputError(
                f"The detector name {name!r} is taken by {_qualified(taken)}; register "
                f"{spec_type.__qualname__} under another name."
            )
        spec_type.name = name
        spec_type.label = label or spec_type.__dict__.get("label") or name
        spec_type.method = spec_type.__dict__.get("method") or name
        DETECTORS[name] = spec_type
        return spec_type

    return decorate


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def available() -> tuple[str, ...]:
    """Names of every registered detector, sorted."""
    return tuple(sorted(DETECTORS))


def get(name: str) -> type[DetectorSpec]:
    """The spec class registered as ``name``; call it with parameters to make a spec."""
    try:
        return DETECTORS[name]
    except (KeyError, TypeError):
        raise UnknownDetectorError(
            f"No detector named {name!r}; available: {', '.join(available())}. A new one "
            f"is a spec class decorated with @lsn_mech.detect.register('name')."
        ) from None


def _check_keywords(spec_type: type[DetectorSpec], parameters: Mapping[str, Any]) -> None:
    known = [field.name for field in dataclasses.fields(spec_type)]
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise DetectorParameterError(
            f"{spec_type.name or spec_type.__name__} has no parameter "
            f"{', '.join(map(repr, unknown))}; its parameters are {', '.join(known)} "
            f"(see {spec_type.__name__})."
        )


def _build(spec_type: type[S], parameters: Mapping[str, Any]) -> S:
    _check_keywords(spec_type, parameters)
    return spec_type(**parameters)


def spec(name: str, **parameters: Any) -> DetectorSpec:
    """The spec of detector ``name`` with ``parameters`` (others keep the paper's defaults)."""
    return _build(get(name), parameters)


def run(
    detector: str | DetectorSpec | type[DetectorSpec],
    source: Any,
    *,
    languages: Sequence[str] | None = None,
    model_id: str | None = None,
    **parameters: Any,
) -> DetectorResult:
    """Run a detector by name (or spec, or spec class) on ``source``.

    Args:
        detector: a registered name (`available`), a spec, or a spec class.
        source: what the detector reads (its spec's ``reads``; for most, statistics).
        languages: with statistics, the languages to use (default: all); with a
            tensor, the code of each column.
        model_id: model the neurons belong to (default: the statistics' model id).
        **parameters: the spec's fields to change from the paper's defaults (or, with a
            spec, from that spec's values).
    """
    if isinstance(detector, DetectorSpec):
        _check_keywords(type(detector), parameters)
        chosen = dataclasses.replace(detector, **parameters) if parameters else detector
    elif isinstance(detector, type) and issubclass(detector, DetectorSpec):
        chosen = _build(detector, parameters)
    else:
        chosen = spec(detector, **parameters)
    return chosen.detect(source, languages=languages, model_id=model_id)


def spec_keywords(spec_type: type[DetectorSpec]) -> Callable[[F], F]:
    """Show ``spec_type``'s fields in the signature of a wrapper that takes ``**parameters``.

    The thin functions (``lape``, ``lape_details``, ...) forward their keywords to the
    spec; this gives them the spec's parameters and defaults in ``help()`` and IDEs
    without copying the list.
    """

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        kept = [
            p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        fields = [
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=field.type,
            )
            for field in dataclasses.fields(spec_type)
        ]
        function.__signature__ = signature.replace(parameters=[*kept, *fields])  # type: ignore[attr-defined]
        return function

    return decorate
