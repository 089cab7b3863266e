"""Detectors: exact values on small hand-computed tensors, plus a pure-Python LAPE reference."""

from __future__ import annotations

import math

import pytest
import torch

from lsn_mech import detect
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.errors import (
    LsnMechError,
    MissingLanguageError,
    StatisticsMismatchError,
    UnsupportedArchitectureError,
)
from lsn_mech.models import build_tiny, byte_tokenizer, load_model
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats, collect_stats

INF = math.inf
LN2 = math.log(2)


def h(*ps: float) -> float:
    """Entropy (natural log) of an already normalised distribution."""
    return -sum(p * math.log(p) for p in ps if p > 0)


# P[layer][neuron][lang], languages en, fr, zh; zh never activates (0·log 0).
#   (0,0) en only            -> entropy 0
#   (0,1) en = fr = 0.6      -> ln 2, two languages; exactly at the 0.8 activation bar
#   (0,2) en = fr = 0.1      -> below the filter bar: +inf
#   (1,0) fr only            -> entropy 0, ties with (0,0)
#   (1,1) en 0.8, fr 0.2     -> H(0.8, 0.2)
#   (1,2) never active       -> normalises to zeros (entropy 0), filtered to +inf
P = [
    [[0.9, 0.0, 0.0], [0.6, 0.6, 0.0], [0.1, 0.1, 0.0]],
    [[0.0, 0.9, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.0]],
]
LANGS = ["en", "fr", "zh"]


def probs() -> torch.Tensor:
    return torch.tensor(P, dtype=torch.float64)


def members(neurons: LanguageNeurons) -> dict[str, list[tuple[int, int]]]:
    return {lang: sorted(s) for lang, s in neurons.items()}


# --------------------------------------------------------------------- pure-Python reference


def kth_bar(values: list[float], rate: float) -> float:
    ordered = sorted(values)
    k = min(max(round(len(ordered) * rate), 1), len(ordered))
    return ordered[k - 1]


def reference_lape(
    p: list[list[list[float]]],
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
) -> tuple[dict[tuple[int, int], float], list[list[tuple[int, int]]]]:
    """LAPE from the description in papers/README.md, in plain Python."""
    n_layers, d_mlp, n_langs = len(p), len(p[0]), len(p[0][0])
    flat = [v for layer in p for neuron in layer for v in neuron]
    filter_bar = kth_bar(flat, filter_rate)
    activation_bar = kth_bar(flat, activation_bar_ratio)
    entropy = {}
    for layer in range(n_layers):
        for j in range(d_mlp):
            row = p[layer][j]
            total = sum(row)
            normed = [x / total if total > 0 else 0.0 for x in row]
            value = -sum(x * math.log(x) for x in normed if x > 0)
            if not any(x > filter_bar for x in row):
                value = INF
            entropy[layer, j] = value
    order = sorted(entropy, key=lambda lj: (entropy[lj], lj[0] * d_mlp + lj[1]))
    chosen = order[: round(top_rate * n_layers * d_mlp)]
    out = [
        sorted(lj for lj in chosen if p[lj[0]][lj[1]][k] > activation_bar) for k in range(n_langs)
    ]
    return entropy, out


# --------------------------------------------------------------------- LAPE, by hand


def test_lape_scores_by_hand() -> None:
    expected = torch.tensor(
        [[0.0, LN2, LN2], [0.0, h(0.8, 0.2), 0.0]],  # (1,2): all zero -> 0 before filtering
        dtype=torch.float64,
    )
    torch.testing.assert_close(detect.lape_scores(probs()), expected, rtol=0, atol=1e-15)


