"""``load_model``: any supported source to a TransformerLens 4 bridge with raw HF numerics."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lsn_mech.errors import HubUnavailableError, UnknownModelError, WrongInputError
from lsn_mech.hub import HUB_HOST as HUB_HOST  # re-exported: the probe moved to lsn_mech.hub
from lsn_mech.hub import PROXY_VARIABLES as PROXY_VARIABLES
from lsn_mech.hub import hub_offline as hub_offline
from lsn_mech.hub import hub_reachable as hub_reachable
from lsn_mech.models.limits import check_device
from lsn_mech.models.sites import hook_sites
from lsn_mech.models.zoo import ZOO, load_zoo

_NOT_A_MODEL = f"not a zoo model ({', '.join(ZOO)}), not a local directory"


def default_device() -> torch.device:
    """CUDA when available, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU (bfloat16 matmuls are ~40x slower without bf16 instructions),
    bfloat16 on accelerators that support it."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(
    source: str | os.PathLike[str] | PreTrainedModel,
    *,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    model_id: str | None = None,
) -> Any:
    """Load a model as a TransformerLens 4 ``TransformerBridge`` (no weight processing).

    ``source`` is a zoo name (``"gemma-3-270m"``, ``"tiny-llama"``, …; see
    `lsn_mech.models.ZOO`), a local Hugging Face directory, a hub id, or an
    in-memory ``PreTrainedModel`` (then pass ``tokenizer``). The model is moved to
    ``device`` and cast to ``dtype`` before booting, because the bridge does not apply
    them to a pre-loaded model. The bridge modifies the HF model in place.
    ``model_id`` is the id recorded for provenance and for the check that neurons are
    applied to the model they were detected on (default: the zoo name, directory or hub
    id; pass the base model's id for a derived in-memory copy such as a merged adapter).
    """
    check_device(device)  # before loading: an absent GPU must not cost a model load
    target_device = torch.device(device) if device is not None else default_device()
    target_dtype = dtype if dtype is not None else default_dtype(target_device)
    hf_model, hf_tokenizer, model_name = _resolve(source, tokenizer)
    hf_model = hf_model.to(device=target_device, dtype=target_dtype).eval()
    if not getattr(hf_model.config, "architectures", None):
        hf_model.config.architectures = [type(hf_model).__name__]
    hf_tokenizer = _reloadable(hf_tokenizer)
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        _official_name(model_name),
        hf_model=hf_model,
        tokenizer=hf_tokenizer,
        device=target_device,
        dtype=target_dtype,
    )
    bridge._lsn_model_id = model_id or model_name
    hook_sites(bridge)  # fail now, with a clear message, if there are no MLP sites
    return bridge


def _official_name(name: str) -> str:
    """The hub id TransformerLens expects, so it does not warn about deprecated aliases."""
    from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

    return resolve_model_alias(name) or name


def _resolve(
    source: str | os.PathLike[str] | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | str | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    if isinstance(source, PreTrainedModel):
        name = str(getattr(source.config, "name_or_path", "") or type(source).__name__)
        return source, _tokenizer_for(tokenizer, name), name
    if isinstance(source, str) and source in ZOO:
        zoo = load_zoo(source)
        chosen = zoo.tokenizer if tokenizer is None else _tokenizer_for(tokenizer, source)
        return zoo.model, chosen, zoo.name
    if not isinstance(source, (str, os.PathLike)):
        raise WrongInputError(
            f"load_model takes a zoo name, a hub id, a local model directory or a Hugging "
            f"Face model object, got {type(source).__name__}; e.g. load_model('gemma-3-270m')."
        )
    path = Path(source)
    if path.is_dir():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager")
        except (OSError, ValueError, KeyError) as exc:
            raise UnknownModelError(
                f"{path} is a folder, but not a Hugging Face causal language model "
                f"({exc.__class__.__name__}: {str(exc).splitlines()[0]}). Pass a folder "
                "written by model.save_pretrained(...), a zoo name or a hub id."
            ) from None
        return model, _tokenizer_for(tokenizer, str(path)), str(path)
    return _from_hub(str(source), tokenizer)


def _from_hub(
    name: str, tokenizer: PreTrainedTokenizerBase | str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    local_only = hub_offline() or not hub_reachable()
    if local_only and not _in_hub_cache(name):
        # Refuse now: transformers would retry the hub for half a minute before failing.
        raise UnknownModelError(
            f"{name!r} is {_NOT_A_MODEL}, not in the Hugging Face cache, and the hub "
            "cannot be reached to download it (offline). Use a zoo name, a local model "
            "directory, or connect to the internet (or set HF_ENDPOINT to a reachable mirror)."
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name,
            attn_implementation="eager",
            local_files_only=local_only,
            adapter_kwargs={"local_files_only": local_only},
        )
    except (OSError, ValueError) as exc:
        if local_only:
            raise UnknownModelError(
                f"{name!r} is {_NOT_A_MODEL}, and its copy in the Hugging Face cache "
                f"cannot be loaded offline ({exc.__class__.__name__}: {exc}). Connect to the "
                "internet to download it again, or use a local model directory."
            ) from exc
        raise UnknownModelError(
            f"{name!r} is {_NOT_A_MODEL}, and the Hugging Face hub could not load it "
            f"({exc.__class__.__name__}: {exc}). Check the id."
        ) from exc
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    return model, _tokenizer_for(tokenizer, name), name


def _in_hub_cache(name: str) -> bool:
    """Whether the Hugging Face cache holds a model config for hub id ``name``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id ("a b", "../x"): it cannot be cached
        return False
    return isinstance(found, str)


def _tokenizer_for(
    tokenizer: PreTrainedTokenizerBase | str | None, model_name: str
) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    source = tokenizer or model_name
    # A hub id offline: only the cache, not half a minute of retries.
    local_only = not Path(source).is_dir() and (hub_offline() or not hub_reachable())
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise HubUnavailableError(
            f"No tokenizer could be loaded from {source!r}. Pass tokenizer= (a Hugging Face "
            "tokenizer object or a local directory) to load_model."
        ) from exc


def _reloadable(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Save and reload a tokenizer that was built in memory.

    TransformerLens reads ``name_or_path`` from the tokenizer's init kwargs; a tokenizer
    built in memory lacks it and the bridge fails with ``KeyError: 'name_or_path'``.
    """
    if tokenizer.init_kwargs.get("name_or_path"):
        return tokenizer
    directory = tempfile.mkdtemp(prefix="lsn_mech_tokenizer_")
    tokenizer.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)
