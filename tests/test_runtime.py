"""The runtime: capture of hook sites with early stop, and the loss at target positions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from lsn_mech.detect import awareness
from lsn_mech.errors import UnsupportedArchitectureError
from lsn_mech.evaluate.perplexity import token_nll_sum
from lsn_mech.models import HookedModel, build_tiny, hook_sites, load_model
from lsn_mech.models.runtime import (
    IGNORE_INDEX,
    CaptureError,
    LossArgumentError,
    capture,
    chunked_cross_entropy,
    chunked_cross_entropy_sum,
    final_residual,
    next_token_labels,
    target_loss,
    target_nll_sum,
    target_positions,
    target_tokens,
    unembed,
)


def batch_of(tokenizer, texts: list[str], prompt: int = 3, left: bool = False) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
    """A padded batch (right, or left with ``left``); no loss on the first ``prompt`` tokens."""
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    length = max(len(e) for e in encoded)
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    labels = torch.full((len(texts), length), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(encoded):
        where = slice(length - len(e), length) if left else slice(0, len(e))
        ids[row, where] = torch.tensor(e)
        mask[row, where] = 1
        labels[row, where] = torch.tensor(e)
        start = where.start or 0
        labels[row, start : start + prompt] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


TEXTS = ["in the beginning god created", "the earth", "and there was light, and it was good"]


# ---------------------------------------------------------------------------- capture


def test_capture_equals_run_with_cache(tiny_model) -> None:  # type: ignore[no-untyped-def]
    sites = hook_sites(tiny_model)
    names = sites.names("mlp_pre") + sites.names("mlp_post")
    batch = batch_of(tiny_model.tokenizer, TEXTS)
    with torch.no_grad():
        got = capture(tiny_model, batch["input_ids"], names, attention_mask=batch["attention_mask"])
        _, cache = tiny_model.run_with_cache(
            batch["input_ids"], attention_mask=batch["attention_mask"], names_filter=names
        )
    assert set(got) == set(names)
    for name in names:
        assert torch.equal(got[name], cache[name]), name


def test_capture_stops_after_the_last_site(llama) -> None:  # type: ignore[no-untyped-def]
    sites = hook_sites(llama)
    fired: list[str] = []

    def record(activation: Tensor, hook) -> None:  # type: ignore[no-untyped-def]
        fired.append(hook.name)

    later = ["blocks.1.hook_resid_pre", "blocks.1.mlp.hook_pre", "unembed.hook_in"]
    spies = [(name, record) for name in later]
    ids = torch.tensor([[1, 40, 41, 42]])
    with torch.no_grad():
        got = capture(llama, ids, [sites.mlp_post(0)], fwd_hooks=spies)
    assert fired == [] and list(got) == [sites.mlp_post(0)]
    # the last layer's sites: the unembedding never runs
    with torch.no_grad():
        capture(llama, ids, sites.names("mlp_pre"), fwd_hooks=[("unembed.hook_out", record)])
    assert fired == []
    # the hooks are gone afterwards: a plain forward reaches the unembedding
    with torch.no_grad(), llama.hooks(fwd_hooks=[("unembed.hook_out", record)]):
        llama(ids)
    assert fired == ["unembed.hook_out"]


def test_callback_sees_what_accumulate_returns_in_forward_order(llama) -> None:  # type: ignore[no-untyped-def]
    sites = hook_sites(llama)
    names = [sites.mlp_post(1), sites.mlp_pre(0), sites.mlp_pre(1)]  # any order
    ids = torch.tensor([[1, 50, 60, 70, 80], [1, 90, 91, 92, 93]])
    seen: list[tuple[str, Tensor]] = []
    with torch.no_grad():
        kept = capture(llama, ids, names)
        returned = capture(llama, ids, names, callback=lambda n, a: seen.append((n, a)))
    assert returned == {}
    assert [n for n, _ in seen] == [sites.mlp_pre(0), sites.mlp_pre(1), sites.mlp_post(1)]
    for name, activation in seen:
        assert torch.equal(activation, kept[name])


def test_fwd_hooks_edit_what_is_captured(llama) -> None:  # type: ignore[no-untyped-def]
    name = hook_sites(llama).mlp_post(0)
    ids = torch.tensor([[1, 50, 60, 70]])
    with torch.no_grad():
        edited = capture(llama, ids, [name], fwd_hooks=[(name, lambda a, hook: a * 0 + 3.0)])
    assert bool((edited[name] == 3.0).all())


def test_capture_keeps_the_graph_for_gradients(llama) -> None:  # type: ignore[no-untyped-def]
    name = hook_sites(llama).mlp_post(1)
    got = capture(llama, torch.tensor([[1, 50, 60]]), [name])[name]
    assert got.requires_grad
    got.sum().backward()
    assert any(p.grad is not None for p in llama.parameters())
    llama.zero_grad(set_to_none=True)


def test_capture_rejects_no_names_and_unknown_names(llama) -> None:  # type: ignore[no-untyped-def]
    ids = torch.tensor([[1, 50]])
    with pytest.raises(CaptureError, match="at least one hook"):
        capture(llama, ids, [])
    with pytest.raises(UnsupportedArchitectureError, match=r"no hook 'blocks\.99"):
        capture(llama, ids, ["blocks.99.mlp.hook_pre"])


def test_final_residual_is_the_unembedding_input(tiny_model) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(tiny_model.tokenizer, TEXTS[:2])
    with torch.no_grad():
        residual = final_residual(tiny_model, batch["input_ids"], batch["attention_mask"])
        logits = tiny_model(batch["input_ids"], attention_mask=batch["attention_mask"])
    flat = residual.reshape(-1, residual.shape[-1])
    torch.testing.assert_close(
        unembed(tiny_model, flat), logits.reshape(flat.shape[0], -1), rtol=1e-5, atol=1e-5
    )


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.hook_pre = HookPoint()
        self.mlp.hook_post = HookPoint()
        self.w = nn.Linear(d, d)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.mlp.hook_pre(self.w(x))
        return x + self.mlp.hook_post(torch.relu(pre))


class _TL3Style(HookedRootModule):
    """A TransformerLens 3-style model: its forward does not catch any stop exception."""

    def __init__(self, n_layers: int = 3, d: int = 8, vocab: int = 11) -> None:
        super().__init__()
        self.cfg = type("Cfg", (), {"n_layers": n_layers, "d_mlp": d, "d_model": d})()
        self.tokenizer = None
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(_Block(d) for _ in range(n_layers))
        self.ln_final = nn.Module()
        self.ln_final.hook_normalized = HookPoint()
        self.unembed = nn.Linear(d, vocab)
        self.calls = 0
        self.setup()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        self.calls += 1  # reached only when nothing stopped the pass
        return self.unembed(self.ln_final.hook_normalized(x))


def test_capture_works_on_a_model_that_does_not_catch_the_stop() -> None:
    torch.manual_seed(0)
    model = _TL3Style()
    assert isinstance(model, HookedModel)
    names = hook_sites(model).names("mlp_pre")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        got = capture(model, ids, names)
        _, cache = model.run_with_cache(ids, names_filter=names)
    assert model.calls == 1  # run_with_cache's full pass; capture stopped before the end
    for name in names:
        assert torch.equal(got[name], cache[name])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    with torch.no_grad():
        loss = target_loss(model, batch)
        expected = F.cross_entropy(model(ids)[0, :-1], ids[0, 1:])
    torch.testing.assert_close(loss, expected)


# ---------------------------------------------------------------------------- positions


def test_target_positions_and_tokens_by_hand() -> None:
    x = IGNORE_INDEX
    labels = torch.tensor([[x, x, 5, 6], [x, 7, x, x], [x, x, x, 9]])
    expected = torch.tensor(
        [[False, True, True, False], [True, False, False, False], [False, False, True, False]]
    )
    assert torch.equal(target_positions(labels), expected)
    assert target_tokens(labels).tolist() == [5, 6, 7, 9]


def test_next_token_labels_skip_padding_on_either_side() -> None:
    ids = torch.tensor([[0, 0, 11, 12, 13], [21, 22, 23, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    x = IGNORE_INDEX
    assert next_token_labels(ids, mask).tolist() == [[x, x, x, 12, 13], [x, 22, 23, x, x]]


# ---------------------------------------------------------------------------- loss


def plain_loss_sum(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of every position's logits against the next label, the plain way."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


@pytest.mark.parametrize("left", [False, True])
def test_target_nll_sum_equals_plain_cross_entropy(tiny_model, left: bool) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(tiny_model.tokenizer, TEXTS, left=left)
    with torch.no_grad():
        total, count = target_nll_sum(tiny_model, batch)
        logits = tiny_model(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert total.dtype == torch.float64
    assert count == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(total.float(), plain_loss_sum(logits, batch["labels"]))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_hf_and_bridge_give_the_same_loss(name: str) -> None:
    hf = build_tiny(name).model
    bridge = load_model(name)
    batch = batch_of(bridge.tokenizer, TEXTS)
    with torch.no_grad():
        hf_total, hf_count = target_nll_sum(hf, batch)
        bridge_total, bridge_count = target_nll_sum(bridge, batch)
        expected = build_tiny(name).model(**batch).loss
        mean = target_loss(hf, batch)
    assert hf_count == bridge_count
    torch.testing.assert_close(hf_total, bridge_total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, expected, rtol=1e-5, atol=1e-6)
    assert mean.dtype == torch.float32


def test_chunking_does_not_change_the_loss(llama) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(llama.tokenizer, TEXTS)
    with torch.no_grad():
        whole, count = target_nll_sum(llama, batch, logits_chunk=None)
        for chunk in (1, 3, 7, count, count + 5):
            total, _ = target_nll_sum(llama, batch, logits_chunk=chunk)
            torch.testing.assert_close(total, whole, rtol=1e-6, atol=1e-6)


def test_logits_exist_only_at_target_positions_chunk_by_chunk(llama) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(llama.tokenizer, TEXTS)
    shapes: list[tuple[int, ...]] = []
    spy = ("unembed.hook_out", lambda a, hook: shapes.append(tuple(a.shape)))
    with torch.no_grad(), llama.hooks(fwd_hooks=[spy]):
        _, count = target_nll_sum(llama, batch, logits_chunk=4)
    rows = [s[-2] for s in shapes]
    assert sum(rows) == count and max(rows) <= 4  # never a full-batch unembedding


def test_chunked_cross_entropy_by_hand() -> None:
    hidden = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    targets = torch.tensor([1, 0, 1])
    # identity unembedding: logits are the rows themselves
    expected = sum(
        float(torch.logsumexp(row, 0) - row[t]) for row, t in zip(hidden, targets.tolist())
    )
    for chunk in (None, 1, 2):
        got = chunked_cross_entropy_sum(hidden, targets, lambda h: h, logits_chunk=chunk)
        assert float(got) == pytest.approx(expected, rel=1e-6)
    empty = chunked_cross_entropy_sum(hidden[:0], targets[:0], lambda h: h, logits_chunk=None)
    assert float(empty) == 0.0
    with pytest.raises(LossArgumentError, match="logits_chunk"):
        chunked_cross_entropy_sum(hidden, targets, lambda h: h, logits_chunk=0)


def test_in_place_loss_matches_cross_entropy_and_spares_the_callers_tensors() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(50, 8, generator=generator) * 3
    hidden = torch.randn(11, 8, generator=generator)
    targets = torch.randint(0, 50, (11,), generator=generator)
    expected = F.cross_entropy(hidden @ weight.T, targets, reduction="none")
    kept = hidden.clone()
    with torch.no_grad():  # evaluation: the in-place path on each chunk's fresh logits
        for chunk in (None, 1, 4):
            got = chunked_cross_entropy(hidden, targets, lambda h: h @ weight.T, logits_chunk=chunk)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # an unembedding that returns its input: the loss must not overwrite it
        logits = hidden @ weight.T
        got = chunked_cross_entropy(logits, targets, lambda h: h, logits_chunk=3)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits, hidden @ weight.T)
    assert torch.equal(hidden, kept)
    leaf = hidden.clone().requires_grad_(True)  # training: autograd's cross-entropy
    losses = chunked_cross_entropy(leaf, targets, lambda h: h @ weight.T, logits_chunk=4)
    losses.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_loss_gradients_flow_through_fwd_hooks(llama) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(llama.tokenizer, TEXTS[:2])
    name = hook_sites(llama).mlp_post(1)
    kept: dict[str, Tensor] = {}

    def leaf(activation: Tensor, hook) -> Tensor:  # type: ignore[no-untyped-def]
        kept["h"] = activation.detach().requires_grad_(True)
        return kept["h"]

    with torch.enable_grad():
        loss = target_loss(llama, batch, [(name, leaf)])
        (grad,) = torch.autograd.grad(loss, [kept["h"]])
    assert grad.abs().sum() > 0


def test_no_target_gives_zero_and_hf_models_take_no_hook_names(llama) -> None:  # type: ignore[no-untyped-def]
    batch = batch_of(llama.tokenizer, TEXTS[:1])
    batch["labels"][:] = IGNORE_INDEX
    with torch.no_grad():
        assert float(target_loss(llama, batch)) == 0.0
    with pytest.raises(LossArgumentError, match="hooked model"):
        target_nll_sum(build_tiny("tiny-llama").model, batch, [("blocks.0.mlp.hook_pre", print)])


# ---------------------------------------------------------------------------- old names


def test_old_names_use_the_runtime(llama) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.corpora.translation import IGNORE_INDEX as corpora_ignore
    from lsn_mech.models.unembedding import final_residual as old_final_residual
    from lsn_mech.training.selective import IGNORE_INDEX as training_ignore
    from lsn_mech.training.selective import target_positions as training_positions

    assert corpora_ignore == IGNORE_INDEX and training_ignore is IGNORE_INDEX
    assert training_positions is target_positions and old_final_residual is final_residual
    labels = torch.tensor([[IGNORE_INDEX, 4, 5]])
    with pytest.warns(DeprecationWarning, match="target_positions"):
        mask, tokens = awareness.target_positions(labels)
    assert mask.tolist() == [[True, True, False]] and tokens.tolist() == [4, 5]
    batch = batch_of(llama.tokenizer, TEXTS, left=True)
    with torch.no_grad():
        nll, count = token_nll_sum(llama, batch["input_ids"], batch["attention_mask"].bool())
        logits = llama(batch["input_ids"], attention_mask=batch["attention_mask"])
    real = batch["attention_mask"].bool()
    labels = batch["input_ids"].masked_fill(~real, IGNORE_INDEX)
    labels[:, 1:] = labels[:, 1:].masked_fill(~real[:, :-1], IGNORE_INDEX)
    assert count == int((real[:, 1:] & real[:, :-1]).sum())
    assert nll == pytest.approx(float(plain_loss_sum(logits, labels)), rel=1e-5)