def test_lape_bars_and_filter_by_hand() -> None:
    # 18 values sorted: ten 0s, 0.1, 0.1, 0.2, 0.6, 0.6, 0.8, 0.9, 0.9.
    details = detect.lape_details(
        probs(), languages=LANGS, top_rate=0.5, filter_rate=0.7, activation_bar_ratio=0.5
    )
    assert details.filter_bar == 0.2  # round(18 · 0.7) = 13th smallest
    assert details.activation_bar == 0.0  # round(18 · 0.5) = 9th smallest
    expected = torch.tensor([[0.0, LN2, INF], [0.0, h(0.8, 0.2), INF]], dtype=torch.float64)
    torch.testing.assert_close(details.entropy, expected, rtol=0, atol=1e-15)
    linear = detect.lape_details(probs(), languages=LANGS, filter_rate=0.7, quantile="linear")
    assert linear.filter_bar == pytest.approx(0.1 + (0.7 * 17 - 11) * 0.1, abs=1e-15)
    assert linear.filter_bar == float(torch.quantile(probs().flatten(), 0.7))
    assert linear.activation_bar == float(torch.quantile(probs().flatten(), 0.95))
    torch.testing.assert_close(linear.entropy, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("top_rate", "bar_ratio", "expected", "selected"),
    [
        # k = 1: (0,0) and (1,0) tie at entropy 0; the lower flat index wins.
        (1 / 6, 0.5, {"en": [(0, 0)], "fr": [], "zh": []}, [(0, 0)]),
        # k = 3: (1,1) belongs to en and fr (bar 0: both are > 0); zh stays empty.
        (
            0.5,
            0.5,
            {"en": [(0, 0), (1, 1)], "fr": [(1, 0), (1, 1)], "zh": []},
            [(0, 0), (1, 0), (1, 1)],
        ),
        # k = round(4.2) = 4: (0,1) joins both languages.
        (
            0.7,
            0.5,
            {"en": [(0, 0), (0, 1), (1, 1)], "fr": [(0, 1), (1, 0), (1, 1)], "zh": []},
            [(0, 0), (0, 1), (1, 0), (1, 1)],
        ),
        # k = 5, bar 0.6 (14th smallest): (0,1) has 0.6, not > 0.6, and the +inf neuron
        # (0,2) (before (1,2) by flat index) is selected: both belong to no language.
        (
            5 / 6,
            0.8,
            {"en": [(0, 0), (1, 1)], "fr": [(1, 0)], "zh": []},
            [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)],
        ),
    ],
)
def test_lape_selection_and_membership_by_hand(
    top_rate: float, bar_ratio: float, expected: dict, selected: list
) -> None:
    details = detect.lape_details(
        probs(), languages=LANGS, top_rate=top_rate, filter_rate=0.7, activation_bar_ratio=bar_ratio
    )
    assert members(details.neurons) == expected
    assert sorted(NeuronSet.from_mask(details.selected)) == selected
    _, reference = reference_lape(P, top_rate, 0.7, bar_ratio)
    assert [members(details.neurons)[x] for x in LANGS] == reference


def test_lape_matches_python_reference_on_random_grids() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(12):
        # Probabilities on a coarse grid (multiples of 1/8): many exact ties.
        grid = torch.randint(0, 9, (3, 20, 4), generator=generator).to(torch.float64) / 8
        grid[..., trial % 4] *= trial % 2  # sometimes a language that never fires
        params = [
            {},
            {"top_rate": 0.2, "filter_rate": 0.5, "activation_bar_ratio": 0.6},
            {"top_rate": 0.9, "filter_rate": 0.8, "activation_bar_ratio": 0.3},
        ][trial % 3]
        details = detect.lape_details(grid, languages=["a", "b", "c", "d"], **params)
        entropy, reference = reference_lape(grid.tolist(), **params)
        got = [sorted(details.neurons[x]) for x in "abcd"]
        assert got == reference, (trial, params)
        rows = [[entropy[i, j] for j in range(20)] for i in range(3)]
        expected = torch.tensor(rows, dtype=torch.float64)
        torch.testing.assert_close(details.entropy, expected, rtol=0, atol=1e-12)


def test_lape_defaults_and_provenance() -> None:
    generator = torch.Generator().manual_seed(1)
    grid = torch.rand(4, 50, 3, generator=generator, dtype=torch.float64)
    neurons = detect.lape(grid, languages=["en", "fr", "zh"], model_id="toy")
    _, reference = reference_lape(grid.tolist())
    assert [sorted(neurons[x]) for x in ("en", "fr", "zh")] == reference
    prov = neurons.provenance
    assert prov is not None and prov.method == "lape" and prov.model_id == "toy"
    params = prov.parameters
    assert params["top_rate"] == 0.01 and params["filter_rate"] == 0.95
    assert params["activation_bar_ratio"] == 0.95 and params["quantile"] == "kthvalue"
    assert params["site"] == "mlp_pre" and params["neuron_site"] == "mlp_post"
    assert params["languages"] == ["en", "fr", "zh"] and params["n_selected"] == 2
    assert params["filter_bar"] == kth_bar(grid.flatten().tolist(), 0.95)
    assert neurons.site == "mlp_post" and neurons.model_id == "toy"


