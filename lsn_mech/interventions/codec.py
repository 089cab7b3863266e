"""Exact JSON forms of the values an intervention spec holds.

A spec is recorded in a result's JSON, so every field must survive ``json.dumps`` and
come back equal: neuron sets as index lists, tensors as their dtype, shape and values
(a float32 or float64 value printed by ``json`` reads back to the same bits), per-site
mappings site by site. Non-JSON values are tagged (``{"tensor": ...}``) so decoding
needs no knowledge of the field it fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lsn_mech.errors import LsnMechError
from lsn_mech.neurons import NeuronSet
from lsn_mech.stats.container import SiteValues

JSON = None | bool | int | float | str | list[Any] | dict[str, Any]
"""What ``json.dumps`` accepts (lists and dicts of these)."""


class SpecFormatError(LsnMechError, ValueError):
    """A recorded intervention spec cannot be read back."""


def encode(value: object) -> JSON:
    """The JSON form of a spec field (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, NeuronSet):
        return {
            "neuron_set": {
                "d_mlp": value.d_mlp,
                "site": value.site,
                "model_id": value.model_id,
                "layers": [value.indices(layer).tolist() for layer in range(value.n_layers)],
            }
        }
    if isinstance(value, Tensor):
        tensor = value.detach().cpu()
        return {
            "tensor": {
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "shape": list(tensor.shape),
                "values": tensor.flatten().tolist(),
            }
        }
    if isinstance(value, Mapping):
        return {"per_site": {str(site): encode(tensor) for site, tensor in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    raise SpecFormatError(
        f"A spec field of type {type(value).__name__} has no JSON form; use a number, a "
        "string, a NeuronSet, a tensor or a per-site mapping of tensors."
    )


def decode(data: JSON) -> object:
    """The field value whose JSON form is ``data`` (the inverse of `encode`)."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if len(data) != 1:
        raise SpecFormatError(
            f"A recorded spec field holds {sorted(data)}; expected one of the tags "
            "'neuron_set', 'tensor' or 'per_site'. Record specs with spec.to_dict()."
        )
    ((tag, body),) = data.items()
    if tag == "neuron_set":
        return NeuronSet(
            body["layers"], d_mlp=body["d_mlp"], site=body["site"], model_id=body["model_id"]
        )
    if tag == "tensor":
        dtype = getattr(torch, body["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise SpecFormatError(f"Unknown tensor dtype {body['dtype']!r} in a recorded spec.")
        return torch.tensor(body["values"], dtype=dtype).reshape(body["shape"])
    if tag == "per_site":
        return SiteValues({site: decode(tensor) for site, tensor in body.items()})
    raise SpecFormatError(
        f"Unknown tag {tag!r} in a recorded spec field; expected 'neuron_set', 'tensor' or "
        "'per_site'. Record specs with spec.to_dict()."
    )
