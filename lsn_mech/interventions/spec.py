"""Interventions as data: a frozen dataclass per kind, registered by name.

A spec says *what* to do to a neuron set (its kind, the neurons, the value's
parameters, the site written); `InterventionSpec.edits` says *how*, as the
elementwise `Edit`s (set / scale / add) the hooks apply. Specs that name a statistic
(``"p90"`` of a language) resolve it from the `ActivationStats` they are applied with,
so a result records the recipe, not a tensor. ``to_dict`` / ``from_dict`` give the
exact JSON form; ``from_dict`` finds the class by its ``kind`` in the registry.

A new kind is one frozen dataclass with ``kind``, ``neurons``, its own value fields,
``site`` and an ``edits`` method, decorated with `register`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar, TypeVar

from lsn_mech.errors import LsnMechError, WrongInputError
from lsn_mech.interventions.codec import JSON, SpecFormatError, decode, encode
from lsn_mech.interventions.edits import Edit
from lsn_mech.models.sites import Site
from lsn_mech.neurons import NeuronSet
from lsn_mech.neurons.checks import expect_neuron_set
from lsn_mech.stats.container import ActivationStats


class InterventionSpecError(LsnMechError, ValueError):
    """An intervention spec that cannot be built or applied as asked."""


class UnknownInterventionError(InterventionSpecError):
    """A kind, string form or steering setting that names no intervention."""


class InterventionSpec:
    """Base of every intervention kind (subclasses are frozen dataclasses).

    Every kind has ``neurons`` (the `NeuronSet` edited) and ``site`` (the hook site
    written; ``None``: the neurons' own site), plus the fields of its value.
    """

    kind: ClassVar[str]
    neurons: NeuronSet
    site: Site | None

    @property
    def write_site(self) -> str:
        """The hook site written: ``site``, or the neurons' own site."""
        return self.site or self.neurons.site

    def _check_neurons(self) -> None:
        """Refuse a `LanguageNeurons` (or anything else) where one `NeuronSet` is meant."""
        expect_neuron_set(self.neurons, caller=type(self).__name__)

    def edits(self, stats: ActivationStats | None = None) -> list[Edit]:
        """The elementwise edits that apply this spec, in order.

        ``stats`` gives the statistics a kind reads (``None`` where it reads none).
        """
        raise NotImplementedError

    def to_dict(self) -> dict[str, JSON]:
        """The exact JSON form: ``{"kind": ..., <field>: <encoded value>, ...}``."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return {"kind": self.kind, **{f.name: encode(getattr(self, f.name)) for f in fields}}

    @staticmethod
    def from_dict(data: dict[str, JSON]) -> InterventionSpec:
        """The spec whose `to_dict` is ``data``; its class is found by ``data["kind"]``."""
        values = dict(data)
        kind = values.pop("kind", None)
        if not isinstance(kind, str):
            raise SpecFormatError(
                f"A recorded spec needs a 'kind' (one of {', '.join(kinds())}); got {kind!r}."
            )
        cls = spec_class(kind)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - names)
        if unknown:
            raise SpecFormatError(
                f"A recorded {kind!r} spec has fields {unknown} it does not know; its fields "
                f"are {sorted(names)}."
            )
        return cls(**{name: decode(value) for name, value in values.items()})

    def _equality_key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __eq__(self, other: object) -> bool:
        """Specs are equal when they record the same JSON (tensors compared by value)."""
        if not isinstance(other, InterventionSpec):
            return NotImplemented
        return self.kind == other.kind and self._equality_key() == other._equality_key()

    def __hash__(self) -> int:
        return hash((self.kind, self.neurons))


_REGISTRY: dict[str, type[InterventionSpec]] = {}

SpecType = TypeVar("SpecType", bound=type[InterventionSpec])


def register(cls: SpecType) -> SpecType:
    """Class decorator: make ``cls`` (a frozen dataclass with a unique ``kind``) known by name.

    Equality and hashing come from `InterventionSpec` (by the recorded JSON), so specs
    holding tensors compare by value.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise InterventionSpecError(
            f"{cls.__name__} must be a frozen dataclass: @register above "
            "@dataclasses.dataclass(frozen=True)."
        )
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise InterventionSpecError(f"{cls.__name__} needs a class attribute kind = '<name>'.")
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise InterventionSpecError(
            f"The intervention kind {kind!r} is taken by {_REGISTRY[kind].__name__}; "
            f"choose another name for {cls.__name__}."
        )
    names = {f.name for f in dataclasses.fields(cls)}
    if not {"neurons", "site"} <= names:
        raise InterventionSpecError(
            f"{cls.__name__} needs the fields 'neurons' (a NeuronSet) and 'site' (default None)."
        )
    cls.__eq__ = InterventionSpec.__eq__  # type: ignore[method-assign]
    cls.__hash__ = InterventionSpec.__hash__  # type: ignore[method-assign]
    _REGISTRY[kind] = cls
    return cls


def kinds() -> list[str]:
    """The registered intervention kinds, in registration order."""
    return list(_REGISTRY)


def spec_class(kind: str) -> type[InterventionSpec]:
    """The spec class registered as ``kind``, or an error listing the kinds."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise UnknownInterventionError(
            f"Unknown intervention kind {kind!r}; the registered kinds are "
            f"{', '.join(_REGISTRY)}. Register a new one with "
            "@lsn_mech.interventions.register."
        ) from None


def require_stats(spec: InterventionSpec, stats: ActivationStats | None) -> ActivationStats:
    """``stats``, or an error saying that ``spec`` reads statistics."""
    if stats is None:
        raise InterventionSpecError(
            f"The {spec.kind!r} intervention reads statistics; apply it with "
            "lsn_mech.interventions.apply(model, spec, stats=stats)."
        )
    if not isinstance(stats, ActivationStats):
        raise WrongInputError(
            f"The {spec.kind!r} intervention reads an ActivationStats, got "
            f"{type(stats).__name__}; pass stats=stats (all languages), not stats['fr']."
        )
    return stats
