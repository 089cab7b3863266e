"""The runtime's generation and bridge ⇄ Hugging Face seam: greedy decoding equals a plain
argmax loop, stops where told, applies Hugging Face's repetition penalty and the bridge's
hooks; one key stripper and one ``as_hf``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lsn_mech.corpora import translation as corpora_translation
from lsn_mech.detect import pv_detector
from lsn_mech.errors import LsnMechError
from lsn_mech.evaluate import translation as evaluate_translation
from lsn_mech.interventions import deactivate
from lsn_mech.models import build_tiny, model_id
from lsn_mech.models import hf as models_hf
from lsn_mech.models.runtime import (
    BRIDGE_INFIX,
    GenerationError,
    NotAHuggingFaceModelError,
    as_hf,
    eos_token_ids,
    first_line,
    generate_lines,
    greedy_decode,
    is_bridged,
    left_pad,
    newline_token_ids,
    pad_id_for,
    strip_bridge_infix,
    strip_bridge_name,
)
from lsn_mech.neurons import NeuronSet

PROMPTS = ["In the beginning", "Et Dieu dit", "A", "How would you say this sentence?"]


@pytest.fixture(scope="module")
def hf_llama():  # type: ignore[no-untyped-def]
    """A plain (unbooted) tiny Llama and its byte tokenizer."""
    zoo = build_tiny("tiny-llama")
    return zoo.model, zoo.tokenizer


def encode(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    return [list(x) for x in tokenizer(prompts, add_special_tokens=True)["input_ids"]]


@torch.no_grad()
def argmax_loop(model: Any, ids: list[int], n: int, stop: set[int]) -> list[int]:
    """The plainest greedy decoding: full forward, argmax of the last logits, no cache."""
    tokens = list(ids)
    new: list[int] = []
    for _ in range(n):
        output = model(torch.tensor([tokens]))
        logits = getattr(output, "logits", output)[0, -1]
        token = int(logits.argmax())
        new.append(token)
        tokens.append(token)
        if token in stop:
            break
    return new


# ----- greedy decoding ------------------------------------------------------------------
def test_greedy_decode_equals_a_plain_argmax_loop(hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    encoded = encode(tok, PROMPTS)
    assert len({len(ids) for ids in encoded}) == len(encoded)  # the batch needs left padding
    expected = [argmax_loop(model, ids, 8, set()) for ids in encoded]
    batched = greedy_decode(model, encoded, max_new_tokens=8, batch_size=len(encoded))
    one_by_one = greedy_decode(model, encoded, max_new_tokens=8, batch_size=1)
    sorted_batches = greedy_decode(model, encoded, max_new_tokens=8, longest_first=True)
    loop = greedy_decode(model, encoded, max_new_tokens=8, use_hf_generate=False)
    assert batched == one_by_one == sorted_batches == loop == expected
    assert all(len(row) == 8 for row in batched)  # no stop token: every row runs out


def test_bridge_decodes_like_its_hf_model(llama, hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    encoded = encode(tok, PROMPTS)
    expected = greedy_decode(model, encoded, max_new_tokens=6)
    assert greedy_decode(llama, encoded, max_new_tokens=6) == expected
    assert greedy_decode(llama, encoded, max_new_tokens=6, use_hf_generate=False) == expected


def test_a_row_stops_after_its_first_stop_token(hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    encoded = encode(tok, PROMPTS)
    free = greedy_decode(model, encoded, max_new_tokens=10)
    stopper = free[0][3]
    cut = free[0].index(stopper) + 1
    for use_hf in (None, False):
        stopped = greedy_decode(
            model, encoded, max_new_tokens=10, stop_ids={stopper}, use_hf_generate=use_hf
        )
        assert stopped[0] == free[0][:cut]  # the stop token is kept, nothing after it
        for row, full in zip(stopped[1:], free[1:]):  # other rows stop at theirs or run on
            assert row == full[: full.index(stopper) + 1] if stopper in full else row == full


def test_stop_criterion_and_newline_ids(hf_llama) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.models.runtime.generate import _stopping_criteria

    _, tok = hf_llama
    (newline,) = tok("\n", add_special_tokens=False)["input_ids"]
    assert newline_token_ids(tok) == (newline,)
    stop = _stopping_criteria(torch.tensor([i in (newline, 3) for i in range(260)]))
    rows = torch.tensor([[5, newline], [newline, 7], [1, 3]])
    assert stop(rows, None).tolist() == [True, False, True]
    assert first_line("  Bonjour.\nHello\n") == "Bonjour."


def test_generate_lines_stops_at_newline_or_eos(hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    lines = generate_lines(model, tok, PROMPTS, max_new_tokens=12, progress=False)
    (newline,) = tok("\n", add_special_tokens=False)["input_ids"]
    stops = {*eos_token_ids(model, tok), newline}
    for prompt, line in zip(PROMPTS, lines):
        ids = encode(tok, [prompt])[0]
        raw = argmax_loop(model, ids, 12, stops)
        assert line == first_line(tok.decode(raw, skip_special_tokens=True))
        assert "\n" not in line


def test_eos_ids_are_the_union_of_tokenizer_generation_config_and_cfg() -> None:
    zoo = build_tiny("tiny-llama")
    model, tok = zoo.model, zoo.tokenizer
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    assert eos_token_ids(model, tok) == tuple(sorted({tok.eos_token_id, 7}))
    hooked = SimpleNamespace(tokenizer=SimpleNamespace(eos_token_id=3), cfg=SimpleNamespace())
    hooked.cfg.eos_token_id = (9, 3)
    assert eos_token_ids(hooked) == (3, 9)
    assert pad_id_for(SimpleNamespace(pad_token_id=None), (9, 3)) == 3
    assert pad_id_for(SimpleNamespace(pad_token_id=0), (9, 3)) == 0
    assert pad_id_for(SimpleNamespace(), ()) == 0


def test_left_pad() -> None:
    ids, mask = left_pad([[1, 2, 3], [4], []], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]


# ----- repetition penalty on a hand-computed case ---------------------------------------
class TableModel(torch.nn.Module):
    """A hooked model whose next-token logits are a fixed row per last token."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.cfg = SimpleNamespace(n_layers=0, d_mlp=0, eos_token_id=None)
        self.tokenizer = SimpleNamespace(eos_token_id=None, pad_token_id=None)

    @property
    def hook_dict(self) -> dict[str, Any]:
        return {}

    def hooks(self, *args: Any, **kwargs: Any) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


