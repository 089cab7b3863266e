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

from lsn_mech.errors import NeuronShapeMismatchError, WrongInputError
from lsn_mech.interventions.checks import check_stats_fit, expect_activation_stats
from lsn_mech.interventions.edits import Edit, HookFn, Value
from lsn_mech.interventions.kinds import Add, LiteralValue, Scale, SetToStatistic, SetValue
from lsn_mech.interventions.parse import parse_value
from lsn_mech.interventions.spec import InterventionSpec, UnknownInterventionError
from lsn_mech.models.checks import expect_hooked_model
from lsn_mech.models.protocol import HookedModel
from lsn_mech.models.sites import hook_sites
from lsn_mech.neurons import NeuronSet
from lsn_mech.neurons.checks import expect_neuron_set
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
        self._hooks: list[tuple[str, HookFn]] | None = None

    def hooks(self) -> list[tuple[str, HookFn]]:
        """The (hook name, fn) pairs this intervention attaches, in application order
        (built once: `apply` builds them early, so a value that does not fit fails there)."""
        if self._hooks is None:
            sites = hook_sites(self.model)
            self._hooks = [pair for edit in self.edits for pair in edit.hooks(sites)]
        return self._hooks

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
    Statistics are read here, and the hooks built, so a missing statistic, statistics of
    another model or a value that does not fit fails before any forward pass.
    """
    caller = "lsn_mech.interventions.apply"
    sites = hook_sites(expect_hooked_model(model, caller=caller))
    for spec in specs:
        if not isinstance(spec, InterventionSpec):
            raise WrongInputError(
                f"{caller} takes intervention specs after the model, got a "
                f"{type(spec).__name__}; e.g. apply(model, SetValue(neurons['fr'], 0.0)), "
                "or use lsn_mech.deactivate(model, neurons['fr'])."
            )
    if stats is not None:
        stats = expect_activation_stats(stats, caller=caller)
        check_stats_fit(stats, sites, caller=caller)
    edits = [edit for spec in specs for edit in spec.edits(stats)]
    intervention = Intervention(model, edits, specs)
    intervention.hooks()
    return intervention


def _arguments(model: HookedModel, neurons: NeuronSet, caller: str) -> None:
    """Refuse a model that is not hooked and anything but one `NeuronSet`, naming the fix."""
    expect_hooked_model(model, caller=caller)
    expect_neuron_set(neurons, caller=caller)


def deactivate(model: HookedModel, neurons: NeuronSet) -> Intervention:
    """Set the neurons' activations to 0 (Tang et al.'s deactivation at ``mlp_post``)."""
    _arguments(model, neurons, "lsn_mech.deactivate")
    return apply(model, SetValue(neurons, 0.0))


def set_to(model: HookedModel, neurons: NeuronSet, value: Value) -> Intervention:
    """Overwrite the neurons' activations with ``value``.

    ``value`` is a scalar, one value per neuron (a ``[len(neurons)]`` tensor in set
    iteration order), a ``[layer, d_mlp]`` tensor, a per-site mapping such as
    ``stats["fr"].mean``, or a ``LanguageStats`` (its mean). A string is a word of
    `parse_intervention`: ``"zero"`` and numbers (``"-10"``) are constants; ``"mean"`` and
    ``"p90"`` need a language, so pass ``stats["fr"]`` or ``stats["fr"].statistic("p90")``.
    """
    return _set_to(model, neurons, value, "lsn_mech.set_to")


def _set_to(model: HookedModel, neurons: NeuronSet, value: Value, caller: str) -> Intervention:
    _arguments(model, neurons, caller)
    if isinstance(value, str):
        value = _constant_word(value, caller)
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
    return _set_to(model, neurons, stats, "lsn_mech.activate")


def _constant_word(word: str, caller: str) -> float:
    """The constant a word names (``"zero"``, ``"-10"``), or an error saying what was meant."""
    try:
        parsed = parse_value(word, allow_none=False)
    except UnknownInterventionError as error:
        raise WrongInputError(
            f"{caller} cannot use the string {word!r} as a value ({error}) Otherwise pass a "
            "number, a tensor, or a language's statistics such as stats['fr']."
        ) from None
    if parsed.constant is not None:
        return parsed.constant
    raise WrongInputError(
        f"{caller}: {word!r} is a statistic of a language, but the string does not say "
        f"which; pass that language's statistics, e.g. stats['fr'] (the mean) or "
        f"stats['fr'].statistic({word!r}), or apply(model, parse_intervention({word!r}, "
        "neurons, language='fr'), stats=stats)."
    )


def _literal(value: Value) -> LiteralValue:
    return value.mean if isinstance(value, LanguageStats) else value


def scale(model: HookedModel, neurons: NeuronSet, factor: Value) -> Intervention:
    """Multiply the neurons' activations by ``factor`` (a scalar or per-neuron values)."""
    _arguments(model, neurons, "lsn_mech.scale")
    return apply(model, Scale(neurons, _literal(factor)))


def add(model: HookedModel, neurons: NeuronSet, delta: Value) -> Intervention:
    """Add ``delta`` to the neurons' activations (a scalar or per-neuron values)."""
    _arguments(model, neurons, "lsn_mech.add")
    return apply(model, Add(neurons, _literal(delta)))


@contextlib.contextmanager
def compose(*interventions: Intervention) -> Iterator[None]:
    """Enter several interventions as one context, applied in the order given."""
    for position, intervention in enumerate(interventions):
        if not isinstance(intervention, contextlib.AbstractContextManager):
            raise WrongInputError(
                f"compose: argument {position} is a {type(intervention).__name__}, not an "
                "intervention; pass contexts such as lm.deactivate(model, neurons['fr'])."
            )
    with contextlib.ExitStack() as stack:
        for intervention in interventions:
            stack.enter_context(intervention)
        yield
