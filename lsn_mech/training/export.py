"""Checkpoints of routed models: one pair folded into plain HF weights, or weights + routing.

Folding (static CAR only): neuron ``j`` of a routed layer computes
``act(s_j·(W_g x) + b_g) · (s_j·(W_u x) + b_u)`` with ``s_j = CAR`` (general) or
``1 − CAR`` (specific). Scaling row ``j`` of ``W_g`` and ``W_u`` (not the biases) by
``s_j`` gives exactly that, and zeroing column ``j`` of the down projection removes a
neuron outside ``G ∪ S``. The result is an ordinary Hugging Face checkpoint that any
``transformers`` user can load. A learned per-token gate cannot be folded into
weights; `save_routed` keeps it next to the checkpoint instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int64
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from lsn_mech.errors import CorruptFileError
from lsn_mech.models.hf import plain_hf_model
from lsn_mech.peft.masks import layer_projections, resolve_hf_model
from lsn_mech.training.car import RoutingError
from lsn_mech.training.routing import SPEC_FILE, ConditionalAwarenessRouting

ROUTING_DIR = "lsn_routing"
PROBE_TOKENS = 16


def fold_pair(
    hf_model: nn.Module, routing: ConditionalAwarenessRouting, src: str, tgt: str
) -> PreTrainedModel:
    """A plain copy of ``hf_model`` whose weights compute the static routing of one pair."""
    if routing.learned:
        raise RoutingError(
            "A learned per-token CAR gate cannot be folded into weights (it depends on each "
            "token). Save the model with lsn_mech.training.save_routed(model, routing, path) "
            "and reload it with load_routed(path)."
        )
    general, specific = routing.pair_masks(src, tgt)
    if bool((general & specific).any()):
        raise RoutingError(
            f"{int((general & specific).sum())} neurons are both general and specific to "
            f"{src}->{tgt}; such a neuron runs in both branches and cannot be folded into one "
            f"weight row. Make the sets disjoint (general - specific) or use save_routed."
        )
    folded = plain_hf_model(hf_model, copy=True)
    cars = routing.static_car(src, tgt).tolist()
    with torch.no_grad():
        for layer, car in zip(routing.layers, cars):
            keep = general[layer] | specific[layer]
            scale = torch.where(general[layer], car, 1.0 - car)
            scale = torch.where(keep, scale, 1.0).to(torch.float64)
            for role, projection in layer_projections(folded, layer).items():
                weight = projection.weight
                shape = [1, 1]
                shape[projection.neuron_dim] = -1
                if role == "down":
                    drop = (~keep).to(weight.device).view(shape)
                    weight.masked_fill_(drop, 0)
                else:
                    factor = scale.to(weight.device).view(shape)
                    weight.copy_((weight.to(torch.float64) * factor).to(weight.dtype))
    return folded


def export_pair(
    hf_model: nn.Module,
    routing: ConditionalAwarenessRouting,
    src: str,
    tgt: str,
    path: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    verify: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> Path:
    """Write a standard HF checkpoint for ``src → tgt`` with static routing folded in.

    With ``verify`` (default) the checkpoint is reloaded with plain
    ``AutoModelForCausalLM.from_pretrained``; every weight must equal the folded copy
    and the logits on a random probe must match the routed model (tolerances default
    to 1e-4 in float32, 5e-2 in half precision). Pass ``verify=False`` for a model too
    large to hold twice more.
    """
    folded = fold_pair(hf_model, routing, src, tgt)
    directory = Path(path)
    folded.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if verify:
        _verify_export(hf_model, routing, src, tgt, folded, directory, rtol, atol)
    return directory


def _verify_export(
    hf_model: nn.Module,
    routing: ConditionalAwarenessRouting,
    src: str,
    tgt: str,
    folded: PreTrainedModel,
    directory: Path,
    rtol: float | None,
    atol: float | None,
) -> None:
    first = next(folded.parameters())
    reloaded = AutoModelForCausalLM.from_pretrained(str(directory), dtype=first.dtype)
    reloaded = reloaded.to(first.device).eval()
    expected = folded.state_dict()
    for key, value in reloaded.state_dict().items():
        if key in expected and not torch.equal(value, expected[key]):
            raise RoutingError(
                f"Weight {key!r} of the exported checkpoint differs from the folded model after "
                f"reloading from {directory}; the export is broken, do not use it."
            )
    probe = probe_ids(int(folded.config.get_text_config().vocab_size), first.device)
    want = routed_logits(hf_model, routing, src, tgt, probe)
    got = _logits(reloaded, probe)
    half = first.dtype in (torch.float16, torch.bfloat16)
    rtol = rtol if rtol is not None else (5e-2 if half else 1e-4)
    atol = atol if atol is not None else (5e-2 if half else 1e-4)
    if not torch.allclose(got.float(), want.float().to(got.device), rtol=rtol, atol=atol):
        worst = float((got.float() - want.float().to(got.device)).abs().max())
        raise RoutingError(
            f"The exported {src}->{tgt} checkpoint in {directory} gives logits up to {worst:.3g} "
            f"away from the routed model (rtol {rtol}, atol {atol}); the export is not "
            f"faithful. Check that the model's MLPs match lsn_mech.models.modules."
        )


def probe_ids(vocab_size: int, device: torch.device) -> Int64[Tensor, "1 seq"]:
    """A fixed random token sequence for comparing two models."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (1, PROBE_TOKENS), generator=generator)
    return ids.to(device)


