"""Per-neuron edits of MLP activations, as TransformerLens hooks.

Every edit is one elementwise pass over the hooked activation, built from dense
per-layer vectors that are the identity outside the neuron set (multiply by 1, add 0,
keep the original where the mask is False), so activations of other neurons are
bit-identical to the unedited forward.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import LsnMechError, NeuronShapeMismatchError, WrongInputError
from lsn_mech.models.sites import HookSites, Site
from lsn_mech.neurons import NeuronSet
from lsn_mech.neurons.checks import expect_neuron_set
from lsn_mech.stats.container import ActivationStats, LanguageStats

Value = float | int | Tensor | Mapping[str, Tensor] | LanguageStats
"""A scalar, a ``[n_neurons]`` tensor (one per neuron, in set iteration order), a
``[layer, d_mlp]`` tensor, a per-site mapping of those, or a ``LanguageStats`` (its mean)."""

EditOp = Literal["set", "scale", "add"]
"""The three elementwise operations every intervention kind is built from."""

EDIT_OPS: tuple[EditOp, ...] = get_args(EditOp)

HookFn = Callable[[Tensor, Any], Tensor]
"""A TransformerLens forward hook: ``fn(activation, hook) -> edited activation``."""


class UnknownEditError(LsnMechError, ValueError):
    """An `Edit` names an operation other than set, scale or add."""


@dataclasses.dataclass(frozen=True)
class Edit:
    """What to do to the activations of a neuron set: ``x -> where(mask, f(x), x)``.

    ``site`` is the hook site written (default: the neurons' own site); a set detected
    at ``mlp_pre`` names the same neurons at ``mlp_post``, so either can be written.
    """

    kind: EditOp
    neurons: NeuronSet
    value: Value
    site: Site | None = None

    def __post_init__(self) -> None:
        if self.kind not in EDIT_OPS:
            raise UnknownEditError(
                f"Unknown edit {self.kind!r}; an Edit is one of {', '.join(EDIT_OPS)}. "
                "Other interventions are specs (lsn_mech.interventions.kinds())."
            )
        expect_neuron_set(self.neurons, caller="Edit")
        check_literal(self.value, f"An Edit {self.kind!r}")

    @property
    def write_site(self) -> str:
        """The hook site the edit writes: ``site``, or the neurons' own site."""
        return self.site or self.neurons.site

    def hooks(self, sites: HookSites) -> list[tuple[str, HookFn]]:
        """(hook name, hook fn) pairs for every layer that holds neurons of the set."""
        _check_shape(self.neurons, sites)
        dense = _dense_values(self.value, self.neurons, sites, self.write_site)
        mask = self.neurons.to_mask()
        result = []
        for layer in range(sites.n_layers):
            if not bool(mask[layer].any()):
                continue
            name = sites.name(self.write_site, layer)
            vector = dense[layer]
            if self.kind != "set":
                vector = neutral_outside(self.kind, vector, mask[layer])
            result.append((name, _layer_hook(self.kind, mask[layer], vector)))
        return result


_ACCEPTED = (
    "a number, one value per neuron (in set order), a [layer, d_mlp] tensor, a per-site "
    "mapping such as stats['fr'].mean, or stats['fr'] itself (its mean)"
)


def check_literal(value: object, owner: str) -> None:
    """Refuse a value no edit can apply (a string, statistics of every language, ...),
    saying what is accepted; strings are words of `parse_intervention`, not values."""
    if isinstance(value, (int, float, Tensor, LanguageStats)):
        return
    if isinstance(value, str):
        raise WrongInputError(
            f"{owner} got the string {value!r}, which is not a value; it takes {_ACCEPTED}. "
            "Words such as 'zero', 'mean' or 'p90' are read by "
            f"lsn_mech.interventions.parse_intervention({value!r}, neurons, language='fr') and "
            "applied with lsn_mech.interventions.apply(model, spec, stats=stats)."
        )
    if isinstance(value, ActivationStats):
        raise WrongInputError(
            f"{owner} got the statistics of every language ({', '.join(value.languages)}); "
            f"pass one language's, e.g. stats[{value.languages[0]!r}] (its mean) or "
            f"stats[{value.languages[0]!r}].statistic('p90')."
        )
    if isinstance(value, Mapping):
        wrong = [str(site) for site, entry in value.items() if not isinstance(entry, Tensor)]
        if wrong:
            raise WrongInputError(
                f"{owner} got a mapping whose entries {', '.join(wrong)} are not tensors; a "
                f"mapping is per site ({{'mlp_post': [layer, d_mlp] tensor}}), e.g. "
                "stats['fr'].mean."
            )
        return
    try:
        torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise WrongInputError(
            f"{owner} got a {type(value).__name__}, which is not a value; it takes {_ACCEPTED}."
        ) from None


def _layer_hook(kind: EditOp, mask: Tensor, values: Tensor) -> HookFn:
    cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def placed(activation: Tensor) -> tuple[Tensor, Tensor]:
        key = (activation.device, activation.dtype)
        if key not in cache:
            cache[key] = (
                mask.to(activation.device),
                values.to(device=activation.device, dtype=activation.dtype),
            )
        return cache[key]

    if kind == "set":

        def hook(activation: Tensor, hook: Any) -> Tensor:
            where, vector = placed(activation)
            return torch.where(where, vector, activation)

    elif kind == "scale":

        def hook(activation: Tensor, hook: Any) -> Tensor:
            _, vector = placed(activation)
            return activation * vector

    elif kind == "add":

        def hook(activation: Tensor, hook: Any) -> Tensor:
            _, vector = placed(activation)
            return activation + vector

    else:  # pragma: no cover - guarded by the public constructors
        raise ValueError(f"Unknown edit kind {kind!r}")
    return hook


def _neutral(kind: EditOp) -> float:
    return 1.0 if kind == "scale" else 0.0


def _dense_values(
    value: Value, neurons: NeuronSet, sites: HookSites, site: str
) -> Float[Tensor, "layer d_mlp"]:
    """Broadcast ``value`` to a ``[layer, d_mlp]`` float32 tensor (used where the mask is set).

    A per-site mapping (or a ``LanguageStats``' mean) gives its entry at ``site``, the
    site written.
    """
    shape = (sites.n_layers, sites.d_mlp)
    if isinstance(value, LanguageStats):
        value = value.mean  # its mean, per site
    if isinstance(value, Mapping):
        if site not in value:
            raise NeuronShapeMismatchError(
                f"The statistics hold sites {', '.join(value)}, but these neurons live at "
                f"{site!r}. Collect statistics at that site, or pass a tensor."
            )
        value = value[site]
    if isinstance(value, (int, float)):
        return torch.full(shape, float(value))
    tensor = torch.as_tensor(value).detach().float().cpu()
    if tensor.ndim == 0:
        return torch.full(shape, float(tensor))
    if tuple(tensor.shape) == shape:
        return tensor
    if tensor.ndim == 1 and tensor.shape[0] == len(neurons):
        dense = torch.zeros(shape)
        layers = torch.tensor([layer for layer, _ in neurons], dtype=torch.long)
        indices = torch.tensor([index for _, index in neurons], dtype=torch.long)
        dense[layers, indices] = tensor
        return dense
    raise NeuronShapeMismatchError(
        f"A value of shape {tuple(tensor.shape)} does not fit {len(neurons)} neurons of a model "
        f"with {sites.n_layers} layers x {sites.d_mlp} neurons. Pass a scalar, one value per "
        "neuron (in set order), or a [layer, d_mlp] tensor."
    )


def neutral_outside(kind: EditOp, dense: Tensor, mask: Tensor) -> Tensor:
    """``dense`` where ``mask`` is set, the identity value of ``kind`` elsewhere."""
    return torch.where(mask, dense, torch.full_like(dense, _neutral(kind)))


def _check_shape(neurons: NeuronSet, sites: HookSites) -> None:
    if neurons.model_id and sites.model_id and neurons.model_id != sites.model_id:
        warnings.warn(
            f"Neurons detected on {neurons.model_id!r} are applied to {sites.model_id!r}; the "
            "shapes match, so this is allowed, but check that it is the same model.",
            stacklevel=4,
        )
    if neurons.n_layers != sites.n_layers or neurons.d_mlp != sites.d_mlp:
        raise NeuronShapeMismatchError(
            f"These neurons belong to a model with {neurons.n_layers} layers x {neurons.d_mlp} "
            f"neurons (model {neurons.model_id!r}), but this model has {sites.n_layers} x "
            f"{sites.d_mlp} ({sites.model_id!r}). Detect neurons on this model first."
        )