def test_lape_is_invariant_to_language_order() -> None:
    a = detect.lape(probs(), languages=LANGS, top_rate=0.5, filter_rate=0.7)
    b = detect.lape(
        probs()[..., [2, 0, 1]], languages=["zh", "en", "fr"], top_rate=0.5, filter_rate=0.7
    )
    assert members(a) == members(b)


# --------------------------------------------------------------------- statistics input


def hand_stats() -> ActivationStats:
    counts = (probs() * 10).round().to(torch.int64)  # tokens = 10 per language
    post_sum = torch.arange(18, dtype=torch.float64).reshape(2, 3, 3) - 6
    state = {
        "mlp_pre/positive": counts,
        "mlp_pre/sum": torch.zeros(2, 3, 3, dtype=torch.float64),
        "mlp_pre/sum_sq": torch.zeros(2, 3, 3, dtype=torch.float64),
        "mlp_post/positive": counts,
        "mlp_post/sum": post_sum,
        "mlp_post/sum_sq": post_sum.square(),
    }
    return ActivationStats(
        languages=list(LANGS),
        n_layers=2,
        d_mlp=3,
        sites=("mlp_pre", "mlp_post"),
        tokens=torch.tensor([10, 10, 10]),
        state=state,
        accumulators=[{"name": "moments", "sites": ["mlp_pre", "mlp_post"]}],
        provenance=Provenance(model_id="toy", corpus="hand", corpus_hash="abc"),
    )


def test_statistics_and_tensor_inputs_agree_by_hand() -> None:
    stats = hand_stats()
    kwargs = {"top_rate": 0.7, "filter_rate": 0.7, "activation_bar_ratio": 0.5}
    from_stats = detect.lape(stats, **kwargs)
    from_tensor = detect.lape(probs(), languages=LANGS, model_id="toy", **kwargs)
    assert from_stats == from_tensor
    prov = from_stats.provenance
    assert prov is not None
    assert (prov.model_id, prov.corpus, prov.corpus_hash) == ("toy", "hand", "abc")
    assert prov.parameters["input"] == "ActivationStats"
    # a subset of languages, in another order
    sub = detect.lape(stats, languages=["fr", "en"], top_rate=0.5, filter_rate=0.5)
    assert sub.languages == ("fr", "en")
    assert sub == detect.lape(
        probs()[..., [1, 0]], languages=["fr", "en"], top_rate=0.5, filter_rate=0.5, model_id="toy"
    )
    assert detect.lap(stats, threshold=0.5) == detect.lap(
        probs(), languages=LANGS, threshold=0.5, model_id="toy"
    )
    means = stats.mean("mlp_post")
    assert detect.lave(stats, top_rate=0.5) == detect.lave(
        means, languages=LANGS, top_rate=0.5, model_id="toy"
    )


def test_collected_statistics_and_tensor_agree(llama, texts) -> None:  # type: ignore[no-untyped-def]
    windows = {lang: tokenize_windows(llama.tokenizer, t, window=24) for lang, t in texts.items()}
    stats = collect_stats(llama, windows, progress=False)
    langs = list(stats.languages)
    for top_rate in (0.01, 0.1):
        a = detect.lape(stats, top_rate=top_rate)
        b = detect.lape(
            stats.activation_probability("mlp_pre"),
            languages=langs,
            top_rate=top_rate,
            model_id=stats.provenance.model_id,
        )
        assert a == b and a.model_id == stats.provenance.model_id
        assert a.n_layers == 3 and a.d_mlp == 128 and a.site == "mlp_post"
        total = len(a.union())
        assert total <= round(top_rate * 3 * 128)
    assert detect.lave(stats) == detect.lave(
        stats.mean("mlp_post"), languages=langs, model_id=stats.provenance.model_id
    )
    # the reference code's statistic alone, collected with lsn_mech
    counts = collect_stats(
        llama,
        windows,
        sites=("mlp_pre",),
        accumulators=[detect.PositiveCountAccumulator(("mlp_pre",))],
        progress=False,
    )
    assert list(counts.state) == ["mlp_pre/positive"]
    assert torch.equal(counts.state["mlp_pre/positive"], stats.state["mlp_pre/positive"])
    assert detect.lape(counts, top_rate=0.1) == detect.lape(stats, top_rate=0.1)


