"""PV: parameter variation (Tang et al. §3.1 (d), after Zhao et al. 2023).

Compare the MLP weights of a base model with copies finetuned on one language each.
Neuron ``j`` of layer ``l`` owns row ``j`` of the gate and up projections (of the first
projection for GPT-2/BLOOM, a *column* of GPT-2's ``Conv1D`` ``c_fc``), entry ``j`` of
their biases, and column ``j`` of the down projection (a row of GPT-2's ``c_proj``).

1. Change rate per language ``k`` (``change="relative"``, default):
   ``R[l, j, k] = Σ_m ‖θ_m,j^(k) − θ_m,j‖₂ / ‖θ_m,j‖₂`` over the neuron's parameter
   vectors ``m`` (gate row ⊕ gate bias, up row ⊕ up bias, down column); a vector whose
   base norm is 0 contributes its absolute change. ``change="absolute"``: without the
   division.
2. "Subtract the maximum, then L1-normalise" (paper): ``D = max_k R − R`` (``direction=
   "low"``: large where the change is *low*; ``"high"`` mirrors it: ``D = R − min_k R``)
   and ``q = D / Σ_k D``.
3. ``H[l, j] = −Σ_k q_k ln q_k`` (``0 · ln 0 = 0``). Neurons whose rates are equal in
   every language (``Σ D = 0``, e.g. unchanged ones) or whose largest rate is
   ``≤ min_change`` get ``+inf``: they are not specific to anything.
4. The ``round(top_rate · layers · d_mlp)`` lowest ``H`` are selected (ties: lower flat
   index first); a selected neuron belongs to every language with
   ``q_k > share_threshold`` (default ``1 / n_languages``, more than an even share).
   With ``direction="low"`` these are the "one or two languages" where it changed
   little while it changed a lot in the others; every selected neuron with finite
   ``H`` belongs to at least one language, never to the one it changed most in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import (
    DetectorInputError,
    EntropySelection,
    check_finite,
    check_languages,
    check_rate,
    check_selectable,
    lowest_k,
    make_provenance,
    normalised_entropy,
    require_languages,
)
from lsn_mech.models.modules import MLP_MODULES, mlp_module_names
from lsn_mech.models.protocol import model_id as recorded_model_id
from lsn_mech.models.runtime.hf_bridge import as_hf, has_hf, strip_bridge_infix
from lsn_mech.neurons import LanguageNeurons

ChangeRule = Literal["relative", "absolute"]
Direction = Literal["low", "high"]

_CONV1D_TYPES = frozenset({"gpt2"})  # weights stored [in, out]


#: Kept under its old name; on colliding keys the infixed one wins (see the function).
strip_bridge_keys = strip_bridge_infix


def _neuron_vectors(
    state: Mapping[str, Tensor], model_type: str, layer: int, include_bias: bool, label: str
) -> dict[str, Tensor]:
    """Each projection's parameters of layer ``layer`` as ``[d_mlp, fan]`` (row = neuron)."""
    conv1d = model_type in _CONV1D_TYPES
    vectors: dict[str, Tensor] = {}
    for role, name in mlp_module_names(model_type, layer).items():
        key = f"{name}.weight"
        if key not in state:
            nearby = [k for k in state if ".mlp." in k][:6]
            raise DetectorInputError(
                f"The {label} state dict has no {key!r} (model_type {model_type!r}). MLP keys "
                f"it has: {nearby or 'none'}. Pass the model_type of the model these weights "
                f"come from, or a full Hugging Face state dict."
            )
        weight = state[key].detach()
        if weight.ndim != 2:
            raise DetectorInputError(f"{label}: {key} should be 2-D, got {tuple(weight.shape)}.")
        outgoing = role != "down"  # gate/up produce the neuron; down consumes it
        # nn.Linear is [out, in]; Conv1D is [in, out].
        per_neuron = weight if outgoing != conv1d else weight.T
        per_neuron = per_neuron.to(torch.float64)
        bias = state.get(f"{name}.bias")
        if include_bias and outgoing and bias is not None:
            per_neuron = torch.cat([per_neuron, bias.detach().to(torch.float64)[:, None]], dim=1)
        vectors[role] = per_neuron
    return vectors


def _count_layers(state: Mapping[str, Tensor], model_type: str) -> int:
    layer = 0
    while f"{mlp_module_names(model_type, layer)['down']}.weight" in state:
        layer += 1
    return layer


