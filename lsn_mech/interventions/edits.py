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
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.errors import NeuronShapeMismatchError
from lsn_mech.models.sites import HookSites

Value = float | int | Tensor | Mapping[str, Tensor] | Any
"""A scalar, a ``[n_neurons]`` tensor (one per neuron, in set iteration order), a
``[layer, d_mlp]`` tensor, a per-site mapping of those, or a ``LanguageStats``."""


@dataclasses.dataclass(frozen=True)
class Edit:
    """What to do to the activations of a neuron set: ``x -> where(mask, f(x), x)``."""

    kind: str  # "set", "scale" or "add"
    neurons: Any  # NeuronSet
    value: Value

    def hooks(self, sites: HookSites) -> list[tuple[str, Callable[..., Tensor]]]:
        """(hook name, hook fn) pairs for every layer that holds neurons of the set."""
        _check_shape(self.neurons, sites)
        dense = _dense_values(self.value, self.neurons, sites)
        mask = self.neurons.to_mask()
        result = []
        for layer in range(sites.n_layers):
            if not bool(mask[layer].any()):
                continue
            name = sites.name(self.neurons.site, layer)
            vector = dense[layer]
            if self.kind != "set":
                vector = neutral_outside(self.kind, vector, mask[layer])
            result.append((name, _layer_hook(self.kind, mask[layer], vector)))
        return result


def _layer_hook(kind: str, mask: Tensor, values: Tensor) -> Callable[..., Tensor]:
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


def _neutral(kind: str) -> float:
    return 1.0 if kind == "scale" else 0.0


def _dense_values(value: Value, neurons: Any, sites: HookSites) -> Float[Tensor, "layer d_mlp"]:
    """Broadcast ``value`` to a ``[layer, d_mlp]`` float32 tensor (used where the mask is set)."""
    shape = (sites.n_layers, sites.d_mlp)
    if hasattr(value, "mean") and hasattr(value, "language") and not isinstance(value, Tensor):
        value = value.mean  # a LanguageStats: its mean, per site
    if isinstance(value, Mapping):
        if neurons.site not in value:
            raise NeuronShapeMismatchError(
                f"The statistics hold sites {', '.join(value)}, but these neurons live at "
                f"{neurons.site!r}. Collect statistics at that site, or pass a tensor."
            )
        value = value[neurons.site]
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


def neutral_outside(kind: str, dense: Tensor, mask: Tensor) -> Tensor:
    """``dense`` where ``mask`` is set, the identity value of ``kind`` elsewhere."""
    return torch.where(mask, dense, torch.full_like(dense, _neutral(kind)))


def _check_shape(neurons: Any, sites: HookSites) -> None:
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
