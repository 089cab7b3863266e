"""Hand-computed checks of NeuronSet, LanguageNeurons and their file formats.

The package is imported under jaxtyping's import hook with beartype, so every
annotated tensor shape and dtype is checked at run time by these tests.
"""

from __future__ import annotations

import copy
import csv
import json
import pickle
from pathlib import Path

import pytest
import torch
from jaxtyping import install_import_hook
from safetensors.torch import save_file

from lsn_mech.errors import (
    LsnMechError,
    MissingLanguageError,
    NeuronIndexError,
    NeuronShapeMismatchError,
)
from lsn_mech.provenance import Provenance

with install_import_hook("lsn_mech.neurons", "beartype.beartype"):
    from lsn_mech.neurons import (
        LanguageNeurons,
        NeuronFormatError,
        NeuronSet,
        NotEnoughNeuronsError,
        Overlap,
        OverlapMatrix,
        from_lape_file,
        from_lape_object,
        load,
        save,
        to_lape_file,
    )


@pytest.fixture
def a() -> NeuronSet:
    return NeuronSet.from_pairs([(0, 1), (0, 3), (2, 7)], n_layers=3, d_mlp=8)


@pytest.fixture
def b() -> NeuronSet:
    return NeuronSet.from_pairs([(0, 3), (1, 0)], n_layers=3, d_mlp=8)


@pytest.fixture
def neurons(a: NeuronSet, b: NeuronSet) -> LanguageNeurons:
    # en = a, fr = b, es = {(0,3), (2,7), (2,0)}
    es = NeuronSet([[3], [], [7, 0]], d_mlp=8)
    prov = Provenance(model_id="tiny", method="lape", parameters={"top_rate": 0.01})
    return LanguageNeurons({"en": a, "fr": b, "es": es}, provenance=prov)


# ---------------------------------------------------------------------- NeuronSet basics


def test_constructor_sorts_and_deduplicates() -> None:
    s = NeuronSet([[3, 1, 1], torch.tensor([], dtype=torch.int64), torch.tensor([7, 7])], d_mlp=8)
    assert s.indices(0).tolist() == [1, 3]
    assert s.indices(0).dtype == torch.int64
    assert s.indices(1).tolist() == []
    assert [t.tolist() for t in s.layers] == [[1, 3], [], [7]]
    assert s.per_layer() == [2, 0, 1]
    assert (s.n_layers, s.d_mlp, s.site, s.model_id) == (3, 8, "mlp_post", None)


