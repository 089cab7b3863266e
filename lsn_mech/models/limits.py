"""What a model and this machine can take: the context length a window must fit, and
whether a device exists. Checked before any forward pass, so a long run cannot die
inside a position embedding or a device transfer after hours of work."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from lsn_mech.errors import DeviceUnavailableError, InvalidSettingError

__all__ = [
    "ContextLengthWarning",
    "check_count",
    "check_device",
    "check_window",
    "context_length",
    "trained_context",
]


class ContextLengthWarning(UserWarning):
    """A window is longer than the context a rotary/ALiBi model was trained on: it runs,
    but positions past that length are extrapolation the papers never measured."""


LEARNED_POSITIONS = ("standard",)
"""TransformerLens names of position embeddings that are a table of learned rows: a
position past the table's end does not exist (GPT-2's ``wpe`` raises an index error)."""


def context_length(model: Any) -> int | None:
    """The longest window ``model`` can run, or ``None`` when nothing stops a longer one.

    Only a *hard* limit counts: a learned position table (GPT-2, OPT, …) has ``n_ctx``
    rows and fails past them. Rotary (Llama, Qwen2, Mistral, Gemma) and ALiBi (BLOOM)
    models compute positions and keep running past ``max_position_embeddings`` (with
    quality that may fall off), so they give ``None``: refusing them would refuse runs
    that work. Reads the bridge's ``cfg``, else the Hugging Face config.
    """
    cfg = getattr(model, "cfg", None)
    kind = getattr(cfg, "positional_embedding_type", None)
    if kind is not None:
        return int(cfg.n_ctx) if kind in LEARNED_POSITIONS and getattr(cfg, "n_ctx", None) else None
    config = getattr(model, "config", None)
    positions = getattr(config, "n_positions", None)  # learned tables in HF configs (GPT-2)
    return int(positions) if positions else None


def trained_context(model: Any) -> int | None:
    """The context ``model`` was trained on (``n_ctx`` / ``max_position_embeddings``), or
    ``None`` when its config does not say; a soft limit for models `context_length` does
    not bound."""
    cfg = getattr(model, "cfg", None)
    if getattr(cfg, "n_ctx", None):
        return int(cfg.n_ctx)
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    return int(positions) if positions else None


def _warn_past_training(model: Any, width: int, what: str) -> None:
    trained = trained_context(model)
    if trained is not None and width > trained:
        warnings.warn(
            f"{what} is {width} tokens, longer than the {trained} tokens this model was "
            f"trained on: it runs, but positions past {trained} are extrapolation; pass "
            f"{trained} or less to stay within the trained context.",
            ContextLengthWarning,
            stacklevel=3,
        )


def _window_widths(texts: Any) -> list[int] | None:
    """Widths of pre-tokenised windows in ``texts`` (one `TokenWindows` or a mapping of
    them), or ``None`` when ``texts`` still has to be packed with ``window``."""
    if hasattr(texts, "input_ids"):
        return [int(texts.input_ids.shape[-1])]
    if isinstance(texts, Mapping) and texts:
        values = list(texts.values())
        if all(hasattr(value, "input_ids") for value in values):
            return [int(value.input_ids.shape[-1]) for value in values]
    return None


def check_window(model: Any, window: Any, *, argument: str = "window", texts: Any = None) -> None:
    """Raise `InvalidSettingError` naming ``argument`` unless ``window`` is an integer of
    at least 2 (BOS and one token) that fits ``model``'s `context_length`.

    Given ``texts`` that are already token windows, their width is what runs, so that is
    checked instead (``window`` is then unused by the caller).
    """
    widths = _window_widths(texts) if texts is not None else None
    limit = context_length(model)
    if widths is not None:
        widest = max(widths)
        if limit is not None and widest > limit:
            raise InvalidSettingError(
                f"The token windows passed are {widest} tokens wide, but the model's context "
                f"is {limit} tokens; tokenise them with window={limit} or less."
            )
        if limit is None:
            _warn_past_training(model, widest, "The widest token window passed")
        return
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InvalidSettingError(
            f"{argument} must be an integer of at least 2 (BOS and one token), got {window!r}."
        )
    if limit is not None and window > limit:
        raise InvalidSettingError(
            f"{argument} {window} does not fit the model's context of {limit} tokens; "
            f"pass {setting(argument, limit)} or less."
        )
    if limit is None:
        _warn_past_training(model, window, f"{argument} {window}")


def setting(argument: str, value: Any) -> str:
    """How a caller writes ``argument`` set to ``value``: ``--window 256`` for a flag,
    ``window=256`` for a keyword argument."""
    return f"{argument} {value}" if argument.startswith("--") else f"{argument}={value}"


def check_device(device: Any, *, argument: str = "device") -> None:
    """Raise `DeviceUnavailableError` naming ``argument`` unless ``device`` (``None``,
    a name such as ``"cuda:1"``, or a ``torch.device``) exists on this machine."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceUnavailableError(
            f"{argument} {device!r} is not a device name; pass cpu, cuda, cuda:N or mps."
        ) from None
    if parsed.type == "cpu" or parsed.type == "meta":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceUnavailableError(
                f"{argument} {device!r}: this machine has no CUDA GPU; pass cpu instead."
            )
        if parsed.index is not None and parsed.index >= count:
            raise DeviceUnavailableError(
                f"{argument} {device!r}: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}; pass one of those."
            )
        return
    available = None
    for backend in (getattr(torch.backends, parsed.type, None), getattr(torch, parsed.type, None)):
        available = available or getattr(backend, "is_available", None)
    if available is None or not available():
        raise DeviceUnavailableError(
            f"{argument} {device!r} is not available on this machine; pass cpu"
            + (" or cuda." if torch.cuda.is_available() else ".")
        )


def check_count(argument: str, value: Any, *, minimum: int = 1) -> None:
    """Raise `InvalidSettingError` naming ``argument`` unless ``value`` is an integer of at
    least ``minimum`` (a batch size, a chunk length, a token budget)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSettingError(
            f"{argument} must be an integer of at least {minimum}, got {value!r}."
        )