# --------------------------------------------------------------------- LAP


def test_lap_by_hand() -> None:
    assert members(detect.lap(probs(), languages=LANGS, threshold=0.85)) == {
        "en": [(0, 0)],
        "fr": [(1, 0)],
        "zh": [],
    }
    assert members(detect.lap(probs(), languages=LANGS, threshold=0.5)) == {
        "en": [(0, 0), (0, 1), (1, 1)],
        "fr": [(0, 1), (1, 0)],
        "zh": [],
    }
    # strict: 0.6 is not > 0.6
    assert members(detect.lap(probs(), languages=LANGS, threshold=0.6)) == {
        "en": [(0, 0), (1, 1)],
        "fr": [(1, 0)],
        "zh": [],
    }
    # a cap of round(6 · 1/3) = 2 neurons by max probability: 0.9, 0.9 (flat order)
    capped = detect.lap(probs(), languages=LANGS, threshold=0.5, top_rate=1 / 3)
    assert members(capped) == {"en": [(0, 0)], "fr": [(1, 0)], "zh": []}
    capped = detect.lap(probs(), languages=LANGS, threshold=0.5, top_rate=0.5)
    assert members(capped) == {"en": [(0, 0), (1, 1)], "fr": [(1, 0)], "zh": []}
    prov = capped.provenance
    assert prov is not None and prov.method == "lap"
    assert prov.parameters["threshold"] == 0.5 and prov.parameters["top_rate"] == 0.5
    default = detect.lap(probs(), languages=LANGS)
    assert default.provenance is not None and default.provenance.parameters["threshold"] == 0.95
    assert all(len(s) == 0 for s in default.values())  # nothing exceeds 0.95


# --------------------------------------------------------------------- LAVE

MEANS = torch.tensor(
    [[[2.0, -1.0], [1.0, 1.0]], [[-0.5, 0.5], [0.0, 3.0]]], dtype=torch.float64
)  # [layer 2, neuron 2, lang 2]


@pytest.mark.parametrize(
    ("negative", "filter_bar", "entropy"),
    [
        # clamp: values 2 0 | 1 1 | 0 .5 | 0 3; sorted 0 0 0 .5 1 1 2 3; 4th = .5
        ("clamp", 0.5, [[0.0, LN2], [INF, 0.0]]),
        # abs: 2 1 | 1 1 | .5 .5 | 0 3; sorted 0 .5 .5 1 1 1 2 3; 4th = 1
        ("abs", 1.0, [[h(2 / 3, 1 / 3), INF], [INF, 0.0]]),
        # shift by +1: 3 0 | 2 2 | .5 1.5 | 1 4; sorted 0 .5 1 1.5 2 2 3 4; 4th = 1.5
        ("shift", 1.5, [[0.0, LN2], [INF, h(0.2, 0.8)]]),
    ],
)
def test_lave_by_hand(negative: str, filter_bar: float, entropy: list) -> None:
    details = detect.lave_details(
        MEANS,
        languages=["en", "fr"],
        negative=negative,  # type: ignore[arg-type]
        top_rate=0.5,
        filter_rate=0.5,
        activation_bar_ratio=0.5,
    )
    assert details.filter_bar == filter_bar == details.activation_bar
    torch.testing.assert_close(
        details.entropy, torch.tensor(entropy, dtype=torch.float64), rtol=0, atol=1e-15
    )
    # In all three: (0,0) is English, (1,1) French.
    assert members(details.neurons) == {"en": [(0, 0)], "fr": [(1, 1)]}
    prov = details.neurons.provenance
    assert prov is not None and prov.method == "lave"
    assert prov.parameters["negative"] == negative and prov.parameters["site"] == "mlp_post"


# --------------------------------------------------------------------- PV

D_MODEL = 2


