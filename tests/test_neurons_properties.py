"""Property tests: NeuronSet algebra obeys set laws, masks and files round-trip exactly.

Python sets of ``(layer, index)`` pairs serve as the oracle. The package is imported
under jaxtyping's import hook with beartype, so annotations are checked at run time.
"""

from __future__ import annotations

import operator
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaxtyping import install_import_hook

from lsn_mech.provenance import Provenance

with install_import_hook("lsn_mech.neurons", "beartype.beartype"):
    from lsn_mech.neurons import (
        LanguageNeurons,
        NeuronSet,
        NotEnoughNeuronsError,
        from_lape_file,
        from_lape_object,
        load,
        save,
        to_lape_file,
        to_lape_object,
    )

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 4), st.integers(1, 12))
sites = st.sampled_from(["mlp_post", "mlp_pre"])
model_ids = st.one_of(st.none(), st.sampled_from(["gpt2-tiny", "gemma-3-270m"]))


# Strategies draw plain lists; NeuronSets are built inside the tests, because the
# beartype-checked constructor draws from the `random` module, which hypothesis forbids
# inside strategies.
Layers = list[list[int]]


def layer_lists(n_layers: int, d_mlp: int) -> st.SearchStrategy[Layers]:
    """Unsorted index lists with repeats, to exercise sorting and de-duplication."""
    per_layer = st.lists(st.integers(0, d_mlp - 1), max_size=2 * d_mlp)
    return st.lists(per_layer, min_size=n_layers, max_size=n_layers)


@st.composite
def same_shape(draw: st.DrawFn, k: int) -> tuple[int, list[Layers]]:
    n_layers, d_mlp = draw(shapes)
    return d_mlp, [draw(layer_lists(n_layers, d_mlp)) for _ in range(k)]


def build(raw: tuple[int, list[Layers]]) -> list[NeuronSet]:
    d_mlp, sets = raw
    return [NeuronSet(layers, d_mlp=d_mlp) for layers in sets]


@st.composite
def masks(draw: st.DrawFn) -> torch.Tensor:
    n_layers, d_mlp = draw(shapes)
    bits = draw(st.lists(st.booleans(), min_size=n_layers * d_mlp, max_size=n_layers * d_mlp))
    return torch.tensor(bits, dtype=torch.bool).reshape(n_layers, d_mlp)


OPS: dict[str, Callable] = {
    "or": operator.or_,
    "and": operator.and_,
    "sub": operator.sub,
    "xor": operator.xor,
}


# ---------------------------------------------------------------------- set algebra


@SETTINGS
@given(same_shape(2), st.sampled_from(sorted(OPS)))
def test_operators_match_python_sets(raw: tuple[int, list[Layers]], name: str) -> None:
    a, b = build(raw)
    op = OPS[name]
    result = op(a, b)
    expected = op(set(a), set(b))
    assert set(result) == expected
    assert list(result) == sorted(expected)
    assert len(result) == len(expected)
    counts = Counter(layer for layer, _ in expected)
    assert result.per_layer() == [counts[layer] for layer in range(a.n_layers)]


@SETTINGS
@given(same_shape(2))
def test_commutativity(raw: tuple[int, list[Layers]]) -> None:
    a, b = build(raw)
    assert a | b == b | a
    assert a & b == b & a
    assert a ^ b == b ^ a
    assert a.overlap(b) == b.overlap(a)


@SETTINGS
@given(same_shape(3))
def test_associativity_and_distributivity(raw: tuple[int, list[Layers]]) -> None:
    a, b, c = build(raw)
    assert (a | b) | c == a | (b | c)
    assert (a & b) & c == a & (b & c)
    assert (a ^ b) ^ c == a ^ (b ^ c)
    assert a & (b | c) == (a & b) | (a & c)
    assert a | (b & c) == (a | b) & (a | c)
    assert a - (b | c) == (a - b) & (a - c)


@SETTINGS
@given(same_shape(2))
def test_de_morgan_difference_xor(raw: tuple[int, list[Layers]]) -> None:
    a, b = build(raw)
    full = NeuronSet.full(a.n_layers, a.d_mlp)
    assert full - (a | b) == (full - a) & (full - b)
    assert full - (a & b) == (full - a) | (full - b)
    assert ~(a | b) == ~a & ~b
    assert ~~a == a
    assert a - b == a & ~b
    assert torch.equal((a - b).to_mask(), a.to_mask() & ~b.to_mask())
    assert a ^ b == (a | b) - (a & b)


@SETTINGS
@given(same_shape(2))
def test_idempotence_absorption_identities(raw: tuple[int, list[Layers]]) -> None:
    a, b = build(raw)
    empty = NeuronSet.empty(a.n_layers, a.d_mlp)
    full = NeuronSet.full(a.n_layers, a.d_mlp)
    assert a | a == a and a & a == a
    assert a | (a & b) == a
    assert a & (a | b) == a
    assert a | empty == a and a & full == a
    assert a & empty == empty and a | full == full
    assert len(a ^ a) == 0
    assert (a & b).issubset(a) and a.issubset(a | b)


@SETTINGS
@given(same_shape(2))
def test_overlap_counts(raw: tuple[int, list[Layers]]) -> None:
    a, b = build(raw)
    ov = a.overlap(b)
    assert ov.intersection == len(set(a) & set(b))
    assert ov.union == len(set(a) | set(b))
    if ov.union:
        assert ov.jaccard == ov.intersection / ov.union
    else:
        assert ov.jaccard == 0.0
    assert 0.0 <= ov.jaccard <= 1.0


