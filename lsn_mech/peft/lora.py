"""Masked LoRA (Mondal et al., 2025, §2.2): LoRA whose MLP update touches only given neurons.

Neuron ``j`` of layer ``l`` is output ``j`` of the gate and up (or first) projection
and input ``j`` of the down projection. In PEFT's LoRA the update of a projection is
``ΔW = scaling · B @ A`` with ``A: [r, in]`` and ``B: [out, r]`` (whatever the storage
layout of the base weight; for GPT-2's ``Conv1D`` PEFT transposes ``ΔW`` on merging,
``fan_in_fan_out=True``). So:

* gate / up: only the neurons' **rows of B** may be non-zero, hence only those outputs
  (rows of an ``nn.Linear`` weight, columns of a ``Conv1D`` weight) change;
* down: only the neurons' **columns of A** may be non-zero, hence only those inputs.

How the mask is enforced, and why it survives real AdamW steps with weight decay: the
masked factor is replaced by a `MaskedLoraLinear`, an ``nn.Linear`` whose forward uses
``weight * mask`` (a fixed 0/1 tensor of the factor's shape, broadcast along ``r``;
``O(d_mlp · r)`` per call, nothing per token). Its entries outside the mask are zeroed
once at construction. From then on their gradient is exactly zero (the product with
the mask is in the graph), and an entry whose value and gradient are both zero stays
exactly zero under SGD, momentum, Adam and AdamW with decoupled or coupled weight
decay (decay multiplies 0, the moments stay 0, the update ``m/(√v+ε)`` is 0). The
forward pass ignores those entries anyway, so even a value written into them from
outside (``load_state_dict`` re-zeroes them; `enforce_masks` does so on demand) could
not change the model's output; what is saved is always ``weight * mask``. Parameter
names are unchanged, so ``save_pretrained`` / ``PeftModel.from_pretrained`` and
``merge_and_unload`` work as for any LoRA adapter.

Layers with no neuron of the set get no MLP LoRA at all (no parameters, no cost).
Attention projections get ordinary, unmasked LoRA, as in the paper.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn
from transformers import PreTrainedModel

from lsn_mech.errors import LsnMechError, UnsupportedArchitectureError
from lsn_mech.files import (
    atomic_save_safetensors,
    atomic_write,
    atomic_write_json,
    read_json,
    read_safetensors,
    require_fields,
    require_file,
)
from lsn_mech.models.hf import plain_hf_model
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.models.runtime.hf_bridge import BRIDGE_INFIX, is_bridged, strip_bridge_name
from lsn_mech.neurons import NeuronSet
from lsn_mech.neurons.checks import expect_neuron_set
from lsn_mech.neurons.io import load_neuron_set
from lsn_mech.neurons.io import save as save_neurons
from lsn_mech.peft.masks import ModuleMask, mlp_shape, model_type, neuron_module_masks

__all__ = [
    "ADAPTER_FILE",
    "ATTENTION_ROLES",
    "AdapterLoadError",
    "MaskedLoraError",
    "MaskedLoraLinear",
    "MaskedLoraSpec",
    "adapter_tensors",
    "attention_modules",
    "check_adapter_loaded",
    "enforce_masks",
    "load_masked_lora",
    "masked_lora",
    "masked_lora_spec",
    "mlp_lora_masks",
    "save_masked_lora",
]

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CONFIG_FILE = "adapter_config.json"
MASKS_FILE = "lsn_masks.safetensors"
MASKS_META = "lsn_masks.json"
FORMAT_NAME = "lsn_mech.masked_lora"
FORMAT_VERSION = 1
_PEFT_PREFIX = "base_model.model."
_SPEC_ATTR = "_lsn_masked_lora"

MLP_ROLES = ("gate", "up", "down")

_GATED_ATTENTION = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
}
# Module of each attention role, relative to the decoder layer. GPT-2 and BLOOM fuse
# q, k and v into one projection: asking for any of them targets the fused module.
ATTENTION_ROLES: dict[str, dict[str, str]] = {
    "gpt2": {"q": "attn.c_attn", "k": "attn.c_attn", "v": "attn.c_attn", "o": "attn.c_proj"},
    "bloom": {
        "q": "self_attention.query_key_value",
        "k": "self_attention.query_key_value",
        "v": "self_attention.query_key_value",
        "o": "self_attention.dense",
    },
    "llama": _GATED_ATTENTION,
    "qwen2": _GATED_ATTENTION,
    "mistral": _GATED_ATTENTION,
    "gemma3_text": _GATED_ATTENTION,
    "gemma3": _GATED_ATTENTION,
}

# LoraConfig options that keep the update a plain ``B @ A`` on the targeted weights.
# Everything else (DoRA, LoRA biases, PiSSA-style inits that rewrite the base weight,
# extra trainable modules, other target selectors) could change entries outside the
# neurons, so it is refused rather than silently breaking the guarantee.
_SAFE_INITS = (True, False, "gaussian")
_ALLOWED_KWARGS = frozenset(
    {
        "use_rslora",
        "init_lora_weights",
        "rank_pattern",
        "alpha_pattern",
        "inference_mode",
        "runtime_config",
        "base_model_name_or_path",
        "revision",
    }
)


class MaskedLoraError(LsnMechError, ValueError):
    """Masked LoRA was asked for something it cannot do (or a file is not a masked LoRA)."""


class AdapterLoadError(LsnMechError, RuntimeError):
    """Adapter weights in a file did not all land in the model (or the model has others)."""


# ---------------------------------------------------------------------------- module


class MaskedLoraLinear(nn.Linear):
    """A LoRA factor (``lora_A`` or ``lora_B``) whose weight is multiplied by a fixed mask.

    The mask is a non-persistent buffer (``[out, 1]`` for B's rows, ``[1, in]`` for A's
    columns), so the state dict, and hence PEFT's files, hold only ``weight``.
    """

    mask: Tensor

    @classmethod
    def wrap(cls, linear: nn.Linear, mask: Float[Tensor, "a b"]) -> MaskedLoraLinear:
        """Wrap ``linear`` (sharing its weight) and zero the weight outside ``mask``."""
        if linear.bias is not None:
            raise MaskedLoraError("A LoRA factor with a bias cannot be masked (lora_bias=True).")
        masked = cls(linear.in_features, linear.out_features, bias=False, device="meta")
        masked.weight = linear.weight
        masked.train(linear.training)
        mask = mask.to(device=linear.weight.device, dtype=linear.weight.dtype)
        masked.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            masked.weight.mul_(mask)
        return masked

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_out"]:
        return nn.functional.linear(x, self.effective_weight())

    def effective_weight(self) -> Float[Tensor, "d_out d_in"]:
        """The weight as the forward pass uses it (zero outside the mask)."""
        return self.weight * self.mask

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        with torch.no_grad():  # a loaded value outside the mask would be ignored; drop it
            self.weight.mul_(self.mask)


# ---------------------------------------------------------------------------- spec


@dataclasses.dataclass(frozen=True)
class MaskedLoraSpec:
    """What a masked LoRA adapter trains: kept on the PEFT model and saved next to it.

    Attributes:
        neurons: the neuron set whose rows/columns may change.
        targets: MLP roles asked for (``"gate"``, ``"up"``, ``"down"``).
        attention: attention roles asked for (``"q"``, ``"k"``, ``"v"``, ``"o"``).
        mlp: ``{HF module name: ModuleMask}`` of every masked MLP projection.
        attention_modules: HF names of the attention projections (unmasked LoRA).
        adapter_name: the PEFT adapter the masks belong to.
    """

    neurons: NeuronSet
    targets: tuple[str, ...]
    attention: tuple[str, ...]
    mlp: dict[str, ModuleMask]
    attention_modules: tuple[str, ...]
    adapter_name: str = "default"

    @property
    def target_modules(self) -> list[str]:
        """Every module PEFT wraps (full names, so GPT-2's two ``c_proj`` never clash)."""
        return sorted({*self.mlp, *self.attention_modules})

    def factor_masks(self) -> dict[str, tuple[str, Tensor]]:
        """``{module: ("lora_A" | "lora_B", float 0/1 mask of that factor's shape)}``.

        The mask broadcasts over the rank: ``[d_mlp, 1]`` for B, ``[1, d_mlp]`` for A.
        """
        result: dict[str, tuple[str, Tensor]] = {}
        for name, mm in self.mlp.items():
            along = mm.neuron_mask().float()
            if mm.side == "output":
                result[name] = ("lora_B", along[:, None])
            else:
                result[name] = ("lora_A", along[None, :])
        return result


def _roles(given: Iterable[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    roles = (given,) if isinstance(given, str) else tuple(dict.fromkeys(given))
    unknown = [r for r in roles if r not in allowed]
    if isinstance(given, str) or unknown:
        raise MaskedLoraError(
            f"Bad {what} {given!r}: pass a tuple of roles among {list(allowed)}, e.g. "
            f"{what}=({allowed[0]!r},)."
        )
    return roles


def mlp_lora_masks(
    hf_model: nn.Module, neurons: NeuronSet, targets: Iterable[str] = ("gate",)
) -> dict[str, ModuleMask]:
    """``{HF module name: ModuleMask}`` of the MLP projections a masked LoRA wraps.

    ``"gate"`` on an architecture without a gate (GPT-2 ``c_fc``, BLOOM
    ``dense_h_to_4h``) means the first projection, the one whose output the neurons
    are, as the paper does for BLOOM; ``"up"`` means the same module there. Layers
    without neurons of the set are left out.
    """
    roles = _roles(targets, MLP_ROLES, "targets")
    kind = model_type(hf_model)
    chosen: dict[str, ModuleMask] = {}
    for name, mm in neuron_module_masks(hf_model, neurons).items():
        first_only = "gate" not in mlp_module_names(kind, mm.layer)  # GPT-2, BLOOM
        if mm.role in roles or (first_only and mm.role == "up" and "gate" in roles):
            chosen[name] = mm
    return chosen


def attention_modules(
    hf_model: nn.Module, roles: Iterable[str] = ("q", "k", "v", "o")
) -> list[str]:
    """Full HF names of the attention projections of ``roles`` in every layer.

    GPT-2 (``c_attn``) and BLOOM (``query_key_value``) fuse q, k, v: any of them selects
    the fused projection.
    """
    chosen = _roles(roles, ("q", "k", "v", "o"), "attention")
    kind = model_type(hf_model)
    table = ATTENTION_ROLES.get(kind)
    if table is None:
        raise UnsupportedArchitectureError(
            f"No attention module map for model_type {kind!r}; supported: "
            f"{', '.join(ATTENTION_ROLES)}. Pass attention=() to train MLP neurons only."
        )
    suffixes = list(dict.fromkeys(table[role] for role in chosen))
    modules = dict(hf_model.named_modules())
    names: list[str] = []
    layer = 0
    while mlp_module_names(kind, layer)["down"] in modules:
        prefix = mlp_module_names(kind, layer)["down"].rsplit(".mlp.", 1)[0]
        for suffix in suffixes:
            name = f"{prefix}.{suffix}"
            if name not in modules:
                raise UnsupportedArchitectureError(
                    f"Expected attention module {name!r} in this {type(hf_model).__name__}; "
                    f"the attention map for {kind!r} in lsn_mech.peft.lora is out of date."
                )
            names.append(name)
        layer += 1
    return names


def _check_kwargs(lora_kwargs: Mapping[str, Any]) -> None:
    refused = sorted(set(lora_kwargs) - _ALLOWED_KWARGS)
    if refused:
        raise MaskedLoraError(
            f"LoraConfig option(s) {refused} are not accepted by masked_lora: r, alpha, "
            f"dropout, targets and attention are its own arguments, and options such as "
            f"use_dora, bias, lora_bias, modules_to_save or PiSSA-style inits would change "
            f"weights outside the neurons. Accepted extras: {sorted(_ALLOWED_KWARGS)}."
        )
    init = lora_kwargs.get("init_lora_weights", True)
    if init not in _SAFE_INITS:
        raise MaskedLoraError(
            f"init_lora_weights={init!r} rewrites the base weights; use one of {_SAFE_INITS}."
        )


def _plain(model: nn.Module) -> PreTrainedModel:
    """The HF model to wrap: a plain one in place; a bridge (or bridged model) as a copy."""
    if isinstance(model, PeftModel):
        raise MaskedLoraError(
            "The model already carries a PEFT adapter; pass the base Hugging Face model "
            "(peft_model.unload() or a fresh one)."
        )
    if isinstance(model, PreTrainedModel) and not is_bridged(model):
        return model
    return plain_hf_model(model, copy=True)


# ---------------------------------------------------------------------------- build


def masked_lora(
    model: nn.Module,
    neurons: NeuronSet,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    targets: Sequence[str] = ("gate",),
    attention: Sequence[str] = ("q", "k", "v", "o"),
    allow_empty: bool = False,
    **lora_kwargs: Any,
) -> PeftModel:
    """A PEFT LoRA model in which the MLP update changes only ``neurons``' rows/columns.

    Args:
        model: a plain HF causal LM (wrapped *in place*, as ``get_peft_model`` does) or a
            lsn_mech bridge / bridged HF model (a clean copy is built with
            `lsn_mech.models.hf.plain_hf_model`; the bridge itself is not modified).
        neurons: the neurons that may change (e.g. ``neurons["vi"] | neurons["en"]``).
        r: LoRA rank (all modules).
        alpha: ``lora_alpha`` (scaling ``alpha / r``).
        dropout: ``lora_dropout`` on each adapter's input.
        targets: MLP roles to adapt: ``"gate"`` (the paper's choice; the first projection
            on GPT-2/BLOOM), ``"up"`` (rows of B masked) and ``"down"`` (columns of A).
        attention: attention roles given ordinary LoRA (``()`` for none).
        allow_empty: accept a neuron set with no neuron (only the attention LoRA
            trains); without it an empty set is refused, since it usually means a
            detector selected nothing or the wrong language was picked.
        **lora_kwargs: further `peft.LoraConfig` options that keep the update a plain
            ``B @ A`` (``use_rslora``, ``init_lora_weights`` in True/False/"gaussian",
            ``rank_pattern``, ``alpha_pattern``, ...); others raise `MaskedLoraError`.

    Returns:
        The ``PeftModel``; `masked_lora_spec` tells what it trains. Train it with any
        loop and optimiser; `save_masked_lora` / `load_masked_lora` persist it.
    """
    expect_neuron_set(neurons, caller="lsn_mech.peft.masked_lora")
    _check_kwargs(lora_kwargs)
    _check_hyperparameters(r, alpha, dropout)
    hf = _plain(model)
    spec = MaskedLoraSpec(
        neurons=neurons,
        targets=_roles(targets, MLP_ROLES, "targets"),
        attention=_roles(attention, ("q", "k", "v", "o"), "attention"),
        mlp=mlp_lora_masks(hf, neurons, targets),
        attention_modules=tuple(attention_modules(hf, attention)),
    )
    if not spec.target_modules:
        raise MaskedLoraError(
            "Nothing to adapt: the neuron set has no neuron in the targeted projections "
            f"(targets={spec.targets}) and attention=(). Pass a non-empty set or attention roles."
        )
    if not spec.mlp and not allow_empty:
        raise MaskedLoraError(
            f"The neuron set is empty ({neurons.model_id!r}, site {neurons.site!r}), so only "
            "the attention LoRA would train; pass a non-empty set (check the detector's "
            "output, e.g. neurons['vi'].per_layer()), or allow_empty=True if that is meant."
        )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=spec.target_modules,
        fan_in_fan_out=model_type(hf) == "gpt2",  # Conv1D stores [in, out]
        task_type="CAUSAL_LM",
        **lora_kwargs,
    )
    peft_model = get_peft_model(hf, config, adapter_name=spec.adapter_name)
    _install_masks(peft_model, spec)
    return peft_model


def _lora_layers(peft_model: nn.Module, names: Iterable[str]) -> dict[str, LoraLayer]:
    """``{clean HF name: LoRA layer}``, found also under a bridge's renamed paths."""
    wanted = set(names)
    found: dict[str, LoraLayer] = {}
    for name, module in peft_model.named_modules(remove_duplicate=False):
        if not isinstance(module, LoraLayer):
            continue
        clean = strip_bridge_name(name).removeprefix(_PEFT_PREFIX)
        if clean in wanted and found.setdefault(clean, module) is not module:
            raise AdapterLoadError(f"Two different LoRA layers are both named {clean!r}.")
    missing = sorted(wanted - set(found))
    if missing:
        raise AdapterLoadError(
            f"{len(missing)} targeted modules carry no LoRA layer (e.g. {missing[:3]}); "
            f"was the adapter applied to this model?"
        )
    return found


def _install_masks(peft_model: PeftModel, spec: MaskedLoraSpec) -> None:
    layers = _lora_layers(peft_model, spec.target_modules)
    for name, (factor, mask) in spec.factor_masks().items():
        table = getattr(layers[name], factor)
        current = table[spec.adapter_name]
        expected = mask.shape[0] if factor == "lora_B" else mask.shape[1]
        actual = current.out_features if factor == "lora_B" else current.in_features
        if expected != actual:
            raise MaskedLoraError(
                f"{name}.{factor} has {actual} neurons along its masked axis, the set "
                f"d_mlp {expected}."
            )
        table[spec.adapter_name] = MaskedLoraLinear.wrap(current, mask)
    object.__setattr__(peft_model, _SPEC_ATTR, spec)


def _check_hyperparameters(r: int, alpha: int, dropout: float) -> None:
    """Refuse a rank, alpha or dropout PEFT would reject deep inside its own code."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise MaskedLoraError(f"r (the LoRA rank) must be a whole number >= 1, got {r!r}.")
    if not alpha > 0:
        raise MaskedLoraError(f"alpha must be > 0, got {alpha!r} (the paper uses alpha=2*r).")
    if not 0.0 <= dropout < 1.0:
        raise MaskedLoraError(f"dropout must lie in [0, 1), got {dropout!r}.")


def masked_lora_spec(peft_model: nn.Module) -> MaskedLoraSpec:
    """The `MaskedLoraSpec` of a model built by `masked_lora` or `load_masked_lora`."""
    spec = getattr(peft_model, "__dict__", {}).get(_SPEC_ATTR)
    if spec is None:
        raise MaskedLoraError(
            f"This {type(peft_model).__name__} was not built by lsn_mech.peft.masked_lora or "
            f"load_masked_lora, so it has no neuron masks. Build it with masked_lora(...)."
        )
    return spec


@torch.no_grad()
def enforce_masks(peft_model: nn.Module) -> int:
    """Zero every masked factor entry outside its mask; returns how many factors.

    Training keeps those entries at exactly zero already (see the module docstring);
    this is for weights written from outside, e.g. by a custom optimiser.
    """
    count = 0
    for module in peft_model.modules():
        if isinstance(module, MaskedLoraLinear):
            module.weight.mul_(module.mask)
            count += 1
    return count


# ---------------------------------------------------------------------------- save / load


def adapter_tensors(peft_model: nn.Module) -> dict[str, Tensor]:
    """The adapter as PEFT stores it: ``base_model.model.<clean name>.lora_{A,B}.weight``.

    Names are taken without the bridge's ``._original_component`` infix, and masked
    factors are written as ``weight * mask``.
    """
    spec = masked_lora_spec(peft_model)
    tensors: dict[str, Tensor] = {}
    for name, layer in _lora_layers(peft_model, spec.target_modules).items():
        for factor in ("lora_A", "lora_B"):
            module = getattr(layer, factor)[spec.adapter_name]
            weight = (
                module.effective_weight() if isinstance(module, MaskedLoraLinear) else module.weight
            )
            key = f"{_PEFT_PREFIX}{name}.{factor}.weight"
            tensors[key] = weight.detach().to("cpu").contiguous().clone()
    return tensors


def _save_config(config: Any, destination: Path) -> None:
    """PEFT's own ``adapter_config.json`` (``save_pretrained`` writes it into a folder), put
    at ``destination`` so that `save_masked_lora` can commit it atomically."""
    with tempfile.TemporaryDirectory(dir=destination.parent) as folder:
        config.save_pretrained(folder)
        shutil.copyfile(Path(folder) / ADAPTER_CONFIG, destination)


def save_masked_lora(peft_model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write a standard PEFT adapter directory plus the neuron masks; returns the directory.

    Files: ``adapter_config.json`` and ``adapter_model.safetensors`` (loadable by
    ``PeftModel.from_pretrained`` into a clean HF model, even when the model was booted
    by a bridge after PEFT was applied: the ``._original_component`` infix never reaches
    the file), ``lsn_masks.safetensors`` (the `NeuronSet`, readable by
    `lsn_mech.neurons.load`) and ``lsn_masks.json`` (targets and the masked modules).
    """
    spec = masked_lora_spec(peft_model)
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    (target / MASKS_META).unlink(missing_ok=True)  # written last: a killed save has none
    config = peft_model.peft_config[spec.adapter_name]  # type: ignore[index]
    atomic_write(target / ADAPTER_CONFIG, lambda temporary: _save_config(config, temporary))
    atomic_save_safetensors(target / ADAPTER_FILE, adapter_tensors(peft_model), {"format": "pt"})
    save_neurons(spec.neurons, target / MASKS_FILE)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "targets": list(spec.targets),
        "attention": list(spec.attention),
        "mlp_modules": {
            name: {
                "role": mm.role,
                "layer": mm.layer,
                "factor": "lora_B" if mm.side == "output" else "lora_A",
                "masked": "rows" if mm.side == "output" else "columns",
                "neurons": len(mm.neurons),
            }
            for name, mm in sorted(spec.mlp.items())
        },
        "attention_modules": list(spec.attention_modules),
    }
    atomic_write_json(target / MASKS_META, meta, indent=1)
    return target


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / MASKS_META
    if not meta_path.is_file():
        raise MaskedLoraError(
            f"{directory} has no {MASKS_META}: it is not a masked LoRA saved by "
            f"lsn_mech.peft.save_masked_lora. Load a plain adapter with "
            f"peft.PeftModel.from_pretrained and check it with check_adapter_loaded."
        )
    meta = read_json(meta_path, fix=RESAVE)
    version = meta.get("format_version", 0)
    if (
        meta.get("format") != FORMAT_NAME
        or not isinstance(version, int)
        or version > FORMAT_VERSION
    ):
        raise MaskedLoraError(
            f"{meta_path} is not a {FORMAT_NAME} file of version <= {FORMAT_VERSION}; "
            f"upgrade lsn_mech."
        )
    require_fields(meta_path, meta, _META_FIELDS, fix=RESAVE)
    return meta


RESAVE = "Save the adapter again with lsn_mech.peft.save_masked_lora."
"""The fix named when a file of a masked-LoRA directory is broken."""

_META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "targets": list,
    "attention": list,
    "mlp_modules": dict,
    "attention_modules": list,
}
"""Fields of ``lsn_masks.json`` checked on load (a hand edit that breaks one is refused)."""