def llama_state(n_layers: int = 2, d_mlp: int = 4) -> dict[str, torch.Tensor]:
    """gate rows [1, 0], up rows [0, 1], down columns [1, 0]: every norm is 1."""
    state = {}
    for layer in range(n_layers):
        prefix = f"model.layers.{layer}.mlp"
        state[f"{prefix}.gate_proj.weight"] = torch.tensor([[1.0, 0.0]] * d_mlp)
        state[f"{prefix}.up_proj.weight"] = torch.tensor([[0.0, 1.0]] * d_mlp)
        state[f"{prefix}.down_proj.weight"] = torch.tensor([[1.0] * d_mlp, [0.0] * d_mlp])
    state["model.layers.0.mlp.gate_proj.weight"][0] = torch.tensor([3.0, 4.0])  # norm 5
    return state


def pv_fixture() -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    base = llama_state()
    tuned = {}
    for lang in ("A", "B", "C"):
        state = {k: v.clone() for k, v in base.items()}
        if lang == "A":  # neuron (0,0) changes only under A: rate 0.5 / 5 = 0.1
            state["model.layers.0.mlp.gate_proj.weight"][0] += torch.tensor([0.5, 0.0])
        if lang in ("A", "B"):  # neuron (0,1) changes under A and B: rate 0.3
            state["model.layers.0.mlp.up_proj.weight"][1] += torch.tensor([0.0, 0.3])
        # neuron (1,2) changes equally under all three: rate 0.2 everywhere
        state["model.layers.1.mlp.down_proj.weight"][:, 2] += torch.tensor([0.0, 0.2])
        # the TransformerLens infix must be stripped
        tuned[lang] = {k.replace(".mlp.", ".mlp._original_component."): v for k, v in state.items()}
    return base, tuned


def test_pv_change_rates_by_hand() -> None:
    base, tuned = pv_fixture()
    rates = detect.pv_change_rates(base, tuned, model_type="llama", n_layers=2, d_mlp=4)
    expected = torch.zeros(2, 4, 3, dtype=torch.float64)
    expected[0, 0] = torch.tensor([0.1, 0.0, 0.0])
    expected[0, 1] = torch.tensor([0.3, 0.3, 0.0])
    expected[1, 2] = torch.tensor([0.2, 0.2, 0.2])
    torch.testing.assert_close(rates, expected, rtol=0, atol=1e-7)
    absolute = detect.pv_change_rates(base, tuned, model_type="llama", change="absolute")
    expected[0, 0, 0] = 0.5
    torch.testing.assert_close(absolute, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("direction", "top_rate", "expected"),
    [
        # low (paper): D = max − R. (0,1): R = (.3,.3,0) -> q = (0,0,1), H = 0 -> C.
        # (0,0): R = (.1,0,0) -> q = (0,.5,.5), H = ln 2 -> B and C (> 1/3).
        ("low", 1 / 8, {"A": [], "B": [], "C": [(0, 1)]}),
        ("low", 2 / 8, {"A": [], "B": [(0, 0)], "C": [(0, 0), (0, 1)]}),
        # high: D = R − min. (0,0): q = (1,0,0), H = 0 -> A; (0,1): q = (.5,.5,0) -> A, B.
        ("high", 1 / 8, {"A": [(0, 0)], "B": [], "C": []}),
        ("high", 2 / 8, {"A": [(0, 0), (0, 1)], "B": [(0, 1)], "C": []}),
        # Unchanged neurons and (1,2) (equal change everywhere) are +inf: never members.
        ("low", 1.0, {"A": [], "B": [(0, 0)], "C": [(0, 0), (0, 1)]}),
    ],
)
def test_pv_from_state_dicts_by_hand(direction: str, top_rate: float, expected: dict) -> None:
    base, tuned = pv_fixture()
    neurons = detect.pv_from_state_dicts(
        base,
        tuned,
        model_type="llama",
        n_layers=2,
        d_mlp=4,
        top_rate=top_rate,
        direction=direction,
        model_id="toy",  # type: ignore[arg-type]
    )
    assert members(neurons) == expected
    prov = neurons.provenance
    assert prov is not None and prov.method == "pv" and prov.model_id == "toy"
    params = prov.parameters
    assert params["direction"] == direction and params["top_rate"] == top_rate
    assert params["model_type"] == "llama" and params["change"] == "relative"
    assert params["share_threshold"] == pytest.approx(1 / 3)