# ---------------------------------------------------------------------- masks, iteration


@SETTINGS
@given(same_shape(1))
def test_set_to_mask_round_trip(raw: tuple[int, list[Layers]]) -> None:
    (s,) = build(raw)
    mask = s.to_mask()
    assert mask.shape == (s.n_layers, s.d_mlp) and mask.dtype == torch.bool
    assert NeuronSet.from_mask(mask) == s
    assert int(mask.sum()) == len(s)
    assert all(bool(mask[layer, index]) for layer, index in s)


@SETTINGS
@given(masks())
def test_mask_to_set_round_trip(mask: torch.Tensor) -> None:
    s = NeuronSet.from_mask(mask)
    assert torch.equal(s.to_mask(), mask)
    assert s.per_layer() == mask.sum(dim=1).tolist()
    assert torch.equal(s.complement().to_mask(), ~mask)


@SETTINGS
@given(same_shape(1))
def test_iteration_contains_hash(raw: tuple[int, list[Layers]]) -> None:
    (s,) = build(raw)
    pairs = list(s)
    assert pairs == sorted(set(pairs))
    assert all(p in s for p in pairs)
    absent = set(NeuronSet.full(s.n_layers, s.d_mlp)) - set(pairs)
    assert not any(p in s for p in absent)
    rebuilt = NeuronSet.from_pairs(reversed(pairs), n_layers=s.n_layers, d_mlp=s.d_mlp)
    assert rebuilt == s and hash(rebuilt) == hash(s)
    assert s.to_pairs().tolist() == [list(p) for p in pairs]


# ---------------------------------------------------------------------- random baselines


@SETTINGS
@given(same_shape(2), st.integers(0, 2**32 - 1))
def test_random_like(raw: tuple[int, list[Layers]], seed: int) -> None:
    s, exclude = build(raw)
    r = s.random_like(seed)
    assert r.per_layer() == s.per_layer()
    assert r == s.random_like(seed)
    feasible = all(
        n <= s.d_mlp - k for n, k in zip(s.per_layer(), exclude.per_layer(), strict=True)
    )
    if not feasible:
        with pytest.raises(NotEnoughNeuronsError):
            s.random_like(seed, exclude=exclude)
        return
    rx = s.random_like(seed, exclude=exclude)
    assert rx.per_layer() == s.per_layer()
    assert len(rx & exclude) == 0
    assert rx == s.random_like(seed, exclude=exclude)


# ---------------------------------------------------------------------- files


@st.composite
def language_neurons_raw(draw: st.DrawFn) -> dict:
    n_layers, d_mlp = draw(shapes)
    langs = draw(
        st.lists(
            st.one_of(st.sampled_from(["en", "fr", "zh-Hans", "a/b"]), st.text(min_size=1)),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    model_id = draw(model_ids)
    provenance = draw(
        st.one_of(
            st.none(),
            st.builds(
                Provenance,
                model_id=st.just(model_id),
                method=st.sampled_from(["lape", "random"]),
                parameters=st.dictionaries(
                    st.text(max_size=5), st.one_of(st.integers(), st.floats(0, 1), st.text())
                ),
            ),
        )
    )
    return {
        "d_mlp": d_mlp,
        "site": draw(sites),
        "model_id": model_id,
        "sets": {lang: draw(layer_lists(n_layers, d_mlp)) for lang in langs},
        "provenance": provenance,
    }


def build_language_neurons(raw: dict) -> LanguageNeurons:
    sets = {
        lang: NeuronSet(layers, d_mlp=raw["d_mlp"], site=raw["site"], model_id=raw["model_id"])
        for lang, layers in raw["sets"].items()
    }
    return LanguageNeurons(sets, provenance=raw["provenance"])


@SETTINGS
@given(same_shape(1), sites, model_ids)
def test_neuron_set_save_load_round_trip(
    raw: tuple[int, list[Layers]], site: str, model_id: str | None
) -> None:
    (s,) = build(raw)
    s = s.relabel(site=site, model_id=model_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = save(s, Path(tmp) / "set")
        back = load(path)
    assert back == s
    assert isinstance(back, NeuronSet)
    assert (back.site, back.model_id) == (site, model_id)


@SETTINGS
@given(language_neurons_raw())
def test_language_neurons_save_load_round_trip(raw: dict) -> None:
    ln = build_language_neurons(raw)
    with tempfile.TemporaryDirectory() as tmp:
        back = LanguageNeurons.load(ln.save(Path(tmp) / "neurons"))
    assert back == ln
    assert back.languages == ln.languages
    assert back.provenance == ln.provenance
    assert (back.site, back.model_id) == (ln.site, ln.model_id)


@SETTINGS
@given(language_neurons_raw())
def test_lape_round_trip(raw: dict) -> None:
    ln = build_language_neurons(raw)
    kwargs = {"d_mlp": ln.d_mlp, "site": ln.site, "model_id": ln.model_id}
    assert from_lape_object(to_lape_object(ln), ln.languages, **kwargs) == ln
    with tempfile.TemporaryDirectory() as tmp:
        path = to_lape_file(ln, Path(tmp) / "activation_mask")
        back = from_lape_file(path, list(ln.languages), **kwargs)
    assert back == ln