TABLE = torch.tensor(
    [
        [2.0, -1.0, 0.5, 1.9],  # after 0: 0 wins; penalised (2.0 / 2 = 1.0) 3 wins with 1.9
        [0.0, 0.0, 0.0, 5.0],  # after 1: 3 wins either way (5.0 / 2 = 2.5)
        [-0.2, -0.3, -1.0, -0.25],  # after 2: 0 wins; penalised 0 → -0.4, 3 → -0.5: 1 wins
        [-0.5, -3.0, 1.0, 0.8],  # after 3: 2 wins; penalised 2 → 1.0 (unseen), 3 → 0.4
    ]
)


def test_repetition_penalty_is_hugging_faces_on_a_hand_computed_case() -> None:
    model = TableModel(TABLE)
    (plain,) = greedy_decode(model, [[0]], max_new_tokens=4)
    (penalised,) = greedy_decode(model, [[0]], max_new_tokens=4, repetition_penalty=2.0)
    assert plain == [0, 0, 0, 0]
    # seen {0}: [1.0, -1.0, 0.5, 1.9] → 3; seen {0, 3}: [-1.0, -3.0, 1.0, 0.4] → 2;
    # seen {0, 2, 3}: [-0.4, -0.3, -2.0, -0.5] → 1; seen {0..3}: [0, 0, 0, 2.5] → 3.
    assert penalised == [3, 2, 1, 3]
    (stopped,) = greedy_decode(model, [[0]], max_new_tokens=4, repetition_penalty=2.0, stop_ids={2})
    assert stopped == [3, 2]


def test_models_that_cannot_generate_are_refused() -> None:
    with pytest.raises(GenerationError, match="PreTrainedModel"):
        greedy_decode(torch.nn.Linear(2, 2), [[1]], max_new_tokens=2)
    with pytest.raises(GenerationError, match="holds no Hugging Face"):
        greedy_decode(TableModel(TABLE), [[0]], max_new_tokens=2, use_hf_generate=True)
    with pytest.raises(GenerationError, match="at least 1"):
        greedy_decode(TableModel(TABLE), [[0]], max_new_tokens=0)
    with pytest.raises(GenerationError, match="positive"):
        greedy_decode(TableModel(TABLE), [[0]], max_new_tokens=1, repetition_penalty=0.0)
    with pytest.raises(evaluate_translation.TranslationEvalError, match="PreTrainedModel"):
        evaluate_translation.generate_lines(torch.nn.Linear(2, 2), None, ["a\n"])


# ----- hooks apply during generation ----------------------------------------------------
@contextlib.contextmanager
def counting(model: Any, name: str) -> Iterator[list[int]]:
    calls: list[int] = []

    def hook(activation: torch.Tensor, hook: Any) -> None:
        calls.append(int(activation.shape[1]))

    with model.hooks(fwd_hooks=[(name, hook)]):
        yield calls


