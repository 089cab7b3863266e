"""Greedy generation: the one decoding path for translation, QA answers and steering.

Decoding is Hugging Face's own ``generate`` (greedy, KV cache, its repetition penalty
and its end-of-sequence stop) on the model that `as_hf` finds, on left-padded batches
with an explicit attention mask. On a TransformerLens 4 bridge that is the booted
``original_model``, whose submodules are the bridge's wrappers, so hooks on the
bridge's hook points (every intervention) run at each decoding step. A hooked model
with no Hugging Face model inside (e.g. a TransformerLens 3 ``HookedTransformer``)
falls back to a plain loop without cache that applies the same Hugging Face logits
processor and stop criterion, one prompt at a time:

```python
from lsn_mech.models.runtime import eos_token_ids, greedy_decode

ids = [model.tokenizer("Et Dieu dit")["input_ids"]]
(new,) = greedy_decode(model, ids, max_new_tokens=20, stop_ids=eos_token_ids(model),
                       repetition_penalty=1.1)
print(model.tokenizer.decode(new, skip_special_tokens=True))
```
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Collection, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int64
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech.errors import LsnMechError
from lsn_mech.models.protocol import HookedModel
from lsn_mech.models.runtime.hf_bridge import as_hf, has_hf


class GenerationError(LsnMechError, ValueError):
    """A generation got a model it cannot run or settings it cannot use."""


# ----- stop tokens ------------------------------------------------------------------------
_NEWLINE_CACHE: weakref.WeakKeyDictionary[Any, tuple[int, ...]] = weakref.WeakKeyDictionary()


def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of the tokens whose text contains a newline (cached per tokenizer)."""
    try:
        return _NEWLINE_CACHE[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    ids = tuple(i for i, text in enumerate(texts) if "\n" in text)
    with contextlib.suppress(TypeError):  # a tokenizer that cannot be weakly referenced
        _NEWLINE_CACHE[tokenizer] = ids
    return ids


def eos_token_ids(model: Any, tokenizer: Any = None) -> tuple[int, ...]:
    """Every end-of-sequence id the model knows, sorted: the tokenizer's, the Hugging Face
    ``generation_config``'s (Gemma 3 lists ``<end_of_turn>`` there too) and the
    TransformerLens ``cfg``'s. ``tokenizer=None`` takes ``model.tokenizer``."""
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    ids: set[Any] = {getattr(tokenizer, "eos_token_id", None)}
    configured = [getattr(getattr(model, "cfg", None), "eos_token_id", None)]
    hf = hf_generator(model)
    if hf is not None:
        configured.append(getattr(hf.generation_config, "eos_token_id", None))
    for value in configured:
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    return tuple(sorted(int(i) for i in ids if i is not None))


def pad_id_for(tokenizer: Any, eos_ids: Sequence[int]) -> int:
    """The id that pads a batch: the tokenizer's ``pad_token_id``, else the smallest EOS id,
    else 0. Padded positions are masked out; with a repetition penalty the pad token
    counts as seen, which only lowers the pad token's own logit."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        return int(pad)
    return int(min(eos_ids)) if eos_ids else 0


def _stopping_criteria(stop: Bool[Tensor, " vocab"]) -> Any:
    """Hugging Face's criterion: a row stops once its newest token is one of ``stop``."""
    from transformers import StoppingCriteriaList
    from transformers.generation.stopping_criteria import EosTokenCriteria

    return StoppingCriteriaList([EosTokenCriteria(stop.nonzero().flatten().cpu())])


def _until_stop(tokens: Sequence[int], stop_ids: Collection[int]) -> list[int]:
    """``tokens`` up to and including the first stop token (padding after it dropped)."""
    for i, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[: i + 1])
    return list(tokens)


def first_line(text: str) -> str:
    """The text before the first newline, stripped (the translation of one line)."""
    return text.split("\n", 1)[0].strip()


# ----- batches ----------------------------------------------------------------------------
def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[Int64[Tensor, "batch seq"], Int64[Tensor, "batch seq"]]:
    """Token ids and attention mask, padded on the left (generation appends on the right).

    Written out rather than ``tokenizer.pad`` so that already-encoded prompts (with the
    caller's BOS rule) and tokenizers without a pad token work alike.
    """
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, length - len(seq) :] = 1
    return ids, mask


# ----- the two engines --------------------------------------------------------------------
def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's first parameter lives (where its inputs go)."""
    return next(iter(model.parameters())).device


@torch.no_grad()
def _generate(
    hf: Any,
    input_ids: Int64[Tensor, "batch seq"],
    attention_mask: Int64[Tensor, "batch seq"],
    *,
    max_new_tokens: int,
    pad_id: int,
    stop_ids: Sequence[int],
    repetition_penalty: float = 1.0,
) -> Int64[Tensor, "batch new"]:
    """Greedy continuation of a left-padded batch by Hugging Face (the new tokens only)."""
    output = hf.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=repetition_penalty,
        pad_token_id=pad_id,
        eos_token_id=list(stop_ids) or None,
    )
    return output[:, input_ids.shape[1] :]