def test_constructor_accepts_other_integer_dtypes_and_ranges() -> None:
    s = NeuronSet([torch.tensor([2, 0], dtype=torch.int32), range(3)], d_mlp=4)
    assert list(s) == [(0, 0), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_from_pairs_equals_constructor(a: NeuronSet) -> None:
    assert a == NeuronSet([[3, 1], [], [7]], d_mlp=8)
    assert hash(a) == hash(NeuronSet([[3, 1], [], [7]], d_mlp=8))


def test_set_algebra_exact(a: NeuronSet, b: NeuronSet) -> None:
    assert list(a | b) == [(0, 1), (0, 3), (1, 0), (2, 7)]
    assert list(a & b) == [(0, 3)]
    assert list(a - b) == [(0, 1), (2, 7)]
    assert list(b - a) == [(1, 0)]
    assert list(a ^ b) == [(0, 1), (1, 0), (2, 7)]
    assert (a | b).per_layer() == [2, 1, 1]
    assert (a & b).per_layer() == [1, 0, 0]
    assert a.per_layer() == [2, 0, 1]
    assert b.per_layer() == [1, 1, 0]


def test_overlap_exact(a: NeuronSet, b: NeuronSet) -> None:
    ov = a.overlap(b)
    assert ov == Overlap(intersection=1, union=4, jaccard=0.25)
    assert float(ov) == 0.25
    empty = NeuronSet.empty(3, 8)
    assert empty.overlap(empty) == Overlap(0, 0, 0.0)
    assert a.overlap(a).jaccard == 1.0


def test_mask_contents(a: NeuronSet) -> None:
    expected = torch.zeros(3, 8, dtype=torch.bool)
    expected[0, 1] = expected[0, 3] = expected[2, 7] = True
    mask = a.to_mask()
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    assert torch.equal(a.to_mask(device="cpu"), expected)
    assert NeuronSet.from_mask(expected) == a


def test_iteration_order_len_contains(a: NeuronSet) -> None:
    unordered = NeuronSet.from_pairs([(2, 7), (0, 3), (0, 1), (0, 3)], n_layers=3, d_mlp=8)
    assert list(unordered) == [(0, 1), (0, 3), (2, 7)]
    assert len(a) == 3
    assert (0, 3) in a
    assert (1, 0) not in a
    assert (2, 6) not in a
    assert (9, 0) not in a  # outside the model: simply absent
    assert (0, -1) not in a
    assert "x" not in a
    assert a.to_pairs().tolist() == [[0, 1], [0, 3], [2, 7]]
    assert a.fraction() == 3 / 24


def test_empty_full_complement(a: NeuronSet) -> None:
    full = NeuronSet.full(3, 8)
    assert len(full) == 24 and full.fraction() == 1.0
    assert len(NeuronSet.empty(3, 8)) == 0
    assert not NeuronSet.empty(3, 8)
    assert list(~a) == [p for p in full if p not in {(0, 1), (0, 3), (2, 7)}]
    assert a.complement() == full - a
    assert a.issubset(a | NeuronSet.from_pairs([(1, 1)], n_layers=3, d_mlp=8))
    assert not (a | NeuronSet.from_pairs([(1, 1)], n_layers=3, d_mlp=8)).issubset(a)


def test_restrict_layers(a: NeuronSet) -> None:
    r = a.restrict_layers([0])
    assert list(r) == [(0, 1), (0, 3)]
    assert r.n_layers == 3
    assert list(a.restrict_layers(range(1, 3))) == [(2, 7)]
    with pytest.raises(NeuronIndexError, match=r"Layer 3 is out of range \[0, 3\)"):
        a.restrict_layers([3])


def test_immutable(a: NeuronSet) -> None:
    with pytest.raises(AttributeError):
        a.d_mlp = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        a._layers = ()  # type: ignore[misc]
    got = a.indices(0)
    got[0] = 5
    assert a.indices(0).tolist() == [1, 3]
    layers = a.layers
    layers[2][0] = 0
    assert a.indices(2).tolist() == [7]


def test_pickle_and_copy(a: NeuronSet) -> None:
    labelled = a.relabel(site="mlp_pre", model_id="m")
    back = pickle.loads(pickle.dumps(labelled))
    assert back == labelled and back.site == "mlp_pre" and back.model_id == "m"
    assert copy.copy(a) is a and copy.deepcopy(a) is a


def test_repr_and_summary(a: NeuronSet) -> None:
    text = repr(a)
    assert "3 neurons" in text and "per_layer=[2, 0, 1]" in text
    summary = a.summary().splitlines()
    assert len(summary) == 2 + 3
    assert summary[2].split()[:3] == ["0", "2", "25.000"]


# ---------------------------------------------------------------------- model ids


def test_equality_is_strict_about_metadata(a: NeuronSet) -> None:
    assert a != a.relabel(model_id="m")
    assert a != a.relabel(site="mlp_pre")
    assert a != NeuronSet([[1, 3], [], [7]], d_mlp=9)
    assert a != NeuronSet([[1, 3], [], [7], []], d_mlp=8)
    assert a.relabel(model_id="m").relabel(model_id=None) == a
    assert a.relabel(model_id="m").relabel(site="mlp_pre").model_id == "m"
    assert a != "not a set"


def test_none_model_id_is_compatible_and_union_takes_the_other(a: NeuronSet, b: NeuronSet) -> None:
    m = a.relabel(model_id="m")
    assert (m | b).model_id == "m"
    assert (b | m).model_id == "m"
    assert (b & m).model_id == "m"
    assert (b - m).model_id == "m"
    assert m.overlap(b).intersection == 1
    assert a.is_compatible(m)
    assert not m.is_compatible(b.relabel(model_id="other"))


# ---------------------------------------------------------------------- errors


def test_index_out_of_range_names_layer_index_and_range() -> None:
    with pytest.raises(NeuronIndexError) as info:
        NeuronSet([[0], [2, 9]], d_mlp=8)
    message = str(info.value)
    assert "Layer 1" in message and "index 9" in message and "[0, 8)" in message
    assert "d_mlp" in message
    with pytest.raises(NeuronIndexError, match=r"index -1 is out of range \[0, 8\)"):
        NeuronSet([[-1]], d_mlp=8)
    assert issubclass(NeuronIndexError, LsnMechError)


def test_layer_out_of_range() -> None:
    with pytest.raises(NeuronIndexError, match=r"Layer 3 .* out of range \[0, 3\).*n_layers"):
        NeuronSet.from_pairs([(3, 0)], n_layers=3, d_mlp=8)
    s = NeuronSet.empty(3, 8)
    with pytest.raises(NeuronIndexError, match=r"Layer 5 is out of range \[0, 3\)"):
        s.indices(5)
    with pytest.raises(NeuronIndexError):
        s.indices(-1)


def test_bad_inputs_are_type_errors() -> None:
    with pytest.raises(TypeError, match="from_mask"):
        NeuronSet([torch.tensor([True, False])], d_mlp=2)
    with pytest.raises(TypeError):
        NeuronSet([torch.tensor([1.0])], d_mlp=2)
    with pytest.raises(TypeError):
        NeuronSet.from_mask(torch.zeros(2, 3))  # float, not bool
    with pytest.raises(NeuronShapeMismatchError, match="d_mlp"):
        NeuronSet.empty(2, -1)


def test_shape_mismatch_states_both_shapes_and_fix(a: NeuronSet) -> None:
    other = NeuronSet.empty(3, 16)
    for combine in (
        lambda: a | other,
        lambda: a & other,
        lambda: a - other,
        lambda: a ^ other,
        lambda: a.overlap(other),
        lambda: a.random_like(0, exclude=other),
    ):
        with pytest.raises(NeuronShapeMismatchError) as info:
            combine()
        message = str(info.value)
        assert "d_mlp 8" in message and "d_mlp 16" in message
        assert "same model" in message
    with pytest.raises(NeuronShapeMismatchError, match="same model"):
        a | NeuronSet.empty(4, 8)


def test_label_mismatch_suggests_relabel(a: NeuronSet) -> None:
    with pytest.raises(NeuronShapeMismatchError, match=r"relabel"):
        a.relabel(model_id="x") | a.relabel(model_id="y")
    with pytest.raises(NeuronShapeMismatchError, match=r"'mlp_pre'.*relabel"):
        a | a.relabel(site="mlp_pre")
    assert (a.relabel(model_id="x") | a.relabel(model_id="y").relabel(model_id="x")) == a.relabel(
        model_id="x"
    )


# ---------------------------------------------------------------------- random baselines


def test_random_like_counts_determinism_and_exclude() -> None:
    s = NeuronSet([range(0, 40), range(5), [], [999]], d_mlp=1000)
    r1, r2, r3 = s.random_like(1), s.random_like(1), s.random_like(2)
    assert r1.per_layer() == s.per_layer() == [40, 5, 0, 1]
    assert r1 == r2
    assert r1 != r3
    disjoint = s.random_like(7, exclude=s)
    assert disjoint.per_layer() == s.per_layer()
    assert len(disjoint & s) == 0


def test_random_like_not_enough_neurons() -> None:
    s = NeuronSet([[0, 1, 2]], d_mlp=4)
    with pytest.raises(NotEnoughNeuronsError, match=r"Layer 0 needs 3 .* only 1 of 4"):
        s.random_like(0, exclude=s)
    assert s.random_like(0, exclude=NeuronSet([[3]], d_mlp=4)) == s


# ---------------------------------------------------------------------- LanguageNeurons


def test_language_neurons_mapping(neurons: LanguageNeurons, a: NeuronSet) -> None:
    assert neurons.languages == ("en", "fr", "es")
    assert list(neurons) == ["en", "fr", "es"]
    assert len(neurons) == 3
    assert neurons["en"] == a
    assert "fr" in neurons and "de" not in neurons
    assert neurons.get("de") is None
    assert (neurons.n_layers, neurons.d_mlp, neurons.site) == (3, 8, "mlp_post")
    assert neurons.provenance is not None and neurons.provenance.method == "lape"
    assert neurons.per_layer() == {"en": [2, 0, 1], "fr": [1, 1, 0], "es": [1, 0, 2]}
    assert "3 languages" in repr(neurons) and "es=3" in repr(neurons)


def test_missing_language_lists_available(neurons: LanguageNeurons) -> None:
    with pytest.raises(MissingLanguageError) as info:
        neurons["de"]
    assert str(info.value).startswith("language 'de' not in these neurons; available: en, fr, es")
    assert isinstance(info.value, KeyError)
    with pytest.raises(MissingLanguageError):
        neurons.subset(["en", "xx"])
    with pytest.raises(MissingLanguageError):
        neurons.overlap("en", "xx")
    with pytest.raises(MissingLanguageError, match="at least one language"):
        LanguageNeurons({})


def test_language_neurons_shape_mismatch(a: NeuronSet) -> None:
    with pytest.raises(NeuronShapeMismatchError, match=r"'en' and 'fr'.*same model"):
        LanguageNeurons({"en": a, "fr": NeuronSet.empty(3, 9)})
    with pytest.raises(NeuronShapeMismatchError, match="relabel"):
        LanguageNeurons({"x": a, "en": a.relabel(model_id="m1"), "fr": a.relabel(model_id="m2")})
    mixed = LanguageNeurons({"en": a, "fr": a.relabel(model_id="m")})
    assert mixed.model_id == "m"


def test_language_neurons_analysis(neurons: LanguageNeurons) -> None:
    assert neurons.overlap("en", "fr") == Overlap(1, 4, 0.25)
    assert list(neurons.union()) == [(0, 1), (0, 3), (1, 0), (2, 0), (2, 7)]
    assert list(neurons.exclusive("en")) == [(0, 1)]
    assert list(neurons.exclusive("fr")) == [(1, 0)]
    assert list(neurons.exclusive("es")) == [(2, 0)]
    assert list(neurons.shared()) == [(0, 3), (2, 7)]
    assert list(neurons.shared(3)) == [(0, 3)]
    assert neurons.shared(1) == neurons.union()
    mask = neurons.to_mask()
    assert mask.shape == (3, 3, 8) and mask.dtype == torch.bool
    assert torch.equal(mask[1], neurons["fr"].to_mask())


def test_overlap_matrix_values(neurons: LanguageNeurons) -> None:
    jac = neurons.overlap_matrix()
    assert isinstance(jac, OverlapMatrix)
    assert jac.languages == ("en", "fr", "es")
    # |en|=3 |fr|=2 |es|=3; en∩fr=1, en∩es=2, fr∩es=1
    expected = torch.tensor(
        [[1.0, 1 / 4, 2 / 4], [1 / 4, 1.0, 1 / 4], [2 / 4, 1 / 4, 1.0]], dtype=torch.float64
    )
    assert torch.allclose(jac.values, expected)
    assert jac["en", "es"] == 0.5
    inter = neurons.overlap_matrix("intersection")
    assert inter.values.tolist() == [[3, 1, 2], [1, 2, 1], [2, 1, 3]]
    with pytest.raises(MissingLanguageError):
        jac["en", "de"]
    empty = LanguageNeurons({"x": NeuronSet.empty(1, 2), "y": NeuronSet.empty(1, 2)})
    assert empty.overlap_matrix().values.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_overlap_matrix_csv_str_plot(neurons: LanguageNeurons, tmp_path: Path) -> None:
    inter = neurons.overlap_matrix("intersection")
    path = inter.to_csv(tmp_path / "m.csv")
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["intersection", "en", "fr", "es"],
        ["en", "3", "1", "2"],
        ["fr", "1", "2", "1"],
        ["es", "2", "1", "3"],
    ]
    text = str(neurons.overlap_matrix())
    assert "0.250" in text and text.splitlines()[1].split() == ["en", "fr", "es"]
    fig = neurons.overlap_matrix().plot()
    import plotly.graph_objects as go

    assert isinstance(fig, go.Figure)
    assert list(fig.data[0].x) == ["en", "fr", "es"]
    assert fig.data[0].z[0][1] == 0.25


