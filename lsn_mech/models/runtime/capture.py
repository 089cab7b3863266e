"""Capture: one forward pass that hands chosen hook sites to the caller and stops there.

Statistics, layer means, sentence embeddings, neuron projections and every loss need the
activations of a few named hook points and nothing after them. `capture` attaches one
hook per name, hands each activation to a callback (or keeps it), and stops the forward
pass as soon as every name has fired, so nothing after the last needed site runs (for
Gemma 3 270M the unembedding alone is about 60 % of a token's FLOPs).

How it stops: the last hook raises TransformerLens 4's own ``StopAtLayerException``, which
the bridge's forward catches and turns into an ordinary return. The bridge's
``stop_at_layer`` argument itself does not serve: it stops only at the entry of a block,
so it can reach neither a site inside the last block (``blocks.{L-1}.mlp.hook_pre``) nor
the unembedding input after the final norm (``stop_at_layer=n_layers`` runs to the
logits). Raising in the hook stops at the site itself. A TransformerLens 3
``HookedTransformer`` does not catch the exception, so `capture` catches it too.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

from jaxtyping import Float, Int, Shaped
from torch import Tensor

from lsn_mech.errors import LsnMechError, UnsupportedArchitectureError
from lsn_mech.models.protocol import HookedModel, HookFn

ActivationCallback = Callable[[str, Tensor], None]
"""``callback(hook_name, activation)``, called once per captured hook in forward order."""

UNEMBED_INPUT_HOOKS = ("unembed.hook_in", "ln_final.hook_normalized")
"""Hooks that carry the final, normalised residual stream, in order of preference."""


class CaptureError(LsnMechError, ValueError):
    """A capture was asked for no hook, or a hook that the forward pass never reached."""


class _StopForward(Exception):
    """Stand-in for ``StopAtLayerException`` where TransformerLens 4 is not installed."""


@functools.cache
def _stop_exception() -> type[Exception]:
    """The bridge's own stop exception (imported on first use: TransformerLens is heavy)."""
    try:
        from transformer_lens.model_bridge.exceptions import StopAtLayerException
    except ImportError:  # pragma: no cover - TransformerLens 3 has no bridge
        return _StopForward
    return StopAtLayerException


def capture(
    model: HookedModel,
    input_ids: Int[Tensor, "batch seq"],
    names: Sequence[str],
    *,
    attention_mask: Shaped[Tensor, "batch seq"] | None = None,
    callback: ActivationCallback | None = None,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
) -> dict[str, Tensor]:
    """Run ``model`` on ``input_ids`` until every hook in ``names`` has fired.

    With a ``callback`` each activation is handed to ``callback(name, activation)`` as it
    is produced and nothing is kept (the result is empty); without one the activations
    are returned as ``{name: activation}``, exactly as ``run_with_cache`` would give them
    (not detached: gradients flow through them when autograd is on). ``fwd_hooks`` run
    during the same pass, before the capture hooks on a shared hook point (an edit
    there is what gets captured). Gradient mode is the caller's: wrap the call in
    ``torch.no_grad()`` when nothing needs a backward pass.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise CaptureError("Name at least one hook to capture, e.g. hook_sites(model).mlp_pre(0).")
    available = model.hook_dict
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise UnsupportedArchitectureError(
            f"The model has no hook {unknown[0]!r}; choose names from model.hook_dict "
            "(lsn_mech.models.hook_sites spells the MLP sites)."
        )
    stop = _stop_exception()
    captured: dict[str, Tensor] = {}
    waiting = set(wanted)

    def hook_for(name: str) -> HookFn:
        def on_activation(activation: Tensor, hook: Any) -> None:
            if callback is None:
                captured[name] = activation
            else:
                callback(name, activation)
            waiting.discard(name)
            if not waiting:
                raise stop(activation)

        return on_activation

    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask.long()}
    hooks = [*fwd_hooks, *((name, hook_for(name)) for name in wanted)]
    with model.hooks(fwd_hooks=hooks), contextlib.suppress(stop):
        model(input_ids, **kwargs)
    if waiting:
        raise CaptureError(
            f"The hooks {sorted(waiting)} never fired during the forward pass; capture only "
            "hooks the model's forward reaches (some bridges gate hooks off until enabled)."
        )
    return captured


def unembed_input_hook(model: HookedModel) -> str:
    """The hook that carries the residual entering the unembedding, or a clear error."""
    available = model.hook_dict
    name = next((n for n in UNEMBED_INPUT_HOOKS if n in available), None)
    if name is None:
        raise UnsupportedArchitectureError(
            "The model exposes no hook at the unembedding input "
            f"({' or '.join(UNEMBED_INPUT_HOOKS)}); load it with lsn_mech.load_model."
        )
    return name


def final_residual(
    model: HookedModel,
    input_ids: Int[Tensor, "batch seq"],
    attention_mask: Shaped[Tensor, "batch seq"],
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
) -> Float[Tensor, "batch seq d_model"]:
    """The normalised residual stream entering the unembedding; the forward stops there."""
    name = unembed_input_hook(model)
    return capture(model, input_ids, [name], attention_mask=attention_mask, fwd_hooks=fwd_hooks)[
        name
    ]