def test_pv_details_and_two_languages() -> None:
    base, tuned = pv_fixture()
    rates = detect.pv_change_rates(base, tuned, model_type="llama")
    details = detect.pv_from_rates(rates, ["A", "B", "C"], top_rate=0.25)
    entropy = torch.full((2, 4), INF, dtype=torch.float64)
    entropy[0, 0], entropy[0, 1] = LN2, 0.0
    torch.testing.assert_close(details.entropy, entropy, rtol=0, atol=1e-12)
    # With languages A and B only, (0,0) changed only under A: it belongs to B.
    two = detect.pv_from_state_dicts(
        base, {k: tuned[k] for k in "AB"}, model_type="llama", top_rate=1 / 8
    )
    assert members(two) == {"A": [], "B": [(0, 0)]}


def test_pv_gpt2_conv1d_orientation_and_bias() -> None:
    prefix = "transformer.h.0.mlp"
    base = {
        f"{prefix}.c_fc.weight": torch.ones(D_MODEL, 3),  # [in, out]: neuron j = column j
        f"{prefix}.c_fc.bias": torch.zeros(3),
        f"{prefix}.c_proj.weight": torch.ones(3, D_MODEL),  # [in, out]: neuron j = row j
        f"{prefix}.c_proj.bias": torch.zeros(D_MODEL),
    }
    tuned = {k: v.clone() for k, v in base.items()}
    tuned[f"{prefix}.c_fc.weight"][:, 1] += torch.tensor([0.0, 2.0])
    tuned[f"{prefix}.c_fc.bias"][1] += 1.0
    tuned[f"{prefix}.c_proj.weight"][2] += torch.tensor([math.sqrt(2), 0.0])
    tuned[f"{prefix}.c_proj.bias"] += 5.0  # shared by all neurons: ignored
    other = {k: v.clone() for k, v in base.items()}
    rates = detect.pv_change_rates(base, {"x": tuned, "y": other}, model_type="gpt2")
    # neuron 1: ‖(0, 2, 1)‖ / ‖(1, 1, 0)‖ = √5 / √2; neuron 2: √2 / √2 = 1
    expected = torch.tensor([[[0.0, 0.0], [math.sqrt(5 / 2), 0.0], [1.0, 0.0]]])
    torch.testing.assert_close(rates, expected.double(), rtol=0, atol=1e-7)
    no_bias = detect.pv_change_rates(base, {"x": tuned}, model_type="gpt2", include_bias=False)
    assert float(no_bias[0, 1, 0]) == pytest.approx(math.sqrt(2))