def pv_change_rates(
    base_state_dict: Mapping[str, Tensor],
    state_dicts_by_language: Mapping[str, Mapping[str, Tensor]],
    *,
    model_type: str,
    n_layers: int | None = None,
    d_mlp: int | None = None,
    change: ChangeRule = "relative",
    include_bias: bool = True,
) -> Float[Tensor, "layer d_mlp lang"]:
    """Per-neuron change rate ``R[layer, neuron, lang]`` of the MLP weights (float64, CPU).

    Languages are in the order of ``state_dicts_by_language``. See the module
    documentation for the formula; keys may carry TransformerLens's
    ``._original_component`` infix.
    """
    if model_type not in MLP_MODULES:
        mlp_module_names(model_type, 0)  # raises UnsupportedArchitectureError with the list
    if change not in ("relative", "absolute"):
        raise DetectorInputError(f"change must be 'relative' or 'absolute', got {change!r}.")
    if not state_dicts_by_language:
        raise DetectorInputError("state_dicts_by_language is empty; pass {language: state_dict}.")
    base = strip_bridge_keys(base_state_dict)
    tuned = {lang: strip_bridge_keys(sd) for lang, sd in state_dicts_by_language.items()}
    layers = n_layers if n_layers is not None else _count_layers(base, model_type)
    if layers < 1:
        raise DetectorInputError(
            f"Found no MLP layers of model_type {model_type!r} in the base state dict; "
            f"check model_type (supported: {', '.join(MLP_MODULES)})."
        )
    per_layer = []
    for layer in range(layers):
        base_vectors = _neuron_vectors(base, model_type, layer, include_bias, "base")
        width = next(iter(base_vectors.values())).shape[0]
        if d_mlp is not None and width != d_mlp:
            raise DetectorInputError(
                f"Layer {layer} of the base model has {width} MLP neurons, not d_mlp={d_mlp}; "
                f"pass the d_mlp of the model (or leave it out to infer it)."
            )
        d_mlp = width
        columns = []
        for lang, state in tuned.items():
            vectors = _neuron_vectors(state, model_type, layer, include_bias, repr(lang))
            rate = torch.zeros(width, dtype=torch.float64)
            for role, before in base_vectors.items():
                after = vectors[role]
                if after.shape != before.shape:
                    raise DetectorInputError(
                        f"Language {lang!r}, layer {layer}, {role} projection: shape "
                        f"{tuple(after.shape)} differs from the base model's "
                        f"{tuple(before.shape)}; finetune copies of the same base model."
                    )
                delta = (after.to(before.device) - before).norm(dim=1).cpu()
                if change == "relative":
                    size = before.norm(dim=1).cpu()
                    delta = torch.where(size > 0, delta / torch.where(size > 0, size, 1.0), delta)
                rate += delta
            columns.append(rate)
        per_layer.append(torch.stack(columns, dim=-1))
    return torch.stack(per_layer)