def _logits(model: nn.Module, ids: Int64[Tensor, "batch seq"]) -> Float[Tensor, "batch seq vocab"]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(input_ids=ids).logits
    finally:
        model.train(was_training)


def routed_logits(
    hf_model: nn.Module,
    routing: ConditionalAwarenessRouting,
    src: str,
    tgt: str,
    ids: Int64[Tensor, "batch seq"],
) -> Float[Tensor, "batch seq vocab"]:
    """Logits of ``hf_model`` routed for ``src → tgt`` (installing the routing if needed).

    The routing's installation and current pair are restored afterwards.
    """
    hf = resolve_hf_model(hf_model)
    previous = routing.pair
    temporary = not routing.is_installed_on(hf)
    if temporary and routing.installed:
        raise RoutingError(
            "The routing is installed on another model; remove() it there first (or pass "
            "verify=False)."
        )
    if temporary:
        routing.install(hf)
    try:
        routing.set_pair(src, tgt)
        return _logits(hf, ids.to(next(hf.parameters()).device))
    finally:
        if previous is not None:
            routing.set_pair(*previous)
        if temporary:
            routing.remove()


def save_routed(
    hf_model: nn.Module,
    routing: ConditionalAwarenessRouting,
    path: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
) -> Path:
    """Write the HF checkpoint plus the routing spec (all pairs, learned gates included).

    The routing spec is removed first and written last, so a save killed midway leaves a
    folder that `load_routed` refuses instead of a model of one save with the routing of
    another.
    """
    directory = Path(path)
    (directory / ROUTING_DIR / SPEC_FILE).unlink(missing_ok=True)
    plain_hf_model(hf_model).save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    routing.save(directory / ROUTING_DIR)
    return directory


def load_routed(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[PreTrainedModel, ConditionalAwarenessRouting]:
    """Reload a `save_routed` directory: the HF model with its routing installed."""
    directory = Path(path)
    if not (directory / ROUTING_DIR).is_dir():
        raise RoutingError(
            f"{directory} has no {ROUTING_DIR}/ routing spec; write it with save_routed(), or "
            f"load a folded export with transformers.AutoModelForCausalLM.from_pretrained."
        )
    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CorruptFileError(
            f"{directory} does not hold a loadable model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); its files are "
            f"damaged or missing. Write it again with save_routed()."
        ) from None
    if device is not None:
        model = model.to(device)
    model.eval()
    routing = ConditionalAwarenessRouting.load(directory / ROUTING_DIR)
    routing.install(model)
    return model, routing
