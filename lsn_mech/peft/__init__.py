"""Neurons as Hugging Face weight rows/columns: masks for PEFT and selective training."""

from lsn_mech.peft.masks import (
    ModuleMask,
    Projection,
    check_neurons,
    layer_projections,
    mlp_shape,
    neuron_module_masks,
    parameter_masks,
)

__all__ = [
    "ModuleMask",
    "Projection",
    "check_neurons",
    "layer_projections",
    "mlp_shape",
    "neuron_module_masks",
    "parameter_masks",
]
