"""Neurons as rows and columns of Hugging Face weights: the bridge to PEFT and training.

A `NeuronSet` names neurons by ``(layer, index)``. Finetuning only those neurons means
touching, in each layer, output ``index`` of the gate and up (or first) projection,
that output's bias entry, and input ``index`` of the down projection. Which of these is
a *row* and which a *column* of the stored weight depends on the module type:

==========================  ==========  ==========================
projection                  side        stored ``weight`` axis
==========================  ==========  ==========================
gate / up ``nn.Linear``     output      row ``index`` (weight is [out, in])
down ``nn.Linear``          input       column ``index``
first ``Conv1D`` (GPT-2)    output      column ``index`` (weight is [in, out])
down ``Conv1D`` (GPT-2)     input       row ``index``
==========================  ==========  ==========================

The down projection's bias belongs to no neuron and is never part of a mask.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from jaxtyping import Bool, Int64
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from lsn_mech.errors import (
    NeuronShapeMismatchError,
    UnsupportedArchitectureError,
    WrongInputError,
)
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.models.runtime.hf_bridge import as_hf, has_hf, is_bridged
from lsn_mech.neurons import NeuronSet
from lsn_mech.neurons.checks import expect_neuron_set

Role = Literal["gate", "up", "down"]
Side = Literal["output", "input"]


@dataclasses.dataclass(frozen=True)
class Projection:
    """One MLP projection of one layer: its HF name, role and the module holding weights."""

    name: str
    role: Role
    layer: int
    module: nn.Module

    @property
    def transposed(self) -> bool:
        """True for GPT-2's ``Conv1D``, whose weight is stored ``[in, out]``."""
        return isinstance(self.module, Conv1D)

    @property
    def side(self) -> Side:
        """Whether neurons are outputs (gate/up) or inputs (down) of this projection."""
        return "input" if self.role == "down" else "output"

    @property
    def neuron_dim(self) -> int:
        """Axis of the stored ``weight`` that indexes neurons (0: rows, 1: columns)."""
        output_axis = 1 if self.transposed else 0
        return output_axis if self.side == "output" else 1 - output_axis

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight  # type: ignore[return-value]

    @property
    def bias(self) -> nn.Parameter | None:
        """The bias, where present (``None`` for bias-free layers)."""
        bias = getattr(self.module, "bias", None)
        return bias if isinstance(bias, nn.Parameter) else None

    @property
    def width(self) -> int:
        """Number of neurons (the size of the neuron axis)."""
        return int(self.weight.shape[self.neuron_dim])


@dataclasses.dataclass(frozen=True)
class ModuleMask:
    """Which entries of one HF projection belong to a set's neurons.

    Attributes:
        module: HF module name, e.g. ``"model.layers.3.mlp.gate_proj"``.
        role: ``"gate"``, ``"up"`` (or the only first projection) or ``"down"``.
        layer: the transformer layer.
        neurons: sorted neuron indices of the set in this layer.
        side: ``"output"`` (gate/up: the neuron is an output feature) or ``"input"``
            (down: an input feature), independent of how the weight is stored.
        neuron_dim: axis of the stored ``weight`` indexing neurons (0 rows, 1 columns).
        weight_shape: shape of the stored ``weight``.
        bias: True when the module has a bias whose entries belong to neurons
            (gate/up/first projection with a bias).
        transposed: True for GPT-2 ``Conv1D`` (weight stored ``[in, out]``).
    """

    module: str
    role: Role
    layer: int
    neurons: Int64[Tensor, " n"]
    side: Side
    neuron_dim: int
    weight_shape: tuple[int, int]
    bias: bool
    transposed: bool

    @property
    def rows(self) -> Int64[Tensor, " n"] | None:
        """Row indices of the stored weight, or ``None`` when neurons are columns."""
        return self.neurons if self.neuron_dim == 0 else None

    @property
    def columns(self) -> Int64[Tensor, " n"] | None:
        """Column indices of the stored weight, or ``None`` when neurons are rows."""
        return self.neurons if self.neuron_dim == 1 else None

    def neuron_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, " d_mlp"]:
        """True at the set's neurons along the neuron axis."""
        mask = torch.zeros(self.weight_shape[self.neuron_dim], dtype=torch.bool, device=device)
        mask[self.neurons.to(mask.device)] = True
        return mask

    def weight_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, "a b"]:
        """Boolean mask of the stored weight's shape, True at the set's rows/columns."""
        along = self.neuron_mask(device)
        shaped = along[:, None] if self.neuron_dim == 0 else along[None, :]
        return shaped.expand(self.weight_shape).clone()

    def bias_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, " d_mlp"] | None:
        """Mask of the bias (True at the set's neurons), or ``None`` if none belongs."""
        return self.neuron_mask(device) if self.bias else None


def resolve_hf_model(model: nn.Module) -> PreTrainedModel:
    """The HF model to address: a PEFT wrapper or bridge is unwrapped, bridged models refused."""
    hf: nn.Module = model
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        hf = get_base()
    elif has_hf(model):
        hf = as_hf(model)
    if not isinstance(hf, PreTrainedModel):
        raise WrongInputError(
            f"Expected a Hugging Face PreTrainedModel, got {type(model).__name__}; pass "
            f"lsn_mech.models.hf.plain_hf_model(model)."
        )
    if is_bridged(hf):
        raise UnsupportedArchitectureError(
            "This Hugging Face model has been rewritten by a TransformerLens bridge (its "
            "parameter names contain '._original_component'); masks and routing address the "
            "plain model. Use lsn_mech.models.hf.plain_hf_model(model) to get one."
        )
    return hf


