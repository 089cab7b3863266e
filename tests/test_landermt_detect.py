"""LANDeRMT detection: representation-analysis layers (Eq. 1–2), Taylor awareness (Eq. 3–4)
and the general/specific variance split (Eq. 5)."""

from __future__ import annotations

import pytest
import torch

from lsn_mech.detect import (
    Awareness,
    AwarenessSplit,
    DetectorInputError,
    layer_activation_means,
    layer_selection_from_means,
    select_layers,
    split_awareness,
    split_scores,
    taylor_awareness,
)
from lsn_mech.detect.awareness import batch_awareness, target_loss
from lsn_mech.interventions import deactivate
from lsn_mech.models import build_tiny, hook_sites, load_model
from lsn_mech.neurons import NeuronSet


def make_batch(tokenizer, texts: list[str], prompt_chars: int = 4) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Right-padded batch; labels only after the first ``prompt_chars`` tokens."""
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    length = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(texts), length), pad, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = torch.tensor(e)
        mask[row, : len(e)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :prompt_chars] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ----- Eq. 1–2 -----------------------------------------------------------------------
def test_layer_selection_hand_computed() -> None:
    means = [[0.0, 1.0, 3.0, 3.5, 3.6], [0.0, 0.2, 0.4, 2.4, 2.5]]
    selection = layer_selection_from_means(means, [("en", "fr"), ("en", "zh")], k=2)
    # D(en-fr) = [1, 2, .5, .1]; D(en-zh) = [.2, .2, 2, .1]; mean = [.6, 1.1, 1.25, .1]
    assert torch.allclose(
        selection.deltas("en-fr"), torch.tensor([1.0, 2.0, 0.5, 0.1], dtype=torch.float64)
    )
    assert selection.layers(("en", "fr")) == [1, 2]  # transitions 0→1 and 1→2 name 1, 2
    assert selection.layers("en-zh") == [2, 3]  # transitions 2→3 (2.0) then 0→1/1→2 tie (0.2)
    assert selection.layers() == [2, 3]  # mean: transitions 2 (1.25) and 1 (1.1)
    previous = layer_selection_from_means(means, ["en-fr", "en-zh"], k=2, attribute_to="previous")
    assert previous.layers("en-fr") == [0, 1]
    assert previous.layers() == [1, 2]


def test_layer_selection_rejects_bad_k_and_pair() -> None:
    with pytest.raises(DetectorInputError, match="k must be"):
        layer_selection_from_means([[0.0, 1.0, 2.0]], ["en-fr"], k=3)
    selection = layer_selection_from_means([[0.0, 1.0, 2.0]], ["en-fr"], k=1)
    with pytest.raises(DetectorInputError, match="No pair 'de-en'"):
        selection.layers("de-en")


def test_layer_means_match_a_cache_and_selection_saves(tmp_path, llama) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(llama.tokenizer, ["hello there world", "abc"])
    means = layer_activation_means(llama, [batch])
    sites = hook_sites(llama)
    names = [sites.mlp_post(layer) for layer in range(sites.n_layers)]
    with torch.no_grad():
        _, cache = llama.run_with_cache(
            batch["input_ids"], attention_mask=batch["attention_mask"], names_filter=names
        )
    real = batch["attention_mask"].bool()
    expected = torch.stack([cache[n][real].double().mean() for n in names]).float()
    assert torch.allclose(means[0], expected, atol=1e-6)
    selection = select_layers(llama, {("en", "fr"): [batch, batch]}, k=1, progress=False)
    assert selection.passes == [2]
    path = selection.save(tmp_path / "layers")
    again = type(selection).load(path)
    assert again.layers() == selection.layers() and again.means == selection.means
    assert selection.plot("deltas").data and selection.plot("means").data


# ----- Eq. 3–4 -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_target_loss_equals_hf_loss(name: str) -> None:
    model = load_model(name)
    batch = make_batch(model.tokenizer, ["the quick brown fox", "jumps"], prompt_chars=3)
    with torch.no_grad():
        ours = target_loss(model, batch)
        hf = build_tiny(name).model(**batch).loss
    assert float(ours) == pytest.approx(float(hf), rel=1e-5)


def test_awareness_equals_gradient_times_activation_by_hand(llama) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(llama.tokenizer, ["in the beginning", "and the earth"])
    layers = [1, 2]
    scores, loss = batch_awareness(llama, batch, layers, reduce="batch")
    # by hand: a leaf at the first layer's mlp_post, autograd through the bridge
    sites = hook_sites(llama)
    kept: dict[int, torch.Tensor] = {}

    def keep(layer: int):  # type: ignore[no-untyped-def]
        def hook(act, hook):  # type: ignore[no-untyped-def]
            if not act.requires_grad:
                act = act.detach().requires_grad_(True)
            kept[layer] = act
            return act

        return hook

    with torch.enable_grad():
        loss2 = target_loss(llama, batch, [(sites.mlp_post(i), keep(i)) for i in layers])
        grads = torch.autograd.grad(loss2, [kept[i] for i in layers])
    for i, layer in enumerate(layers):
        expected = (grads[i] * kept[layer]).sum(dim=(0, 1)).abs().double()
        assert torch.allclose(scores[i], expected, atol=1e-7)
    assert loss == pytest.approx(float(loss2.detach()), rel=1e-6)
    token, _ = batch_awareness(llama, batch, layers, reduce="token")
    example, _ = batch_awareness(llama, batch, layers, reduce="example")
    assert bool((token >= example - 1e-9).all()) and bool((example >= scores - 1e-9).all())
    assert all(p.requires_grad for p in llama.parameters()), "flags must be restored"


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def test_first_order_awareness_ranks_true_loss_change_of_zeroing(llama) -> None:  # type: ignore[no-untyped-def]
    """Φ (Eq. 4) against |L(h_i = 0) − L| measured by zeroing each neuron of a layer."""
    batch = make_batch(
        llama.tokenizer, ["in the beginning god created", "the heaven and the earth"]
    )
    layer = 1
    scores, _ = batch_awareness(llama, batch, [layer])
    sites = hook_sites(llama)
    with torch.no_grad():
        base = float(target_loss(llama, batch))
        true = []
        for j in range(sites.d_mlp):
            neuron = NeuronSet.from_pairs([(layer, j)], n_layers=sites.n_layers, d_mlp=sites.d_mlp)
            with deactivate(llama, neuron):
                true.append(abs(float(target_loss(llama, batch)) - base))
    rho = spearman(scores[0], torch.tensor(true, dtype=torch.float64))
    assert rho > 0.9, rho


def test_taylor_awareness_accumulates_means_and_saves(tmp_path, llama) -> None:  # type: ignore[no-untyped-def]
    a = make_batch(llama.tokenizer, ["in the beginning", "and the earth"])
    b = make_batch(llama.tokenizer, ["au commencement", "la terre"])
    result = taylor_awareness(llama, {"en": [a, a], "fr": [b]}, [2, 0], progress=False)
    one_a, _ = batch_awareness(llama, a, [0, 2])
    one_b, _ = batch_awareness(llama, b, [0, 2])
    assert result.layers == [0, 2] and result.passes == [2, 1]
    assert torch.allclose(result.of("en").double(), one_a, atol=1e-6)
    assert torch.allclose(result.of("fr").double(), one_b, atol=1e-6)
    full = result.full()
    assert full.shape == (3, hook_sites(llama).d_mlp, 2) and float(full[1].abs().sum()) == 0.0
    again = Awareness.load(result.save(tmp_path / "aw"))
    assert torch.equal(again.scores, result.scores) and again.languages == ["en", "fr"]
    assert result.plot().data


def test_taylor_awareness_errors(llama) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(llama.tokenizer, ["abc"], prompt_chars=0)
    with pytest.raises(Exception, match="reduce"):  # beartype in tests, our error otherwise
        taylor_awareness(llama, {"en": [batch]}, [0], reduce="mean", progress=False)  # type: ignore[arg-type]
    no_targets = dict(batch, labels=torch.full_like(batch["labels"], -100))
    with pytest.raises(DetectorInputError, match="no target token"):
        taylor_awareness(llama, {"en": [no_targets]}, [0], progress=False)
    with pytest.raises(DetectorInputError, match="No batch for 'fr'"):
        taylor_awareness(llama, {"en": [batch], "fr": []}, [0], progress=False)


# ----- Eq. 5 -----------------------------------------------------------------------
def test_split_scores_hand_computed() -> None:
    # one layer, four neurons, two languages; population variances: .25, 0, 1, 0
    scores = torch.tensor([[[1.0, 2.0], [3.0, 3.0], [0.0, 2.0], [5.0, 5.0]]])
    general, owner = split_scores(scores, epsilon=0.5)
    # the two lowest variances (neurons 1 and 3; a tie at 0, stable) are general
    assert general.tolist() == [[False, True, False, True]]
    assert owner.tolist() == [[1, -1, 1, -1]]
    general, owner = split_scores(scores, epsilon=0.75)  # round(3) → neurons 1, 3, 0
    assert general.tolist() == [[True, True, False, True]]
    tie = torch.tensor([[[2.0, 2.0, 1.0], [0.0, 4.0, 4.0]]])  # arg-max ties → first language
    _, owner = split_scores(tie, epsilon=0.0)
    assert owner.tolist() == [[0, 1]]


def test_split_awareness_sets_and_pairs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    scores = torch.rand(2, 10, 3)
    awareness = Awareness(
        languages=["en", "fr", "zh"],
        layers=[1, 3],
        scores=scores,
        passes=[1, 1, 1],
        losses=[0.0, 0.0, 0.0],
        n_layers=4,
    )
    split = split_awareness(awareness, epsilon=0.9)
    assert split.general.per_layer() == [0, 9, 0, 9]
    specific_total = sum(len(split.specific[lang]) for lang in split.languages)
    assert specific_total == 2  # one per selected layer
    union = split.general | split.specific.union()
    assert len(union) == 20 and set(union.per_layer()) == {0, 10}
    assert not (split.general & split.specific.union())
    pair = split.pair("en", "fr")
    assert pair == split.general | split.specific["en"] | split.specific["fr"]
    assert split.pair_specific("en", "fr").issubset(pair)
    again = AwarenessSplit.load(split.save(tmp_path / "split"))
    assert again.general == split.general and again.specific == split.specific
    assert again.layers == [1, 3] and again.epsilon == 0.9
    means = split.layer_means()
    assert set(means) == {"general", "specific"} and len(means["general"]["en"]) == 2
    with pytest.raises(DetectorInputError, match="epsilon"):
        split_awareness(awareness, epsilon=1.5)


# ----- Fig. 12–13 --------------------------------------------------------------------
def test_nearest_centroid_and_pca_hand_computed() -> None:
    from lsn_mech.experiments import nearest_centroid_accuracy, principal_components

    points = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    assert nearest_centroid_accuracy(points, torch.tensor([0, 0, 1, 1])) == 1.0
    assert nearest_centroid_accuracy(points, torch.tensor([0, 1, 0, 1])) == 0.0
    projected, share = principal_components(points)
    assert share[0] == pytest.approx(100 / 101) and share[1] == pytest.approx(1 / 101)
    assert torch.allclose(projected[:, 0].abs(), torch.tensor([5.0, 5.0, 5.0, 5.0]))


def test_neuron_projection_on_tiny_model(tmp_path, llama) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.experiments import NeuronProjection, neuron_projection

    sites = hook_sites(llama)
    neurons = NeuronSet.from_pairs(
        [(1, j) for j in range(0, 40)], n_layers=sites.n_layers, d_mlp=sites.d_mlp
    )
    texts = {
        "en": ["in the beginning", "and the earth", "let there be"],
        "zh": ["起初神", "地是空", "神说要"],
    }
    result = neuron_projection(llama, texts, neurons, layer=1, name="general")
    assert len(result.points) == 6 and result.n_neurons == 40
    assert 0.0 <= result.separation <= 1.0 and result.plot().data
    again = NeuronProjection.load(result.save(tmp_path / "proj"))
    assert again.points == result.points and again.languages == result.languages
    with pytest.raises(Exception, match="no neuron in layer 0"):
        neuron_projection(llama, texts, neurons, layer=0)
