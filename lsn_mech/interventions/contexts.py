"""Composable hook contexts: ``with lsn_mech.deactivate(model, neurons): ...``.

Each context attaches its hooks through the model's own ``hooks()`` context manager
and removes exactly those hooks on exit, also when the body raises. Contexts nest
freely; on the same hook point, hooks run in the order the contexts were entered, so
``with deactivate(m, a), activate(m, b, s):`` first zeroes ``a`` and then writes ``b``
(where the sets overlap, the later context wins). Hooks act on every forward pass in
the block, including each step of ``model.generate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from lsn_mech.errors import NeuronShapeMismatchError
from lsn_mech.interventions.edits import Edit, HookFn, Value
from lsn_mech.interventions.kinds import Add, LiteralValue, Scale, SetToStatistic, SetValue
from lsn_mech.interventions.spec import InterventionSpec
from lsn_mech.models.protocol import HookedModel
from lsn_mech.models.sites import hook_sites
from lsn_mech.neurons import NeuronSet
from lsn_mech.stats.container import ActivationStats, LanguageStats


class Intervention(contextlib.AbstractContextManager):
    """A set of edits bound to a model; enter it to apply them.

    ``specs`` are the specs the edits were built from (empty when built from edits
    directly); record them with ``[s.to_dict() for s in intervention.specs]``.
    """

    def __init__(
        self, model: HookedModel, edits: list[Edit], specs: Sequence[InterventionSpec] = ()
    ) -> None:
        self.model = model
        self.edits = edits
        self.specs = list(specs)
        self._stack: contextlib.ExitStack | None = None

    def hooks(self) -> list[tuple[str, HookFn]]:
        """The (hook name, fn) pairs this intervention attaches, in application order."""
        sites = hook_sites(self.model)
        return [pair for edit in self.edits for pair in edit.hooks(sites)]

    def __enter__(self) -> HookedModel:
        if self._stack is not None:
            raise RuntimeError("This intervention is already active; create a new one to nest.")
        stack = contextlib.ExitStack()
        stack.enter_context(self.model.hooks(fwd_hooks=self.hooks()))
        self._stack = stack
        return self.model

    def __exit__(self, *exc_info: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{e.kind}({len(e.neurons)} neurons)" for e in self.edits)
        return f"Intervention({parts})"


def apply(
    model: HookedModel, *specs: InterventionSpec, stats: ActivationStats | None = None
) -> Intervention:
    """The context that applies ``specs`` in order (``stats``: for kinds that read statistics).

    ``with apply(model, parse_intervention("p90", neurons["vi"], language="vi"), stats=s):``
    Statistics are read here, so a missing one fails before any forward pass.
    """
    edits = [edit for spec in specs for edit in spec.edits(stats)]
    return Intervention(model, edits, specs)


def deactivate(model: HookedModel, neurons: NeuronSet) -> Intervention:
    """Set the neurons' activations to 0 (Tang et al.'s deactivation at ``mlp_post``)."""
    return apply(model, SetValue(neurons, 0.0))


def set_to(model: HookedModel, neurons: NeuronSet, value: Value) -> Intervention:
    """Overwrite the neurons' activations with ``value``.

    ``value`` is a scalar, one value per neuron (a ``[len(neurons)]`` tensor in set
    iteration order), a ``[layer, d_mlp]`` tensor, a per-site mapping such as
    ``stats["fr"].mean``, or a ``LanguageStats`` (its mean).
    """
    if isinstance(value, LanguageStats):
        stats = value.parent
        if neurons.site not in stats.sites:
            raise NeuronShapeMismatchError(
                f"The statistics hold sites {', '.join(stats.sites)}, but these neurons live "
                f"at {neurons.site!r}. Collect statistics at that site, or pass a tensor."
            )
        spec = SetToStatistic(neurons, language=value.language, statistic="mean")
        return apply(model, spec, stats=stats)
    return apply(model, SetValue(neurons, value))


def activate(model: HookedModel, neurons: NeuronSet, stats: Value) -> Intervention:
    """Set the neurons to a language's mean activation at their own site (Tang et al. §4.3).

    ``stats`` is ``stats["zh"]`` (a ``LanguageStats``), ``stats["zh"].mean``, or any
    value `set_to` accepts.
    """
    return set_to(model, neurons, stats)


def _literal(value: Value) -> LiteralValue:
    return value.mean if isinstance(value, LanguageStats) else value


def scale(model: HookedModel, neurons: NeuronSet, factor: Value) -> Intervention:
    """Multiply the neurons' activations by ``factor`` (a scalar or per-neuron values)."""
    return apply(model, Scale(neurons, _literal(factor)))


def add(model: HookedModel, neurons: NeuronSet, delta: Value) -> Intervention:
    """Add ``delta`` to the neurons' activations (a scalar or per-neuron values)."""
    return apply(model, Add(neurons, _literal(delta)))


@contextlib.contextmanager
def compose(*interventions: Intervention) -> Iterator[None]:
    """Enter several interventions as one context, applied in the order given."""
    with contextlib.ExitStack() as stack:
        for intervention in interventions:
            stack.enter_context(intervention)
        yield