def test_map_subset_from_mask_eq(neurons: LanguageNeurons) -> None:
    low = neurons.map(lambda s: s.restrict_layers([0]))
    assert low.per_layer() == {"en": [2, 0, 0], "fr": [1, 0, 0], "es": [1, 0, 0]}
    assert low.provenance == neurons.provenance
    sub = neurons.subset(["es", "en"])
    assert sub.languages == ("es", "en") and sub["en"] == neurons["en"]
    rebuilt = LanguageNeurons.from_mask(neurons.to_mask(), neurons.languages)
    assert rebuilt == neurons  # provenance is not part of equality
    assert rebuilt.provenance is None
    assert neurons == dict(neurons)
    assert neurons != neurons.subset(["fr", "en", "es"])  # order matters
    with pytest.raises(NeuronShapeMismatchError):
        LanguageNeurons.from_mask(neurons.to_mask(), ["en", "fr"])


# ---------------------------------------------------------------------- our file format


def test_save_load_neuron_set(tmp_path: Path, a: NeuronSet) -> None:
    s = a.relabel(site="mlp_pre", model_id="tiny")
    path = save(s, tmp_path / "set")
    assert path == tmp_path / "set.safetensors" and path.is_file()
    for given in (tmp_path / "set", path, str(path)):
        back = load(given)
        assert back == s
        assert isinstance(back, NeuronSet) and back.model_id == "tiny" and back.site == "mlp_pre"
    assert NeuronSet.load(tmp_path / "set") == s
    assert s.save(tmp_path / "other.safetensors") == tmp_path / "other.safetensors"
    assert not list(tmp_path.glob(".*tmp"))  # temporary files are cleaned up


