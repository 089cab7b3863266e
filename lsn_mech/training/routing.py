"""Conditional awareness routing (CAR) on a plain Hugging Face model (LANDeRMT §3.3).

In each selected layer only the language-general neurons ``G`` and the current pair's
language-specific neurons ``S`` take part::

    h_G = FFN_G(CAR · x)          (Eq. 7)
    h_S = FFN_S((1 − CAR) · x)    (Eq. 8)
    H   = h_G + h_S               (Eq. 9)

and every other neuron of the layer contributes nothing. ``CAR`` is the static Eq. 6
ratio from detection-time awareness (see `lsn_mech.training.car`), a constant, or a
learned per-token gate ``sigmoid(w·x_t + b)`` initialised to the static value.

    routing = ConditionalAwarenessRouting(layers, general, specific, phi, languages)
    with routing.install(hf_model):
        routing.set_pair("en", "fr")
        loss = hf_model(**batch).loss
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from lsn_mech._version import __version__
from lsn_mech.errors import (
    CorruptFileError,
    LsnMechError,
    MissingLanguageError,
    NeuronShapeMismatchError,
)
from lsn_mech.files import (
    atomic_save_safetensors,
    atomic_write_json,
    read_json,
    read_safetensors,
    require_fields,
    require_file,
)
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.peft.masks import check_neurons, layer_projections, model_type, resolve_hf_model
from lsn_mech.training.car import (
    CAR_FORMULAS,
    CarFormula,
    PairAwareness,
    RoutingError,
    static_car,
)
from lsn_mech.training.car import pair_awareness as pair_phi
from lsn_mech.training.routed_mlp import LayerRoute, RoutedForward, Style

SPEC_FORMAT = "lsn_mech.routing"
SPEC_FILE = "routing.json"
TENSOR_FILE = "routing.safetensors"
_SPEC_FIELDS: dict[str, type | tuple[type, ...]] = {
    "layers": list,
    "specific_languages": list,
    "has_awareness": bool,
    "pairs": list,
}
"""Fields of ``routing.json`` checked on load (a hand edit that drops one is refused)."""
_GATE_EPS = 1e-6  # a static CAR of exactly 0 or 1 has no finite logit
_NON_GATED: dict[str, Style] = {"gpt2": "gpt2", "bloom": "bloom"}


def _pair_key(src: str, tgt: str) -> str:
    return f"{src}->{tgt}"


class ConditionalAwarenessRouting(nn.Module):
    """CAR routing of the selected layers' MLPs, for one language pair at a time.

    Args:
        layers: the language-pair-relevant layers to route (other layers run as usual).
        general: the language-general neurons ``G`` (only the selected layers count).
        specific: language → its language-specific neurons; a pair's ``S`` is the union
            of its source's and target's sets (paper §3.2).
        awareness: detection-time awareness ``Φ[layer, d_mlp, lang]`` (e.g.
            ``Awareness.full()``); needed unless ``car_formula`` is a constant.
        languages: the language of each slice of ``awareness`` along its last axis.
        car_formula: ``"paper"`` (Eq. 6 as printed: the specific share scales the
            general branch), ``"swapped"`` (the general share scales the general
            branch), or a constant float in ``[0, 1]``.
        pair_awareness: how a neuron's awareness for a pair comes from its source and
            target language scores (``"mean"``, ``"max"`` or ``"min"``).
        learned: replace the static CAR by a per-token gate ``sigmoid(w·x_t + b)`` per
            pair and selected layer, initialised to ``w = 0, b = logit(static CAR)``.
        pairs: the ``(src, tgt)`` pairs that get learned gates (default: every ordered
            pair of distinct languages of ``specific``).
        d_model: hidden size, to create learned gates before `install` (otherwise they
            are created when installing).
    """

    def __init__(
        self,
        layers: Sequence[int],
        general: NeuronSet,
        specific: LanguageNeurons | Mapping[str, NeuronSet],
        awareness: Float[Tensor, "n_layers d_mlp lang"] | None = None,
        languages: Sequence[str] | None = None,
        *,
        car_formula: CarFormula | float = "paper",
        pair_awareness: PairAwareness = "mean",
        learned: bool = False,
        pairs: Sequence[tuple[str, str]] | None = None,
        d_model: int | None = None,
    ) -> None:
        super().__init__()
        self.general = general
        self.specific: dict[str, NeuronSet] = dict(specific)
        self.layers: tuple[int, ...] = self._check_layers(layers)
        self.car_formula = self._check_formula(car_formula)
        self.pair_awareness: PairAwareness = pair_awareness
        self.languages: list[str] = list(languages) if languages is not None else []
        self.awareness = self._check_awareness(awareness)
        self.learned = bool(learned)
        default_pairs = [(a, b) for a in self.specific for b in self.specific if a != b]
        self.pairs: list[tuple[str, str]] = [
            (str(a), str(b)) for a, b in (pairs if pairs is not None else default_pairs)
        ]
        for src, tgt in self.pairs:
            self._check_pair_languages(src, tgt)
        self.d_model = d_model
        self.gates = nn.ModuleDict()
        self._pair: tuple[str, str] | None = None
        self._routes: dict[int, LayerRoute] = {}
        self._installed: list[tuple[nn.Module, Any]] = []
        self._device = torch.device("cpu")
        if self.learned and d_model is not None:
            self._create_gates(d_model)

    # ------------------------------------------------------------------ validation

    def _check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        chosen = tuple(sorted({int(layer) for layer in layers}))
        if not chosen:
            raise RoutingError("Select at least one layer to route (e.g. from layer selection).")
        bad = [layer for layer in chosen if not 0 <= layer < self.general.n_layers]
        if bad:
            raise RoutingError(
                f"Layers {bad} are out of range: the model has {self.general.n_layers} layers."
            )
        for language, neurons in self.specific.items():
            if (neurons.n_layers, neurons.d_mlp) != (self.general.n_layers, self.general.d_mlp):
                raise NeuronShapeMismatchError(
                    f"The specific neurons of {language!r} have {neurons.n_layers} layers × "
                    f"{neurons.d_mlp}, the general neurons {self.general.n_layers} × "
                    f"{self.general.d_mlp}; detect both on the same model."
                )
        return chosen

    @staticmethod
    def _check_formula(formula: CarFormula | float) -> CarFormula | float:
        if isinstance(formula, str):
            if formula not in CAR_FORMULAS:
                raise RoutingError(
                    f"car_formula must be one of {CAR_FORMULAS} or a float in [0, 1], got "
                    f"{formula!r}."
                )
            return formula
        value = float(formula)
        if not 0.0 <= value <= 1.0:
            raise RoutingError(f"A constant CAR must lie in [0, 1], got {value}.")
        return value

    def _check_awareness(
        self, awareness: Float[Tensor, "n_layers d_mlp lang"] | None
    ) -> Tensor | None:
        if awareness is None:
            if isinstance(self.car_formula, str):
                raise RoutingError(
                    f"car_formula={self.car_formula!r} needs the awareness scores Φ "
                    f"[layer, d_mlp, lang] and their languages; pass awareness= and "
                    f"languages=, or a constant car_formula (a float in [0, 1])."
                )
            return None
        expected = (self.general.n_layers, self.general.d_mlp, len(self.languages))
        if tuple(awareness.shape) != expected:
            raise NeuronShapeMismatchError(
                f"Awareness has shape {tuple(awareness.shape)}, expected {expected} "
                f"([n_layers, d_mlp, len(languages)]); pass Awareness.full() and its "
                f"languages."
            )
        return awareness.detach().to("cpu", torch.float64)

    def _check_pair_languages(self, src: str, tgt: str) -> None:
        missing = [lang for lang in (src, tgt) if lang not in self.specific]
        if missing:
            raise MissingLanguageError(
                f"No specific neurons for {', '.join(map(repr, missing))}; languages with "
                f"specific neurons: {', '.join(self.specific)}."
            )
        if self.awareness is not None:
            absent = [lang for lang in (src, tgt) if lang not in self.languages]
            if absent:
                raise MissingLanguageError(
                    f"No awareness scores for {', '.join(map(repr, absent))}; scored "
                    f"languages: {', '.join(self.languages)}."
                )

    # ------------------------------------------------------------------ per-pair values

    def _selected(self) -> Bool[Tensor, "layer d_mlp"]:
        chosen = torch.zeros(self.general.n_layers, dtype=torch.bool)
        chosen[list(self.layers)] = True
        return chosen[:, None].expand(-1, self.general.d_mlp)

    def pair_masks(
        self, src: str, tgt: str
    ) -> tuple[Bool[Tensor, "layer d_mlp"], Bool[Tensor, "layer d_mlp"]]:
        """``(G, S)`` masks of the pair, restricted to the selected layers."""
        self._check_pair_languages(src, tgt)
        selected = self._selected()
        general = self.general.to_mask() & selected
        specific = (self.specific[src] | self.specific[tgt]).to_mask() & selected
        return general, specific

    def static_car(self, src: str, tgt: str) -> Float[Tensor, " selected"]:
        """The static CAR of each selected layer (in `layers` order) for a pair."""
        if not isinstance(self.car_formula, str):
            return torch.full((len(self.layers),), self.car_formula, dtype=torch.float64)
        general, specific = self.pair_masks(src, tgt)
        assert self.awareness is not None
        phi = pair_phi(self.awareness, self.languages, src, tgt, self.pair_awareness)
        return static_car(phi, general, specific, self.layers, self.car_formula)

    def _create_gates(self, d_model: int) -> None:
        self.d_model = int(d_model)
        for src, tgt in self.pairs:
            cars = self.static_car(src, tgt).clamp(_GATE_EPS, 1 - _GATE_EPS)
            per_layer = nn.ModuleDict()
            for layer, car in zip(self.layers, cars.tolist()):
                gate = nn.Linear(self.d_model, 1)
                with torch.no_grad():
                    gate.weight.zero_()
                    gate.bias.fill_(math.log(car / (1 - car)))
                per_layer[str(layer)] = gate
            self.gates[_pair_key(src, tgt)] = per_layer
        self.gates.to(self._device)

    # ------------------------------------------------------------------ pair selection

    @property
    def pair(self) -> tuple[str, str] | None:
        """The current ``(src, tgt)``, or ``None`` before `set_pair`."""
        return self._pair

    def set_pair(self, src: str, tgt: str) -> ConditionalAwarenessRouting:
        """Route every following forward pass for the pair ``src → tgt``."""
        if self.learned and (src, tgt) not in self.pairs:
            raise MissingLanguageError(
                f"No learned gates for {src}->{tgt}; pairs with gates: "
                f"{', '.join(_pair_key(*p) for p in self.pairs)}. Pass pairs= when building."
            )
        general, specific = self.pair_masks(src, tgt)
        cars = self.static_car(src, tgt).tolist()
        routes = {}
        for layer, car in zip(self.layers, cars):
            gate = None
            if self.learned and len(self.gates):
                gate = self.gates[_pair_key(src, tgt)][str(layer)]
            routes[layer] = LayerRoute(
                general[layer].to(self._device), specific[layer].to(self._device), car, gate
            )
        self._routes = routes
        self._pair = (src, tgt)
        return self

    def _route(self, layer: int) -> LayerRoute:
        if self._pair is None:
            raise RoutingError(
                "Routing is installed but no language pair is set; call "
                "routing.set_pair(src, tgt) before running the model."
            )
        route = self._routes[layer]
        if self.learned and route.gate is None:
            raise RoutingError("Learned gates are created by install(); install first.")
        return route

    # ------------------------------------------------------------------ install / remove

    @property
    def installed(self) -> bool:
        """True while the routing replaces MLP forwards of a model."""
        return bool(self._installed)

    def is_installed_on(self, hf_model: nn.Module) -> bool:
        """True if this routing replaces MLP forwards of ``hf_model``."""
        modules = {id(m) for m in resolve_hf_model(hf_model).modules()}
        return any(id(mlp) in modules for mlp, _ in self._installed)

    def install(self, hf_model: nn.Module) -> ConditionalAwarenessRouting:
        """Replace the selected layers' MLP forwards of a plain HF model; returns ``self``.

        Use as ``with routing.install(model): ...`` to remove it on exit.
        """
        if self._installed:
            raise RoutingError("This routing is already installed; call remove() first.")
        hf = resolve_hf_model(hf_model)
        check_neurons(hf, self.general)
        kind = model_type(hf)
        self._device = next(hf.parameters()).device
        if self.learned and not len(self.gates):
            self._create_gates(int(hf.config.get_text_config().hidden_size))
        self.gates.to(self._device)
        plans = []
        for layer in self.layers:
            projections = layer_projections(hf, layer)
            mlp = hf.get_submodule(projections["down"].name.rsplit(".", 1)[0])
            if isinstance(mlp.__dict__.get("forward"), RoutedForward):
                raise RoutingError(
                    f"Layer {layer}'s MLP is already routed by another routing; remove it first."
                )
            style: Style = "gated" if "gate" in projections else _NON_GATED.get(kind, "gated")
            if style == "gated" and "gate" not in projections:
                raise RoutingError(f"No routed MLP forward for model_type {kind!r}.")
            plans.append((mlp, RoutedForward(mlp, style, projections, self._router(layer))))
        for mlp, forward in plans:
            self._installed.append((mlp, mlp.__dict__.get("forward")))
            mlp.forward = forward
        if self._pair is not None:
            self.set_pair(*self._pair)  # masks onto the model's device
        return self

    def _router(self, layer: int) -> Any:
        return lambda: self._route(layer)

    def remove(self) -> None:
        """Restore the original MLP forwards (no-op when not installed)."""
        while self._installed:
            mlp, previous = self._installed.pop()
            if previous is None:
                del mlp.forward
            else:
                mlp.forward = previous

    def __enter__(self) -> ConditionalAwarenessRouting:
        if not self._installed:
            raise RoutingError("Use `with routing.install(model):` (nothing is installed).")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # ------------------------------------------------------------------ persistence

    def spec(self) -> dict[str, Any]:
        """The JSON-serialisable description (everything but tensors)."""
        return {
            "format": SPEC_FORMAT,
            "version": 1,
            "lsn_mech_version": __version__,
            "layers": list(self.layers),
            "n_layers": self.general.n_layers,
            "d_mlp": self.general.d_mlp,
            "site": self.general.site,
            "model_id": self.general.model_id,
            "specific_languages": list(self.specific),
            "languages": self.languages,
            "has_awareness": self.awareness is not None,
            "car_formula": self.car_formula,
            "pair_awareness": self.pair_awareness,
            "learned": self.learned,
            "pairs": [list(p) for p in self.pairs],
            "d_model": self.d_model,
            "pair": list(self._pair) if self._pair is not None else None,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``routing.json`` + ``routing.safetensors`` into the directory ``path``.

        Each file is written atomically, the tensors first; the spec records the tensors'
        shapes, so a save killed between the two files is refused on load, never mixed.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"general": self.general.to_mask()}
        for i, language in enumerate(self.specific):
            tensors[f"specific.{i}"] = self.specific[language].to_mask()
        if self.awareness is not None:
            tensors["awareness"] = self.awareness.contiguous()
        for key, value in self.state_dict().items():
            tensors[key] = value.detach().to("cpu").contiguous()
        atomic_save_safetensors(directory / TENSOR_FILE, tensors)
        shapes = {key: list(value.shape) for key, value in sorted(tensors.items())}
        atomic_write_json(directory / SPEC_FILE, {**self.spec(), "tensor_shapes": shapes})
        return directory

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConditionalAwarenessRouting:
        """Read a routing written by `save` (not installed; the saved pair is set).

        A missing, truncated, hand-edited or mismatched pair of files raises
        `CorruptFileError` naming the file.
        """
        directory = Path(path)
        spec_file = directory / SPEC_FILE
        if not spec_file.is_file():
            raise RoutingError(f"{directory} holds no {SPEC_FILE}; save it with routing.save().")
        fix = "Save the routing again with routing.save()."
        spec = read_json(spec_file, fix=fix)
        if spec.get("format") != SPEC_FORMAT:
            raise RoutingError(f"{spec_file} is not an lsn_mech routing spec. {fix}")
        require_fields(spec_file, spec, _SPEC_FIELDS, fix=fix)
        tensor_file = require_file(directory / TENSOR_FILE, fix=fix)
        _, tensors = read_safetensors(tensor_file, fix=fix)
        shapes = {key: list(value.shape) for key, value in sorted(tensors.items())}
        if "tensor_shapes" in spec and spec["tensor_shapes"] != shapes:
            raise CorruptFileError(
                f"{tensor_file} does not hold the tensors {spec_file} records (a save was "
                f"interrupted between the two files, or one was replaced). {fix}"
            )
        try:
            return cls._from_files(spec, tensors)
        except (LsnMechError, TypeError, KeyError, ValueError, IndexError, RuntimeError) as exc:
            raise CorruptFileError(
                f"{directory} does not hold a usable routing ({type(exc).__name__}: {exc}); "
                f"it was damaged or edited by hand. {fix}"
            ) from None

    @classmethod
    def _from_files(
        cls, spec: dict[str, Any], tensors: dict[str, Tensor]
    ) -> ConditionalAwarenessRouting:
        """The routing described by a spec and its tensors (read by `load`)."""
        labels = {"site": spec["site"], "model_id": spec["model_id"]}
        general = NeuronSet.from_mask(tensors["general"], **labels)
        specific = {
            language: NeuronSet.from_mask(tensors[f"specific.{i}"], **labels)
            for i, language in enumerate(spec["specific_languages"])
        }
        formula = spec["car_formula"]
        routing = cls(
            spec["layers"],
            general,
            specific,
            tensors.get("awareness") if spec["has_awareness"] else None,
            spec["languages"] or None,
            car_formula=formula if isinstance(formula, str) else float(formula),
            pair_awareness=spec["pair_awareness"],
            learned=spec["learned"],
            pairs=[(a, b) for a, b in spec["pairs"]],
            d_model=spec["d_model"],
        )
        gate_state = {k: v for k, v in tensors.items() if k.startswith("gates.")}
        if gate_state:
            routing.load_state_dict(gate_state)
        if spec["pair"] is not None:
            routing.set_pair(*spec["pair"])
        return routing

    def extra_repr(self) -> str:
        return (
            f"layers={list(self.layers)}, car_formula={self.car_formula!r}, "
            f"learned={self.learned}, pair={self._pair}"
        )
