"""The forward that replaces one MLP's forward while routing is installed (Eq. 7–9).

With a per-neuron scale ``s_j`` (``CAR`` for general neurons, ``1 − CAR`` for specific
ones), ``FFN(s·x)`` needs the projections only once: a linear map with weight ``W``
and bias ``b`` gives ``W(s·x) + b = s·(Wx) + b``, so the module's own output ``y``
is rescaled as ``s·y + (1 − s)·b``. Calling the projection modules themselves (not
their weights) keeps their hooks and any PEFT wrapper (LoRA is bias-free and linear
in ``x``) working. Neurons outside ``G ∪ S`` are zeroed before the down projection, whose
bias is added once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from lsn_mech.peft.masks import Projection
from lsn_mech.training.car import RoutingError

Style = Literal["gated", "gpt2", "bloom"]
Car = Float[Tensor, ""] | Float[Tensor, "*batch 1"]


class LayerRoute:
    """What one layer needs for the current pair: neuron masks and its CAR (or gate)."""

    def __init__(
        self,
        general: Bool[Tensor, " d_mlp"],
        specific: Bool[Tensor, " d_mlp"],
        car: float,
        gate: nn.Linear | None,
    ) -> None:
        self.general = general
        self.specific = specific
        self.keep = general | specific
        self.overlap = bool((general & specific).any())
        self.car = car
        self.gate = gate

    def car_of(self, x: Float[Tensor, "*batch d_model"]) -> Car:
        """The layer's CAR: the static value, or ``sigmoid(w·x + b)`` per token."""
        if self.gate is None:
            return torch.tensor(self.car, dtype=x.dtype, device=x.device)
        weight, bias = self.gate.weight, self.gate.bias
        logits = torch.nn.functional.linear(x.to(weight.dtype), weight, bias)
        return torch.sigmoid(logits).to(x.dtype)


def _scaled(y: Tensor, bias: Tensor | None, scale: Tensor) -> Tensor:
    """``s·(Wx) + b`` from the module output ``y = Wx + b``."""
    if bias is None:
        return scale * y
    return scale * y + (1 - scale) * bias.to(y.dtype)


class RoutedForward:
    """Callable installed as ``mlp.forward``; not an ``nn.Module`` so it registers nothing."""

    def __init__(
        self,
        mlp: nn.Module,
        style: Style,
        projections: dict[str, Projection],
        route: Callable[[], LayerRoute],
    ) -> None:
        self.mlp = mlp
        self.style = style
        self.up = projections["up"]
        self.gate = projections.get("gate")
        self.down = projections["down"]
        self.route = route
        if style == "gated":
            if self.gate is None or not callable(getattr(mlp, "act_fn", None)):
                raise RoutingError(f"{type(mlp).__name__} has no gate_proj/act_fn to route.")
            self.act: Callable[[Tensor], Tensor] = mlp.act_fn
        elif style == "gpt2":
            self.act = mlp.act
        else:
            self.act = mlp.gelu_impl

    def _module(self, projection: Projection) -> nn.Module:
        """The module to call (a PEFT wrapper around the weights, if any)."""
        return self.mlp.get_submodule(projection.name.rsplit(".", 1)[-1])

    def _hidden(self, x: Tensor, outputs: dict[str, Tensor], scale: Tensor) -> Tensor:
        up = _scaled(outputs["up"], self.up.bias, scale)
        if self.gate is None:
            return self.act(up)
        gate = _scaled(outputs["gate"], self.gate.bias, scale)
        return self.act(gate) * up

    def __call__(
        self, hidden_states: Float[Tensor, "*batch d_model"], *args: Any, **kwargs: Any
    ) -> Float[Tensor, "*batch d_model"]:
        route = self.route()
        x = hidden_states
        outputs = {"up": self._module(self.up)(x)}
        if self.gate is not None:
            outputs["gate"] = self._module(self.gate)(x)
        car = route.car_of(x)
        general = route.general.to(x.device)
        specific = route.specific.to(x.device)
        if route.overlap:  # a neuron in both branches contributes to both (Eq. 9)
            hidden = self._hidden(x, outputs, car).masked_fill(~general, 0)
            hidden = hidden + self._hidden(x, outputs, 1 - car).masked_fill(~specific, 0)
        else:
            scale = torch.where(general, car, 1 - car)
            hidden = self._hidden(x, outputs, scale).masked_fill(~(general | specific), 0)
        out = self._module(self.down)(hidden)
        if self.style == "gpt2":
            return self.mlp.dropout(out)
        if self.style == "bloom":
            from transformers.models.bloom.modeling_bloom import dropout_add

            residual = args[0] if args else kwargs["residual"]
            return dropout_add(out, residual, self.mlp.hidden_dropout, self.mlp.training)
        return out