def check_adapter_loaded(
    peft_model: PeftModel,
    expected: str | os.PathLike[str] | Mapping[str, Tensor],
    *,
    adapter_name: str = "default",
) -> None:
    """Raise `AdapterLoadError` unless the model's adapter equals the file's, key for key.

    ``PeftModel.from_pretrained`` only warns when keys of the file match no module
    (e.g. ``._original_component`` names from a booted model) and then runs with the
    freshly initialised adapter, a silent no-op. This compares both ways: every tensor
    of the file must have landed with the same value, and every adapter tensor of the
    model must come from the file. ``expected`` is an adapter directory, a
    ``.safetensors`` file or the tensors themselves.
    """
    if not isinstance(expected, Mapping):
        source = Path(expected)
        adapter_file = source / ADAPTER_FILE if source.is_dir() else source
        _, expected = read_safetensors(require_file(adapter_file, fix=RESAVE), fix=RESAVE)
    actual = get_peft_model_state_dict(peft_model, adapter_name=adapter_name)
    not_landed = sorted(set(expected) - set(actual))
    not_loaded = sorted(set(actual) - set(expected))
    differ = [
        key
        for key in sorted(set(expected) & set(actual))
        if not torch.equal(actual[key].detach().cpu(), expected[key].to(actual[key].dtype))
    ]
    if not_landed or not_loaded or differ:
        hint = (
            " The file's names contain '._original_component': it was saved from a model "
            "booted by a TransformerLens bridge; re-save it with "
            "lsn_mech.peft.save_masked_lora, which strips the infix."
            if any(BRIDGE_INFIX in key for key in expected)
            else ""
        )
        raise AdapterLoadError(
            f"The adapter did not load: {len(not_landed)} tensors of the file match no "
            f"module (e.g. {not_landed[:2]}), {len(not_loaded)} adapter tensors of the model "
            f"were not in the file (e.g. {not_loaded[:2]}), {len(differ)} differ in value "
            f"(e.g. {differ[:2]}).{hint}"
        )