def test_save_load_empty_layers_and_sets(tmp_path: Path) -> None:
    for s in (NeuronSet.empty(4, 8), NeuronSet.full(2, 3), NeuronSet.empty(0, 5)):
        assert NeuronSet.load(s.save(tmp_path / "x")) == s


def test_save_load_language_neurons(tmp_path: Path, neurons: LanguageNeurons) -> None:
    labelled = LanguageNeurons(
        {"en": neurons["en"].relabel(model_id="tiny"), "fr": neurons["fr"]},
        provenance=neurons.provenance,
    )
    for obj in (neurons, labelled):
        path = obj.save(tmp_path / "ln")
        back = LanguageNeurons.load(path)
        assert back == obj
        assert back.languages == obj.languages
        assert back.provenance == obj.provenance
        assert [s.model_id for s in back.values()] == [s.model_id for s in obj.values()]
    no_prov = neurons.with_provenance(None)
    assert load(save(no_prov, tmp_path / "np")).provenance is None  # type: ignore[union-attr]


def test_load_errors(tmp_path: Path, neurons: LanguageNeurons, a: NeuronSet) -> None:
    with pytest.raises(FileNotFoundError, match="save"):
        load(tmp_path / "missing")
    neurons.save(tmp_path / "ln")
    with pytest.raises(NeuronFormatError, match=r"LanguageNeurons\.load"):
        NeuronSet.load(tmp_path / "ln")
    a.save(tmp_path / "a")
    with pytest.raises(NeuronFormatError, match=r"NeuronSet\.load"):
        LanguageNeurons.load(tmp_path / "a")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(NeuronFormatError, match="not a readable safetensors"):
        load(tmp_path / "junk.safetensors")
    save_file({"0": torch.zeros(1, dtype=torch.int64)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(NeuronFormatError, match="not written by"):
        load(tmp_path / "plain.safetensors")
    meta = {"format": "lsn_mech.neurons", "format_version": 99, "kind": "NeuronSet"}
    save_file({}, str(tmp_path / "new.safetensors"), metadata={"lsn_mech": json.dumps(meta)})
    with pytest.raises(NeuronFormatError, match="Upgrade lsn_mech"):
        load(tmp_path / "new.safetensors")


# ---------------------------------------------------------------------- LAPE format


def test_lape_file_structure_and_round_trip(tmp_path: Path, neurons: LanguageNeurons) -> None:
    path = to_lape_file(neurons, tmp_path / "activation_mask")
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, list) and len(raw) == 3
    assert all(isinstance(layers, list) and len(layers) == 3 for layers in raw)
    assert all(t.dtype == torch.int64 and t.ndim == 1 for layers in raw for t in layers)
    assert [t.tolist() for t in raw[2]] == [[3], [], [0, 7]]
    back = from_lape_file(path, ["en", "fr", "es"], d_mlp=8)
    assert back == neurons
    assert back.provenance is not None
    assert back.provenance.parameters == {"format": "lape", "source": str(path)}


def test_lape_object_like_reference_code() -> None:
    # as the reference script builds it: unsorted lists turned into LongTensors
    obj = [
        [torch.tensor([5, 1]).long(), torch.tensor([]).long()],
        [torch.tensor([]).long(), torch.tensor([2, 2, 0]).long()],
    ]
    ln = from_lape_object(obj, ["zh", "ja"], d_mlp=6, model_id="m")
    assert ln.per_layer() == {"zh": [2, 0], "ja": [0, 2]}
    assert list(ln["zh"]) == [(0, 1), (0, 5)]
    assert ln.model_id == "m" and ln.site == "mlp_post"


def test_lape_errors(tmp_path: Path) -> None:
    obj = [[torch.tensor([1])], [torch.tensor([2])]]
    with pytest.raises(NeuronFormatError, match=r"2 languages but 3 language codes"):
        from_lape_object(obj, ["en", "fr", "es"], d_mlp=4)
    with pytest.raises(NeuronIndexError, match=r"Language 'fr'.*index 2.*pass the d_mlp"):
        from_lape_object(obj, ["en", "fr"], d_mlp=2)
    with pytest.raises(NeuronFormatError, match="every layer"):
        from_lape_object([[torch.tensor([1])], []], ["en", "fr"], d_mlp=4)
    with pytest.raises(NeuronFormatError, match="Duplicate"):
        from_lape_object(obj, ["en", "en"], d_mlp=4)
    with pytest.raises(TypeError, match="sequence of language codes"):
        from_lape_object(obj, "en", d_mlp=4)
    torch.save({"not": "a list"}, tmp_path / "dict.pt")
    with pytest.raises(NeuronFormatError, match="list over languages"):
        from_lape_file(tmp_path / "dict.pt", ["en"], d_mlp=4)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(NeuronFormatError, match="LAPE file"):
        from_lape_file(tmp_path / "junk.pt", ["en"], d_mlp=4)