def _base_layer(module: nn.Module) -> nn.Module:
    """The layer holding the weights (a PEFT LoRA wrapper is looked through)."""
    get_base = getattr(module, "get_base_layer", None)
    return get_base() if callable(get_base) else module


def model_type(hf_model: nn.Module) -> str:
    """The HF ``model_type`` that selects the projection names in `lsn_mech.models.modules`."""
    config = getattr(resolve_hf_model(hf_model), "config", None)
    kind = getattr(config, "model_type", None)
    if not kind:
        raise UnsupportedArchitectureError(
            "The model has no config.model_type; pass a Hugging Face PreTrainedModel."
        )
    return str(kind)


def layer_projections(hf_model: nn.Module, layer: int) -> dict[str, Projection]:
    """``{"gate"?, "up", "down"}`` projections of one layer of a plain HF model."""
    hf = resolve_hf_model(hf_model)
    names = mlp_module_names(model_type(hf), layer)
    found: dict[str, Projection] = {}
    for role, name in names.items():
        try:
            module = hf.get_submodule(name)
        except AttributeError:
            raise NeuronShapeMismatchError(
                f"The model has no module {name!r} ({role} projection of layer {layer}); "
                f"layer {layer} does not exist in this {type(hf).__name__}."
            ) from None
        module = _base_layer(module)
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.ndim != 2:
            raise UnsupportedArchitectureError(
                f"{name} is a {type(module).__name__} without a 2-D weight; only nn.Linear "
                f"and Conv1D projections are supported."
            )
        found[role] = Projection(name=name, role=role, layer=layer, module=module)  # type: ignore[arg-type]
    return found


def mlp_shape(hf_model: nn.Module) -> tuple[int, int]:
    """``(n_layers, d_mlp)`` of a plain HF model, read from its MLP modules."""
    hf = resolve_hf_model(hf_model)
    kind = model_type(hf)
    modules = dict(hf.named_modules())
    n_layers = 0
    while mlp_module_names(kind, n_layers)["down"] in modules:
        n_layers += 1
    if n_layers == 0:
        raise UnsupportedArchitectureError(
            f"Found no MLP projections named like {mlp_module_names(kind, 0)['down']!r} in this "
            f"{type(hf).__name__}; is it a causal LM of model_type {kind!r}?"
        )
    return n_layers, layer_projections(hf, 0)["down"].width


def check_neurons(hf_model: nn.Module, neurons: NeuronSet) -> None:
    """Raise `NeuronShapeMismatchError` if ``neurons`` do not fit the model's MLPs
    (`WrongInputError` if they are not one `NeuronSet`)."""
    expect_neuron_set(neurons, caller="lsn_mech.peft")
    n_layers, d_mlp = mlp_shape(hf_model)
    if neurons.n_layers != n_layers or neurons.d_mlp != d_mlp:
        raise NeuronShapeMismatchError(
            f"The neuron set has {neurons.n_layers} layers × d_mlp {neurons.d_mlp}, the model "
            f"{n_layers} layers × d_mlp {d_mlp} (model_type {model_type(hf_model)!r}). Detect "
            f"the neurons on this model (model_id of the set: {neurons.model_id!r})."
        )


def neuron_module_masks(hf_model: nn.Module, neurons: NeuronSet) -> dict[str, ModuleMask]:
    """``{HF module name: ModuleMask}`` for every projection of every layer holding neurons.

    Layers without neurons of the set are left out, so the keys are exactly the
    modules a masked adapter has to target.
    """
    check_neurons(hf_model, neurons)
    masks: dict[str, ModuleMask] = {}
    for layer, count in enumerate(neurons.per_layer()):
        if count == 0:
            continue
        indices = neurons.indices(layer)
        for role, projection in layer_projections(hf_model, layer).items():
            width = projection.width
            if width != neurons.d_mlp:
                raise NeuronShapeMismatchError(
                    f"{projection.name} has {width} neurons along its neuron axis, the set "
                    f"d_mlp {neurons.d_mlp}; the model's layers differ in width."
                )
            masks[projection.name] = ModuleMask(
                module=projection.name,
                role=role,  # type: ignore[arg-type]
                layer=layer,
                neurons=indices,
                side=projection.side,
                neuron_dim=projection.neuron_dim,
                weight_shape=(int(projection.weight.shape[0]), int(projection.weight.shape[1])),
                bias=projection.side == "output" and projection.bias is not None,
                transposed=projection.transposed,
            )
    return masks


def parameter_masks(hf_model: nn.Module, neurons: NeuronSet) -> dict[str, Bool[Tensor, "..."]]:
    """``{parameter name: bool mask of its shape}``, True where an entry belongs to a neuron.

    Names are those of ``hf_model.named_parameters()`` (e.g.
    ``"model.layers.3.mlp.gate_proj.weight"``); masks live on the parameter's device.
    Parameters absent from the result hold no entry of the set (down-projection biases,
    attention, embeddings, layers without neurons), so a training loop can freeze them.
    """
    names = {id(p): name for name, p in hf_model.named_parameters()}
    hf = resolve_hf_model(hf_model)
    result: dict[str, Tensor] = {}
    for module_name, mask in neuron_module_masks(hf, neurons).items():
        projection = layer_projections(hf, mask.layer)[mask.role]
        weight = projection.weight
        result[_name_of(names, weight, module_name)] = mask.weight_mask(weight.device)
        bias = projection.bias
        if mask.bias and bias is not None:
            bias_mask = mask.bias_mask(bias.device)
            assert bias_mask is not None
            result[_name_of(names, bias, module_name)] = bias_mask
    return result


def _name_of(names: dict[int, str], parameter: nn.Parameter, module_name: str) -> str:
    try:
        return names[id(parameter)]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"A parameter of {module_name} is not among the model's named_parameters(); pass "
            f"the model that owns the weights."
        ) from None