def _fits_mask(weight: Tensor, mask: Tensor) -> bool:
    """Whether a LoRA factor has the model's size along every axis its mask covers."""
    return weight.ndim == mask.ndim and all(
        m in (1, w) for w, m in zip(weight.shape, mask.shape, strict=True)
    )


def _check_fits(hf: nn.Module, neurons: NeuronSet, directory: Path) -> None:
    """Refuse an adapter whose stored neurons come from a model of another shape (layers,
    MLP width), before PEFT fails on it with a raw size-mismatch ``RuntimeError``."""
    n_layers, d_mlp = mlp_shape(hf)
    if (neurons.n_layers, neurons.d_mlp) != (n_layers, d_mlp):
        raise AdapterLoadError(
            f"The adapter in {directory} was trained on a model with {neurons.n_layers} layers "
            f"of {neurons.d_mlp} MLP neurons, but this {type(hf).__name__} has "
            f"{n_layers} of {d_mlp}; load it onto the model it was trained on."
        )


def load_masked_lora(
    base_model: nn.Module,
    path: str | os.PathLike[str],
    *,
    is_trainable: bool = False,
) -> PeftModel:
    """Load a `save_masked_lora` directory onto ``base_model``, verified and re-masked.

    ``base_model`` is a plain HF model (wrapped in place) or a bridge (a clean copy is
    used). Every adapter tensor is compared with the file (`check_adapter_loaded`), the
    MLP factors are checked to be zero outside the stored neurons, and the masks are
    installed again, so training the result (``is_trainable=True``) stays masked.

    Raises:
        AdapterLoadError: a tensor of the file did not land, or the model holds adapter
            tensors the file does not set, or the file changes entries outside its neurons.
        MaskedLoraError: the directory is not a masked LoRA, or does not fit the model.
    """
    directory = Path(path)
    meta = _read_meta(directory)
    neurons = load_neuron_set(directory / MASKS_FILE)
    hf = _plain(base_model)
    _check_fits(hf, neurons, directory)
    spec = MaskedLoraSpec(
        neurons=neurons,
        targets=tuple(meta["targets"]),
        attention=tuple(meta["attention"]),
        mlp=mlp_lora_masks(hf, neurons, meta["targets"]),
        attention_modules=tuple(attention_modules(hf, meta["attention"])),
    )
    if sorted(spec.mlp) != sorted(meta["mlp_modules"]) or list(spec.attention_modules) != list(
        meta["attention_modules"]
    ):
        raise MaskedLoraError(
            f"The modules recorded in {directory / MASKS_META} differ from those the stored "
            f"neurons and targets give on this {type(hf).__name__}; load it onto the model "
            f"architecture it was trained on."
        )
    adapter_file = require_file(directory / ADAPTER_FILE, fix=RESAVE)
    _, tensors = read_safetensors(adapter_file, fix=RESAVE)
    for name, (factor, mask) in spec.factor_masks().items():
        key = f"{_PEFT_PREFIX}{name}.{factor}.weight"
        if key in tensors and not _fits_mask(tensors[key], mask):
            raise AdapterLoadError(
                f"{key} in {adapter_file} has shape {tuple(tensors[key].shape)}, but this "
                f"{type(hf).__name__} needs {tuple(mask.shape)} (1: any): it was trained on a "
                f"model of another size. Load it onto the model it was trained on."
            )
        if key in tensors and bool((tensors[key].float() * (1 - mask)).ne(0).any()):
            raise AdapterLoadError(
                f"{key} in {directory} is non-zero outside the stored neurons: the file "
                f"would change weights of other neurons. Re-save it with save_masked_lora."
            )
    require_file(directory / ADAPTER_CONFIG, fix=RESAVE)
    read_json(directory / ADAPTER_CONFIG, fix=RESAVE)
    try:
        peft_model = PeftModel.from_pretrained(hf, str(directory), is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "mismatch" in line), lines[0] if lines else "")
        raise AdapterLoadError(
            f"PEFT could not load the adapter in {directory} onto this {type(hf).__name__} "
            f"({type(exc).__name__}: {detail}); it was trained on another architecture or "
            f"size, or its files were edited. Load it onto the model it was trained on, or "
            f"save it again."
        ) from None
    check_adapter_loaded(peft_model, tensors, adapter_name=spec.adapter_name)
    _install_masks(peft_model, spec)
    return peft_model
