"""The small surface of a hooked model that statistics and interventions rely on.

Everything above `lsn_mech.models` talks to a model only through this protocol,
so a TransformerLens 4 ``TransformerBridge`` and a TransformerLens 3
``HookedTransformer`` (which SAELens users still run) are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch

HookFn = Callable[..., Any]
"""A TransformerLens hook: ``fn(activation, hook) -> activation | None``."""


@runtime_checkable
class HookedModel(Protocol):
    """What lsn_mech needs from a model: named hook points and a way to attach hooks.

    * ``cfg`` carries ``n_layers`` and ``d_mlp``;
    * ``hook_dict`` maps hook names (``blocks.{layer}.mlp.hook_pre`` …) to hook points;
    * ``hooks(fwd_hooks=[(name, fn)], bwd_hooks=[...])`` is a context manager that
      attaches hooks and removes exactly those on exit;
    * calling the model on token ids returns logits;
    * ``tokenizer`` is a Hugging Face tokenizer;
    * ``unembed(residual)`` maps final residuals to logits (perplexity computes logits
      itself, in chunks, at target positions only).
    """

    cfg: Any
    tokenizer: Any

    @property
    def hook_dict(self) -> dict[str, Any]: ...

    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = ...,
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = ...,
        reset_hooks_end: bool = ...,
        clear_contexts: bool = ...,
    ) -> AbstractContextManager[Any]: ...

    def run_with_hooks(self, input: Any, *args: Any, **kwargs: Any) -> Any: ...

    def run_with_cache(self, input: Any, *args: Any, **kwargs: Any) -> Any: ...

    def __call__(self, input: Any, *args: Any, **kwargs: Any) -> Any: ...

    def unembed(self, residual: torch.Tensor) -> torch.Tensor: ...

    def parameters(self, recurse: bool = ...) -> Iterator[torch.nn.Parameter]: ...


def model_device(model: HookedModel) -> torch.device:
    """The device the model's first parameter lives on (where statistics accumulate)."""
    try:
        return next(iter(model.parameters())).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def model_dtype(model: HookedModel) -> torch.dtype:
    """The floating dtype of the model's first floating parameter."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32  # pragma: no cover


def model_id(model: Any) -> str | None:
    """The id lsn_mech recorded when it loaded the model, else the TransformerLens name,
    else the Hugging Face ``config.name_or_path`` (a plain HF model, or a bridge's).

    The one reader of the loader's private ``_lsn_model_id``: everything else asks here.
    """
    recorded = getattr(model, "_lsn_model_id", None)
    if recorded:
        return str(recorded)
    name = getattr(getattr(model, "cfg", None), "model_name", None)
    if name:
        return str(name)
    config = getattr(model, "config", None)
    if config is None:
        config = getattr(getattr(model, "original_model", None), "config", None)
    path = getattr(config, "name_or_path", None)
    return str(path) if path else None
