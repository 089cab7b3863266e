"""A fingerprint of a model's weights, so a resumed run can tell a finetuned model apart.

A model id says which checkpoint was loaded, not what the weights are now: a model
finetuned in place (masked LoRA merged into a few neuron rows, say) keeps its id. The
fingerprint reads every bit of every parameter, because such an edit may touch only a
handful of rows that a sample of the weights would miss.

It is exact integer arithmetic on the raw bits, so it is the same whichever device
computes it: NumPy on the CPU (torch's integer reductions are several times slower
there), torch on the parameters' own device elsewhere (no copy to the host). It costs
one read of the weights, well under one forward pass of a batch, and changes with the
dtype the model was loaded in, as the statistics do.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

CHUNK = 1 << 20
"""Words summed at once; every chunk's sums fit in int64 whatever the model size."""

WEIGHT_PERIOD = 251
"""Position weights cycle through 1…251 within a chunk, so swapped values change a sum."""


def weights_fingerprint(model: Any) -> str:
    """A 16-hex-digit digest of every parameter's dtype, shape and bits.

    Works on anything with ``parameters()`` (a `TransformerBridge`, a Hugging Face
    model, a plain ``nn.Module``), on any device and dtype. Independent of parameter
    names and order, so an upgrade that renames modules keeps old runs resumable; a
    change to any weight, or to the dtype, changes it.
    """
    summaries = [_summary(parameter.detach()) for parameter in model.parameters()]
    digest = hashlib.sha256()
    for line in sorted(summaries):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def _summary(tensor: torch.Tensor) -> str:
    """``dtype:shape:plain:weighted``, the sums of the tensor's bits read as integer words."""
    head = f"{tensor.dtype}:{tuple(tensor.shape)}"
    if tensor.is_meta:
        return f"{head}:meta"
    flat = tensor.reshape(-1)
    size = flat.element_size()
    words = flat.view(torch.int8 if size == 1 else torch.int16 if size == 2 else torch.int32)
    sums = word_sums_numpy(words) if words.device.type == "cpu" else word_sums_torch(words)
    return f"{head}:{sums[0]}:{sums[1]}"


def word_sums_numpy(words: torch.Tensor) -> tuple[int, int]:
    """Plain and position-weighted sums of integer ``words`` (a CPU tensor), exactly."""
    values = words.numpy()
    weights = np.arange(min(CHUNK, values.size), dtype=np.int64) % WEIGHT_PERIOD + 1
    plain = weighted = 0
    for start in range(0, values.size, CHUNK):
        chunk = values[start : start + CHUNK].astype(np.int64)
        plain += int(chunk.sum())
        weighted += int(np.dot(chunk, weights[: chunk.size]))
    return plain, weighted


def word_sums_torch(words: torch.Tensor) -> tuple[int, int]:
    """`word_sums_numpy` computed by torch on the words' own device (one sync at the end)."""
    count = min(CHUNK, words.numel())
    weights = torch.arange(count, dtype=torch.int64, device=words.device) % WEIGHT_PERIOD + 1
    plain, weighted = [], []
    for start in range(0, words.numel(), CHUNK):
        chunk = words[start : start + CHUNK].to(torch.int64)
        plain.append(chunk.sum())
        weighted.append((chunk * weights[: chunk.numel()]).sum())
    if not plain:
        return 0, 0
    totals = torch.stack(plain + weighted).tolist()
    return sum(totals[: len(plain)]), sum(totals[len(plain) :])