def pv_from_rates(
    rates: Float[Tensor, "layer d_mlp lang"],
    languages: list[str] | tuple[str, ...],
    *,
    top_rate: float = 0.01,
    direction: Direction = "low",
    share_threshold: float | None = None,
    min_change: float = 0.0,
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> EntropySelection:
    """Steps 2–4 of PV (module documentation) on precomputed change rates."""
    top_rate = check_rate("top_rate", top_rate, allow_zero=False)
    codes = check_languages(languages, rates.shape[-1], "change-rate tensor")
    require_languages(len(codes), "PV")
    if direction not in ("low", "high"):
        raise DetectorInputError(f"direction must be 'low' or 'high', got {direction!r}.")
    rates = rates.to(torch.float64)
    check_finite(rates, "change rates")
    if bool((rates < 0).any()):
        raise DetectorInputError("Change rates must be non-negative (they are norms).")
    check_selectable(
        rates,
        codes,
        method="PV",
        what="parameter change rates",
        fix="The finetuned models do not tell neurons apart: check that each language's "
        "finetuning changed the MLP weights (and that base and tuned models differ).",
    )
    threshold = 1.0 / len(codes) if share_threshold is None else float(share_threshold)
    if not 0 <= threshold < 1:
        raise DetectorInputError(
            f"share_threshold must lie in [0, 1), got {share_threshold!r} (default 1/n_languages)."
        )
    if direction == "low":
        spread = rates.max(dim=-1, keepdim=True).values - rates
    else:
        spread = rates - rates.min(dim=-1, keepdim=True).values
    total = spread.sum(dim=-1, keepdim=True)
    share = torch.where(total > 0, spread / torch.where(total > 0, total, 1.0), 0.0)
    entropy = normalised_entropy(spread)
    eligible = (total.squeeze(-1) > 0) & (rates.max(dim=-1).values > min_change)
    entropy = torch.where(eligible, entropy, torch.full_like(entropy, float("inf")))
    layers, width, _ = rates.shape
    k = round(top_rate * layers * width)
    selected = lowest_k(entropy, k)
    membership = (share > threshold).permute(2, 0, 1) & (selected & eligible).unsqueeze(0)
    provenance = make_provenance(
        None,
        method="pv",
        model_id=model_id,
        parameters={
            **(parameters or {}),
            "languages": list(codes),
            "top_rate": top_rate,
            "direction": direction,
            "share_threshold": threshold,
            "min_change": float(min_change),
            "neuron_site": neuron_site,
            "tie_break": "flat_index",
            "n_selected": int(selected.sum()),
        },
    )
    neurons = LanguageNeurons.from_mask(
        membership, codes, site=neuron_site, model_id=model_id, provenance=provenance
    )
    return EntropySelection(
        neurons=neurons,
        values=rates,
        entropy=entropy,
        selected=selected,
        membership=membership,
        filter_bar=None,
        activation_bar=None,
    )


def pv_from_state_dicts(
    base_state_dict: Mapping[str, Tensor],
    state_dicts_by_language: Mapping[str, Mapping[str, Tensor]],
    *,
    model_type: str,
    n_layers: int | None = None,
    d_mlp: int | None = None,
    top_rate: float = 0.01,
    change: ChangeRule = "relative",
    direction: Direction = "low",
    share_threshold: float | None = None,
    min_change: float = 0.0,
    include_bias: bool = True,
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
) -> LanguageNeurons:
    """PV on Hugging Face state dicts: a base model and one finetuned copy per language.

    Args:
        base_state_dict: weights before finetuning.
        state_dicts_by_language: language → weights after finetuning on that language.
        model_type: Hugging Face ``config.model_type`` (``"llama"``, ``"gpt2"``, …), which
            names the MLP projections (`lsn_mech.models.modules.MLP_MODULES`).
        n_layers: number of layers; inferred from the state dict when omitted.
        d_mlp: neurons per layer; inferred when omitted, checked when given.
        top_rate: share of all neurons selected, lowest entropy first (paper: 1 %).
        change: ``"relative"`` (``‖Δθ‖/‖θ‖`` per parameter vector, summed) or
            ``"absolute"`` (``‖Δθ‖``, summed).
        direction: ``"low"`` (paper): a neuron belongs to the languages it changed
            *least* in; ``"high"``: to those it changed most in.
        share_threshold: membership needs ``q_k >`` this (default ``1/n_languages``).
        min_change: neurons whose largest rate is ``≤ min_change`` are never selected.
        include_bias: count the gate/up bias entry of the neuron with its row.
        neuron_site: site of the returned neurons.
        model_id: model the neurons belong to.
    """
    rates = pv_change_rates(
        base_state_dict,
        state_dicts_by_language,
        model_type=model_type,
        n_layers=n_layers,
        d_mlp=d_mlp,
        change=change,
        include_bias=include_bias,
    )
    return pv_from_rates(
        rates,
        list(state_dicts_by_language),
        top_rate=top_rate,
        direction=direction,
        share_threshold=share_threshold,
        min_change=min_change,
        neuron_site=neuron_site,
        model_id=model_id,
        parameters={"model_type": model_type, "change": change, "include_bias": include_bias},
    ).neurons


def _hf_model(model: torch.nn.Module, label: str) -> Any:
    """The Hugging Face model itself (a TransformerLens bridge is unwrapped)."""
    hf = as_hf(model) if has_hf(model) else None
    if getattr(getattr(hf, "config", None), "model_type", None) is None:
        raise DetectorInputError(
            f"The {label} model has no config.model_type; pass Hugging Face models "
            f"(PreTrainedModel), or use pv_from_state_dicts(..., model_type=...)."
        )
    return hf


def pv(
    base_model: torch.nn.Module,
    finetuned_models_by_language: Mapping[str, torch.nn.Module],
    *,
    top_rate: float = 0.01,
    change: ChangeRule = "relative",
    direction: Direction = "low",
    share_threshold: float | None = None,
    min_change: float = 0.0,
    include_bias: bool = True,
    neuron_site: str = "mlp_post",
    model_id: str | None = None,
) -> LanguageNeurons:
    """PV on Hugging Face models: a base model and one finetuned copy per language.

    Models booted by TransformerLens (or the bridges themselves) are accepted: the
    bridge's ``original_model`` is used and ``._original_component`` is stripped from
    the keys. ``model_id`` defaults to the base model's `lsn_mech.models.model_id` (its
    lsn_mech id, else ``config.name_or_path``). Every other argument is as in
    `pv_from_state_dicts`. Only MLP neurons are scored (the paper also scores attention
    parameters, which are not neurons).
    """
    base = _hf_model(base_model, "base")
    model_type = str(base.config.model_type)
    tuned = {}
    for lang, model in finetuned_models_by_language.items():
        hf = _hf_model(model, repr(lang))
        if hf.config.model_type != model_type:
            raise DetectorInputError(
                f"The model for {lang!r} is a {hf.config.model_type!r}, the base a "
                f"{model_type!r}: finetune copies of the base model."
            )
        tuned[lang] = hf.state_dict()
    if model_id is None:
        model_id = recorded_model_id(base_model)
    return pv_from_state_dicts(
        base.state_dict(),
        tuned,
        model_type=model_type,
        top_rate=top_rate,
        change=change,
        direction=direction,
        share_threshold=share_threshold,
        min_change=min_change,
        include_bias=include_bias,
        neuron_site=neuron_site,
        model_id=model_id,
    )