@torch.no_grad()
def _greedy_loop(
    model: Any,
    ids: Sequence[int],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    repetition_penalty: float = 1.0,
) -> list[int]:
    """Greedy continuation of one prompt without a KV cache, for hooked models with no
    Hugging Face model inside (or on request): every step runs the whole sequence (hooks
    see every position, as in ``generate``) through the same penalty and stop rule."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    tokens = torch.tensor([list(ids)], dtype=torch.long, device=_device(model))
    start = tokens.shape[1]
    stop = None
    for _ in range(max_new_tokens):
        output = model(tokens)  # logits, or a Hugging Face output that holds them
        logits = getattr(output, "logits", output)[:, -1].float()
        scores = processors(tokens, logits)
        tokens = torch.cat([tokens, scores.argmax(dim=-1, keepdim=True)], dim=1)
        if stop is None:
            mask = torch.zeros(scores.shape[-1], dtype=torch.bool)
            mask[[i for i in stop_ids if i < scores.shape[-1]]] = True
            stop = _stopping_criteria(mask)
        if bool(stop(tokens, scores).all()):
            break
    return tokens[0, start:].tolist()


def hf_generator(model: Any) -> Any | None:
    """The Hugging Face model whose ``generate`` decodes ``model``: the one `as_hf` finds,
    or ``model`` itself when it generates like one (a PEFT model over a Hugging Face
    model); ``None`` when there is none."""
    if has_hf(model):
        return as_hf(model)
    if callable(getattr(model, "generate", None)) and hasattr(model, "generation_config"):
        return model
    return None


def _uses_hf(model: Any, use_hf_generate: bool | None) -> bool:
    """Which engine decodes ``model``; refuses a model neither engine can run."""
    if hf_generator(model) is not None:
        return use_hf_generate is not False
    if use_hf_generate:
        raise GenerationError(
            f"use_hf_generate=True, but a {type(model).__name__} holds no Hugging Face "
            "model; pass use_hf_generate=None to decode it with the plain loop."
        )
    if not isinstance(model, HookedModel):
        raise GenerationError(
            f"Cannot generate with a {type(model).__name__}: pass a Hugging Face "
            "PreTrainedModel or a TransformerLens 4 bridge from lsn_mech.load_model."
        )
    return False


def greedy_decode(
    model: Any,
    sequences: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Collection[int] = (),
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    pad_id: int | None = None,
    longest_first: bool = False,
    use_hf_generate: bool | None = None,
    progress: bool = False,
    desc: str = "generate",
) -> list[list[int]]:
    """Greedy continuations of token-id prompts, in the order given.

    Each continuation ends with its first stop token (kept, so a caller can tell a stop
    from running out of ``max_new_tokens``). ``repetition_penalty`` is Hugging Face's
    (``RepetitionPenaltyLogitsProcessor``): every token already in the row, prompt (and
    padding) included, has a positive logit divided and a negative one multiplied by it.

    Args:
        model: a Hugging Face ``PreTrainedModel``, a bridge over one, or (plain loop) any
            `HookedModel` whose call returns logits.
        sequences: the prompts' token ids, special tokens included.
        stop_ids: a row stops once it generates one of these (e.g. `eos_token_ids`).
        batch_size: prompts decoded together (left-padded); the plain loop takes one.
        pad_id: what pads a batch; default: the smallest stop id, else 0.
        longest_first: batch the prompts sorted by length (less padding, same output).
        use_hf_generate: ``None``: Hugging Face's ``generate`` when the model has a
            Hugging Face model inside, else the plain loop; ``False`` forces the loop.
        progress: a progress bar over batches, titled ``desc``.

    Raises:
        GenerationError: a setting below 1, or a model neither engine can run.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise GenerationError(
            f"max_new_tokens and batch_size must be at least 1; got {max_new_tokens} and "
            f"{batch_size}."
        )
    if repetition_penalty <= 0:
        raise GenerationError(f"repetition_penalty must be positive; got {repetition_penalty}.")
    use_hf = _uses_hf(model, use_hf_generate)
    stops = sorted({int(i) for i in stop_ids})
    pad = int(pad_id) if pad_id is not None else (stops[0] if stops else 0)
    order = list(range(len(sequences)))
    if longest_first:
        order.sort(key=lambda i: -len(sequences[i]))
    size = batch_size if use_hf else 1
    out: list[list[int]] = [[] for _ in sequences]
    hf = hf_generator(model) if use_hf else None
    device = _device(hf) if hf is not None else None
    for start in tqdm(range(0, len(order), size), desc=desc, disable=not progress):
        chunk = order[start : start + size]
        if hf is None:
            (i,) = chunk
            new = [
                _greedy_loop(
                    model,
                    sequences[i],
                    max_new_tokens=max_new_tokens,
                    stop_ids=stops,
                    repetition_penalty=repetition_penalty,
                )
            ]
        else:
            ids, mask = left_pad([sequences[i] for i in chunk], pad)
            new = _generate(
                hf,
                ids.to(device),
                mask.to(device),
                max_new_tokens=max_new_tokens,
                pad_id=pad,
                stop_ids=stops,
                repetition_penalty=repetition_penalty,
            ).tolist()
        for i, row in zip(chunk, new):
            out[i] = _until_stop(row, set(stops))
    return out


def generate_lines(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    progress: bool = True,
) -> list[str]:
    """Greedy first lines after each prompt: the answer of one translation or question.

    Prompts are tokenised with the tokenizer's special tokens and decoded in batches of
    similar length (`greedy_decode`, ``longest_first``); a row stops at EOS (see
    `eos_token_ids`) or at the first token that contains a newline, and its text is cut
    at the first newline and stripped. ``tokenizer=None`` takes ``model.tokenizer``.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise GenerationError("max_new_tokens and batch_size must be at least 1.")
    _uses_hf(model, None)  # refuse a model that cannot generate before needing its tokenizer
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    eos = eos_token_ids(model, tokenizer)
    stops = set(eos) | set(newline_token_ids(tokenizer))
    encoded = [list(x) for x in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
    generated = greedy_decode(
        model,
        encoded,
        max_new_tokens=max_new_tokens,
        stop_ids=stops,
        batch_size=batch_size,
        pad_id=pad_id_for(tokenizer, eos),
        longest_first=True,
        progress=progress,
        desc="generate",
    )
    return [first_line(tokenizer.decode(row, skip_special_tokens=True)) for row in generated]