def test_interventions_on_hook_points_apply_during_generation(llama) -> None:  # type: ignore[no-untyped-def]
    encoded = encode(llama.tokenizer, PROMPTS[:2])
    before = greedy_decode(llama, encoded, max_new_tokens=6, batch_size=2)
    with counting(llama, "blocks.1.mlp.hook_post") as calls:
        again = greedy_decode(llama, encoded, max_new_tokens=6, batch_size=2)
    assert again == before
    # one forward per new token: the prompt, then one position at a time (KV cache)
    assert len(calls) == 6 and calls[1:] == [1] * 5
    with deactivate(llama, NeuronSet.full(3, 128)):
        during = greedy_decode(llama, encoded, max_new_tokens=6, batch_size=2)
        loop = greedy_decode(llama, encoded, max_new_tokens=6, use_hf_generate=False)
    assert during != before and loop == during
    assert greedy_decode(llama, encoded, max_new_tokens=6, batch_size=2) == before


# ----- bridge ⇄ Hugging Face ------------------------------------------------------------
def test_stripper_keeps_the_infixed_key_on_collisions() -> None:
    infixed = f"model.layers.0.mlp{BRIDGE_INFIX}.up_proj.weight"
    alias = "model.layers.0.mlp.up_proj.weight"
    plain = "model.embed_tokens.weight"
    for state in (
        {infixed: "hf", alias: "bridge", plain: "embed"},
        {alias: "bridge", infixed: "hf", plain: "embed"},
    ):
        assert strip_bridge_infix(state) == {alias: "hf", plain: "embed"}
        assert pv_detector.strip_bridge_keys(state) == {alias: "hf", plain: "embed"}
        assert models_hf.strip_bridge_infix(state) == {alias: "hf", plain: "embed"}
    assert strip_bridge_infix({plain: 1, alias: 2}) == {plain: 1, alias: 2}
    assert strip_bridge_name(infixed) == alias


def test_as_hf_on_a_bridge_and_on_a_plain_model(llama, hf_llama) -> None:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedModel

    model, _ = hf_llama
    assert as_hf(model) is model and not is_bridged(model)
    inner = as_hf(llama)
    assert isinstance(inner, PreTrainedModel) and inner is llama.original_model
    assert is_bridged(inner) and models_hf.inner_hf_model(llama) is inner
    with pytest.raises(NotAHuggingFaceModelError, match="load_model") as info:
        as_hf(torch.nn.Linear(2, 2))
    assert isinstance(info.value, TypeError) and isinstance(info.value, LsnMechError)


def test_model_id_falls_back_to_the_hf_name(llama, hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, _ = hf_llama
    assert model_id(llama) == "tiny-llama"  # recorded by the loader
    assert model_id(model) == model.config.name_or_path == "tiny-llama"
    assert model_id(torch.nn.Linear(2, 2)) is None


def test_old_names_stay_importable() -> None:
    from lsn_mech.corpora import prompt_target

    assert evaluate_translation.left_pad is left_pad
    assert evaluate_translation.first_line is first_line
    assert evaluate_translation.newline_token_ids is newline_token_ids
    assert corpora_translation.pad_right is prompt_target.pad_right
    assert corpora_translation.IGNORE_INDEX == prompt_target.IGNORE_INDEX == -100
    assert corpora_translation.TextExample is prompt_target.TextExample
    assert corpora_translation.target_only_example is prompt_target.target_only_example
    assert corpora_translation.shuffled_padded_batches is prompt_target.shuffled_padded_batches
    assert issubclass(corpora_translation.TranslationDataError, prompt_target.PromptTargetError)


def test_a_peft_model_over_hf_generates_like_its_base_model(hf_copy) -> None:  # type: ignore[no-untyped-def]
    """A PEFT-wrapped HF model (what selective finetuning and LoRA evaluate) decodes through
    its own ``generate``, as translation evaluation did before the runtime owned it; a
    fresh LoRA adapter (B = 0) changes nothing, so the lines equal the base model's."""
    from peft import LoraConfig, get_peft_model

    from lsn_mech.models.runtime import generate_lines
    from lsn_mech.models.runtime.generate import hf_generator

    tiny = build_tiny("tiny-llama")
    prompts = ["abc", "hello wor"]
    base = generate_lines(tiny.model, tiny.tokenizer, prompts, max_new_tokens=6)
    peft_model = get_peft_model(tiny.model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert hf_generator(peft_model) is peft_model
    assert hf_generator(torch.nn.Linear(2, 2)) is None
    assert generate_lines(peft_model, tiny.tokenizer, prompts, max_new_tokens=6) == base