def finetuned_tiny_llama(lines: list[str]) -> torch.nn.Module:
    model = build_tiny("tiny-llama").model.train()
    batch = byte_tokenizer()(lines, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return model.eval()


def test_pv_on_finetuned_tiny_models(texts) -> None:  # type: ignore[no-untyped-def]
    base = build_tiny("tiny-llama").model
    tuned = {lang: finetuned_tiny_llama(lines) for lang, lines in texts.items()}
    neurons = detect.pv(base, tuned, top_rate=0.05)
    assert neurons.languages == ("en", "fr", "zh")
    assert (neurons.n_layers, neurons.d_mlp, neurons.site) == (3, 128, "mlp_post")
    assert neurons.model_id == "tiny-llama"
    assert 0 < len(neurons.union()) <= round(0.05 * 3 * 128)
    prov = neurons.provenance
    assert prov is not None and prov.method == "pv"
    assert prov.parameters["model_type"] == "llama" and prov.parameters["top_rate"] == 0.05
    rates = detect.pv_change_rates(
        base.state_dict(), {k: m.state_dict() for k, m in tuned.items()}, model_type="llama"
    )
    assert rates.shape == (3, 128, 3) and bool((rates > 0).all())
    # A model booted by TransformerLens (keys with ._original_component) gives the same.
    tuned["zh"] = load_model(tuned["zh"], tokenizer=byte_tokenizer()).original_model
    assert detect.pv(base, tuned, top_rate=0.05) == neurons


# --------------------------------------------------------------------- random


def test_random_keeps_counts_and_is_deterministic() -> None:
    like = detect.lape(
        probs(),
        languages=LANGS,
        top_rate=0.7,
        filter_rate=0.7,
        activation_bar_ratio=0.5,
        model_id="toy",
    )
    a = detect.random(like, seed=3)
    b = detect.random(like, seed=3)
    assert isinstance(a, LanguageNeurons) and a == b
    assert a.per_layer() == like.per_layer() and a.model_id == "toy"
    prov = a.provenance
    assert prov is not None and prov.method == "random"
    assert prov.parameters["seed"] == 3 and prov.parameters["like_method"] == "lape"
    assert set(prov.parameters["language_seeds"]) == set(LANGS)
    big = NeuronSet([list(range(0, 100, 3)), list(range(50))], d_mlp=1000)
    many = LanguageNeurons({"en": big, "fr": big})
    draws = [detect.random(many, seed=s) for s in (0, 1)]
    assert draws[0]["en"] != draws[0]["fr"]  # per-language seeds differ
    assert draws[0] != draws[1]
    assert all(d.per_layer() == many.per_layer() for d in draws)
    # the same language gets the same draw whatever else is drawn with it
    assert detect.random(many.subset(["fr"]), seed=0)["fr"] == draws[0]["fr"]
    disjoint = detect.random(many, seed=0, exclude_own=True)
    assert not (disjoint["en"] & big)
    single = detect.random(big, seed=0)
    assert isinstance(single, NeuronSet) and single == big.random_like(0)


# --------------------------------------------------------------------- LAPE activation files


def write_lape_files(tmp_path, probabilities: torch.Tensor, tokens: list[int]):  # type: ignore[no-untyped-def]
    paths = {}
    for index, lang in enumerate(LANGS):
        over_zero = (probabilities[..., index] * tokens[index]).round().to(torch.long)
        path = tmp_path / f"activation.{lang}.train.toy"
        n = tokens[index] if index else torch.tensor(tokens[index])  # an int or a 0-d tensor
        torch.save({"n": n, "over_zero": over_zero}, path)
        paths[lang] = path
    return paths


def test_lape_activation_files_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = write_lape_files(tmp_path, probs(), [10, 20, 40])
    loaded, tokens = detect.load_lape_activations(paths)
    assert tokens.tolist() == [10, 20, 40]
    torch.testing.assert_close(loaded, probs(), rtol=0, atol=0)
    as_list, _ = detect.load_lape_activations(list(paths.values()), languages=LANGS)
    assert torch.equal(as_list, loaded)
    reordered, tokens2 = detect.load_lape_activations(paths, languages=["zh", "en"])
    assert torch.equal(reordered, loaded[..., [2, 0]]) and tokens2.tolist() == [40, 10]

    stats = detect.activation_stats_from_lape(paths, model_id="toy")
    assert stats.languages == LANGS and (stats.n_layers, stats.d_mlp) == (2, 3)
    torch.testing.assert_close(stats.activation_probability("mlp_pre"), probs(), rtol=0, atol=0)
    kwargs = {"top_rate": 0.7, "filter_rate": 0.7, "activation_bar_ratio": 0.5}
    neurons = detect.lape(stats, **kwargs)
    assert neurons == detect.lape(loaded, languages=LANGS, model_id="toy", **kwargs)
    assert neurons.model_id == "toy"
    assert detect.lap(stats, threshold=0.5) == detect.lap(
        loaded, languages=LANGS, threshold=0.5, model_id="toy"
    )
    with pytest.raises(StatisticsMismatchError):
        stats.mean("mlp_pre")
    saved = stats.save(tmp_path / "imported")
    assert ActivationStats.load(saved).equal(stats)
    # imported statistics merge with each other (counts and tokens add up) ...
    first = detect.activation_stats_from_lape(paths, languages=["en", "fr"], model_id="toy")
    second = detect.activation_stats_from_lape({"zh": paths["zh"]}, model_id="toy")
    assert (first + second).equal(stats)
    doubled = stats + stats
    assert doubled.tokens.tolist() == [20, 40, 80]
    torch.testing.assert_close(doubled.activation_probability("mlp_pre"), probs(), rtol=0, atol=0)
    # ... but not with statistics that carry sums
    with pytest.raises(StatisticsMismatchError):
        stats + hand_stats()


def test_lape_activation_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = write_lape_files(tmp_path, probs(), [10, 10, 10])
    with pytest.raises(LsnMechError, match="languages="):
        detect.load_lape_activations(list(paths.values()))
    with pytest.raises(LsnMechError, match="one code per"):
        detect.load_lape_activations(list(paths.values()), languages=["en"])
    with pytest.raises(FileNotFoundError):
        detect.load_lape_activations({"en": tmp_path / "missing"})
    bad = tmp_path / "bad"
    torch.save({"over_zero": torch.zeros(2, 3, dtype=torch.long)}, bad)
    with pytest.raises(LsnMechError, match="'n'"):
        detect.load_lape_activations({"en": bad})
    other = tmp_path / "other"
    torch.save({"n": 10, "over_zero": torch.zeros(3, 3, dtype=torch.long)}, other)
    with pytest.raises(StatisticsMismatchError, match="different models"):
        detect.load_lape_activations({"en": paths["en"], "xx": other})
    over = tmp_path / "over"
    torch.save({"n": 1, "over_zero": torch.full((2, 3), 2, dtype=torch.long)}, over)
    with pytest.raises(LsnMechError, match=r"\[0, n=1\]"):
        detect.load_lape_activations({"en": over})


# --------------------------------------------------------------------- errors and persistence


def test_errors_name_the_fix() -> None:
    stats = hand_stats()
    with pytest.raises(MissingLanguageError, match="collect_stats"):
        detect.lape(stats, languages=["en", "xx"])
    with pytest.raises(MissingLanguageError, match="languages="):
        detect.lape(probs())
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(LsnMechError, match=r"top_rate must lie in \(0, 1\]"):
            detect.lape(stats, top_rate=bad)
    with pytest.raises(ValueError, match="filter_rate"):
        detect.lape(stats, filter_rate=2.0)
    with pytest.raises(LsnMechError, match=r"\[0, 1\]"):
        detect.lape(probs() * 2, languages=LANGS)
    with pytest.raises(LsnMechError, match=r"\[0, 1\]"):
        detect.lap(probs() - 0.5, languages=LANGS)
    with pytest.raises(LsnMechError, match="at least 2"):
        detect.lape(stats, languages=["en"])
    with pytest.raises(LsnMechError, match="at least 2"):
        detect.lape_scores(probs()[..., :1])
    with pytest.raises(LsnMechError, match="one code per column"):
        detect.lape(probs(), languages=["en", "fr"])
    with pytest.raises(LsnMechError, match="duplicates"):
        detect.lape(probs(), languages=["en", "en", "fr"])
    with pytest.raises(LsnMechError, match="NaN"):
        detect.lave(MEANS * torch.nan, languages=["en", "fr"])
    base, tuned = pv_fixture()
    with pytest.raises(UnsupportedArchitectureError):
        detect.pv_from_state_dicts(base, tuned, model_type="t5")
    with pytest.raises(LsnMechError, match="model_type"):
        detect.pv_from_state_dicts(base, tuned, model_type="gpt2")
    with pytest.raises(LsnMechError, match="d_mlp=5"):
        detect.pv_from_state_dicts(base, tuned, model_type="llama", d_mlp=5)
    with pytest.raises(LsnMechError, match="at least 2"):
        detect.pv_from_state_dicts(base, {"A": tuned["A"]}, model_type="llama")


def test_results_save_and_load_with_provenance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, tuned = pv_fixture()
    results = [
        detect.lape(hand_stats(), top_rate=0.5, filter_rate=0.7),
        detect.lap(hand_stats(), threshold=0.5, top_rate=0.5),
        detect.lave(hand_stats(), top_rate=0.5),
        detect.pv_from_state_dicts(base, tuned, model_type="llama", top_rate=0.25),
    ]
    results.append(detect.random(results[0], seed=1))
    for index, neurons in enumerate(results):
        path = neurons.save(tmp_path / f"result{index}")
        loaded = LanguageNeurons.load(path)
        assert loaded == neurons
        assert loaded.provenance is not None and neurons.provenance is not None
        assert loaded.provenance.method == neurons.provenance.method
        assert loaded.provenance.parameters == neurons.provenance.parameters
