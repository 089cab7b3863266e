"""An immutable set of MLP neurons of one model, addressed as ``(layer, index)`` pairs.

Every method that detects, intervenes on or trains "the French neurons" speaks in
terms of a `NeuronSet`. Keeping it immutable and shape-aware means a set can be
shared freely between hook contexts, cached, hashed and compared, and that combining
sets from two different models fails loudly instead of silently indexing garbage.

Storage: one sorted, duplicate-free ``int64`` CPU tensor per layer. Index lists are
small (a few thousand neurons), so CPU storage is the simplest choice; masks for a
device are built on demand with `NeuronSet.to_mask`.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int64
from torch import Tensor

from lsn_mech.errors import (
    NeuronIndexError,
    NeuronShapeMismatchError,
    NotEnoughNeuronsError,
    WrongInputError,
)
from lsn_mech.neurons import file_format, frames

DEFAULT_SITE = "mlp_post"


@dataclasses.dataclass(frozen=True)
class Overlap:
    """How much two neuron sets share: ``|A ∩ B|``, ``|A ∪ B|`` and their ratio.

    ``jaccard`` is 0.0 when both sets are empty (rather than NaN), so that averages
    over language pairs stay finite. ``float(overlap)`` is the Jaccard index.
    """

    intersection: int
    union: int
    jaccard: float

    @classmethod
    def of(cls, a: NeuronSet, b: NeuronSet) -> Overlap:
        """The overlap of two compatible sets (see `NeuronSet.overlap`)."""
        inter = len(a & b)
        union = len(a) + len(b) - inter
        return cls(intersection=inter, union=union, jaccard=inter / union if union else 0.0)

    def __float__(self) -> float:
        return self.jaccard


def _rebuild(
    layers: list[list[int]], d_mlp: int, site: str, model_id: str | None
) -> NeuronSet:  # pickle support (the class refuses attribute assignment)
    return NeuronSet(layers, d_mlp=d_mlp, site=site, model_id=model_id)


def _describe(n_layers: int, d_mlp: int, site: str, model_id: str | None) -> str:
    return f"{n_layers} layers × d_mlp {d_mlp}, site {site!r}, model_id {model_id!r}"


class NeuronSet:
    """An immutable set of MLP neurons: for each layer, a sorted tensor of neuron indices.

    Args:
        indices_per_layer: one entry per layer (its length is ``n_layers``), each an
            integer tensor or a sequence of ints, possibly empty, in any order and with
            repeats allowed (they are sorted and de-duplicated).
        d_mlp: number of neurons per layer; every index must lie in ``[0, d_mlp)``.
        site: hook site the neurons live at (``"mlp_post"``: input of the down
            projection, where deactivation happens; ``"mlp_pre"``: gate pre-activation).
        model_id: the model the neurons belong to, or ``None`` when unknown.

    Equality (``==``, ``hash``) is strict: same ``n_layers``, ``d_mlp``, ``site``,
    ``model_id`` and neurons. Combining sets (``| & - ^``, `overlap`) is looser:
    ``model_id=None`` is compatible with any model id, and the result takes the
    non-``None`` id. Sets whose shape, site or (non-``None``) model ids differ cannot be
    combined and raise `lsn_mech.errors.NeuronShapeMismatchError`.

    Example:
        >>> a = NeuronSet([[1, 3], [], [7]], d_mlp=8)
        >>> b = NeuronSet.from_pairs([(0, 3), (1, 0)], n_layers=3, d_mlp=8)
        >>> sorted(a & b)
        [(0, 3)]
        >>> (a | b).per_layer()
        [2, 1, 1]
    """

    __slots__ = ("_d_mlp", "_flat", "_hash", "_layers", "_model_id", "_site")

    _layers: tuple[Tensor, ...]
    _d_mlp: int
    _site: str
    _model_id: str | None
    _flat: Tensor | None
    _hash: int | None

    def __init__(
        self,
        indices_per_layer: Sequence[Tensor | Sequence[int]],
        *,
        d_mlp: int,
        site: str = DEFAULT_SITE,
        model_id: str | None = None,
    ) -> None:
        if isinstance(indices_per_layer, (str, bytes)) or not hasattr(indices_per_layer, "__len__"):
            raise WrongInputError(
                f"NeuronSet needs one list of neuron indices per layer, e.g. "
                f"NeuronSet([[3, 5], [], [0]], d_mlp=...), got {type(indices_per_layer).__name__}."
            )
        _check_shape(len(indices_per_layer), d_mlp, site)
        layers = tuple(
            _clean_layer(layer, values, d_mlp) for layer, values in enumerate(indices_per_layer)
        )
        self._init(layers, d_mlp, site, model_id)

    # ------------------------------------------------------------------ construction

    def _init(
        self, layers: tuple[Tensor, ...], d_mlp: int, site: str, model_id: str | None
    ) -> None:
        object.__setattr__(self, "_layers", layers)
        object.__setattr__(self, "_d_mlp", int(d_mlp))
        object.__setattr__(self, "_site", site)
        object.__setattr__(self, "_model_id", model_id)
        object.__setattr__(self, "_flat", None)
        object.__setattr__(self, "_hash", None)

    @classmethod
    def _trusted(
        cls, layers: tuple[Tensor, ...], d_mlp: int, site: str, model_id: str | None
    ) -> NeuronSet:
        """Build without validation from tensors already sorted, unique, int64, on CPU."""
        obj = cls.__new__(cls)
        obj._init(layers, d_mlp, site, model_id)
        return obj

    @classmethod
    def empty(
        cls, n_layers: int, d_mlp: int, *, site: str = DEFAULT_SITE, model_id: str | None = None
    ) -> NeuronSet:
        """A set with no neurons (the neutral element of ``|``)."""
        _check_shape(n_layers, d_mlp, site)
        none = torch.zeros(0, dtype=torch.int64)
        return cls._trusted((none,) * n_layers, d_mlp, site, model_id)

    @classmethod
    def full(
        cls, n_layers: int, d_mlp: int, *, site: str = DEFAULT_SITE, model_id: str | None = None
    ) -> NeuronSet:
        """Every neuron of the model (the neutral element of ``&``; base of complements)."""
        _check_shape(n_layers, d_mlp, site)
        every = torch.arange(d_mlp, dtype=torch.int64)
        return cls._trusted((every,) * n_layers, d_mlp, site, model_id)

    @classmethod
    def from_mask(
        cls,
        mask: Bool[Tensor, "layer d_mlp"],
        *,
        site: str = DEFAULT_SITE,
        model_id: str | None = None,
    ) -> NeuronSet:
        """The neurons where a boolean ``[layer, d_mlp]`` mask is true (on any device)."""
        if mask.dtype != torch.bool or mask.ndim != 2:
            raise WrongInputError(
                f"NeuronSet.from_mask needs a 2-D bool mask [layer, d_mlp], got dtype "
                f"{mask.dtype} with shape {tuple(mask.shape)}; threshold scores first, "
                f"e.g. `scores > 0`."
            )
        n_layers, d_mlp = mask.shape
        _check_shape(n_layers, d_mlp, site)
        mask = mask.detach().to("cpu")
        pairs = mask.nonzero()  # row-major, hence sorted by (layer, index)
        counts = mask.sum(dim=1).tolist()
        layers = tuple(t.clone() for t in torch.split(pairs[:, 1], counts))
        return cls._trusted(layers, d_mlp, site, model_id)

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[tuple[int, int]],
        *,
        n_layers: int,
        d_mlp: int,
        site: str = DEFAULT_SITE,
        model_id: str | None = None,
    ) -> NeuronSet:
        """A set from ``(layer, index)`` pairs, e.g. ``[(0, 3), (17, 2047)]``."""
        _check_shape(n_layers, d_mlp, site)
        per_layer: list[list[int]] = [[] for _ in range(n_layers)]
        for layer, index in pairs:
            layer = operator.index(layer)
            if not 0 <= layer < n_layers:
                raise NeuronIndexError(
                    f"Layer {layer} (with neuron {index}) is out of range [0, {n_layers}): the "
                    f"model has {n_layers} layers. Pass the n_layers of the model the neurons "
                    f"come from."
                )
            per_layer[layer].append(operator.index(index))
        return cls(per_layer, d_mlp=d_mlp, site=site, model_id=model_id)

    # ------------------------------------------------------------------ shape and access

    @property
    def n_layers(self) -> int:
        """Number of layers of the model (including layers with no neurons in the set)."""
        return len(self._layers)

    @property
    def d_mlp(self) -> int:
        """Neurons per layer of the model."""
        return self._d_mlp

    @property
    def site(self) -> str:
        """Hook site the neurons live at (``"mlp_post"`` or ``"mlp_pre"``)."""
        return self._site

    @property
    def model_id(self) -> str | None:
        """Model the neurons belong to, or ``None`` when unknown."""
        return self._model_id

    @property
    def layers(self) -> tuple[Int64[Tensor, " _n"], ...]:
        """Per-layer sorted index tensors (copies: the set itself cannot be changed)."""
        return tuple(t.clone() for t in self._layers)

    def indices(self, layer: int) -> Int64[Tensor, " n"]:
        """Sorted neuron indices of one layer (a copy)."""
        self._check_layer(layer)
        return self._layers[layer].clone()

    def per_layer(self) -> list[int]:
        """How many neurons the set holds in each layer, bottom to top."""
        return [int(t.numel()) for t in self._layers]

    def fraction(self) -> float:
        """Share of all the model's MLP neurons that are in the set."""
        total = self.n_layers * self.d_mlp
        return len(self) / total if total else 0.0

    def to_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, "layer d_mlp"]:
        """Boolean ``[layer, d_mlp]`` mask, true at the set's neurons, on ``device``."""
        mask = torch.zeros(self.n_layers * self.d_mlp, dtype=torch.bool, device=device)
        mask[self._flat_indices().to(mask.device)] = True
        return mask.view(self.n_layers, self.d_mlp)

    def to_pairs(self) -> Int64[Tensor, "n 2"]:
        """``[n, 2]`` tensor of ``(layer, index)`` rows in (layer, index) order."""
        flat = self._flat_indices()
        return torch.stack([flat // self.d_mlp, flat % self.d_mlp], dim=1)

    def _flat_indices(self) -> Tensor:
        """Sorted ``layer * d_mlp + index`` of every neuron (cached)."""
        if self._flat is None:
            parts = [t + layer * self._d_mlp for layer, t in enumerate(self._layers)]
            flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
            object.__setattr__(self, "_flat", flat)
        assert self._flat is not None
        return self._flat

    # ------------------------------------------------------------------ container protocol

    def __len__(self) -> int:
        return sum(int(t.numel()) for t in self._layers)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for layer, t in enumerate(self._layers):
            for index in t.tolist():
                yield layer, index

    def __contains__(self, item: object) -> bool:
        """``(layer, index) in s``; pairs outside the model's shape are simply absent."""
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        try:
            layer, index = operator.index(item[0]), operator.index(item[1])
        except TypeError:
            return False
        if not (0 <= layer < self.n_layers and 0 <= index < self.d_mlp):
            return False
        t = self._layers[layer]
        pos = int(torch.searchsorted(t, torch.tensor(index, dtype=torch.int64)))
        return pos < t.numel() and int(t[pos]) == index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronSet):
            return NotImplemented
        return (
            self._meta() == other._meta()
            and self.n_layers == other.n_layers
            and torch.equal(self._flat_indices(), other._flat_indices())
        )

    def __hash__(self) -> int:
        if self._hash is None:
            digest = hash((self._meta(), self.n_layers, self._flat_indices().numpy().tobytes()))
            object.__setattr__(self, "_hash", digest)
        assert self._hash is not None
        return self._hash

    def _meta(self) -> tuple[int, str, str | None]:
        return (self._d_mlp, self._site, self._model_id)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("NeuronSet is immutable; use its methods to build a new set.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("NeuronSet is immutable.")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        layers = [t.tolist() for t in self._layers]
        return (_rebuild, (layers, self._d_mlp, self._site, self._model_id))

    def __copy__(self) -> NeuronSet:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> NeuronSet:
        return self

    def __repr__(self) -> str:
        counts = self.per_layer()
        shown = str(counts) if len(counts) <= 32 else f"{counts[:32]}"[:-1] + ", ...]"
        return (
            f"NeuronSet({len(self)} neurons, {self.n_layers} layers × {self.d_mlp}, "
            f"site={self.site!r}, model_id={self.model_id!r}, per_layer={shown})"
        )

    def summary(self) -> str:
        """A small per-layer table: count, share of the layer, and a text bar."""
        counts = self.per_layer()
        peak = max(counts, default=0) or 1
        lines = [
            f"NeuronSet: {len(self)} neurons ({100 * self.fraction():.3f} % of "
            f"{self.n_layers} × {self.d_mlp}), site {self.site!r}, model {self.model_id!r}",
            "layer  count  % of layer",
        ]
        for layer, count in enumerate(counts):
            share = 100 * count / self.d_mlp if self.d_mlp else 0.0
            bar = "█" * round(20 * count / peak)
            lines.append(f"{layer:>5}  {count:>5}  {share:>9.3f}  {bar}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ set algebra

    def is_compatible(self, other: NeuronSet) -> bool:
        """True if the two sets can be combined (same shape and site, model ids agree)."""
        return (
            self.n_layers == other.n_layers
            and self.d_mlp == other.d_mlp
            and self.site == other.site
            and (self.model_id is None or other.model_id is None or self.model_id == other.model_id)
        )

    def _check_compatible(self, other: NeuronSet, what: str) -> None:
        if not isinstance(other, NeuronSet):
            languages = list(getattr(other, "languages", ()))  # a LanguageNeurons
            hint = f"; pick one language, e.g. neurons[{languages[0]!r}]" if languages else ""
            raise WrongInputError(
                f"cannot {what} a NeuronSet and a {type(other).__name__}{hint}. "
                "Both operands must be NeuronSets: pass a NeuronSet."
            )
        if self.is_compatible(other):
            return
        left = _describe(self.n_layers, self.d_mlp, self.site, self.model_id)
        right = _describe(other.n_layers, other.d_mlp, other.site, other.model_id)
        if self.n_layers == other.n_layers and self.d_mlp == other.d_mlp:
            fix = (
                "Only the labels differ: if both sets really describe the same neurons, "
                "relabel one with `.relabel(site=..., model_id=...)`."
            )
        else:
            fix = (
                "Detect both sets on the same model (same number of layers and d_mlp); "
                "neurons of different models cannot be combined."
            )
        raise NeuronShapeMismatchError(f"Cannot {what} neuron sets: {left} vs {right}. {fix}")

    def _combine(
        self, other: NeuronSet, op: Literal["or", "and", "sub", "xor"], what: str
    ) -> NeuronSet:
        self._check_compatible(other, what)
        a, b = self.to_mask(), other.to_mask()
        if op == "or":
            mask = a | b
        elif op == "and":
            mask = a & b
        elif op == "sub":
            mask = a & ~b
        else:
            mask = a ^ b
        model_id = self.model_id if self.model_id is not None else other.model_id
        return NeuronSet.from_mask(mask, site=self.site, model_id=model_id)

    def __or__(self, other: NeuronSet) -> NeuronSet:
        """Union: neurons in either set."""
        return self._combine(other, "or", "take the union of")

    def __and__(self, other: NeuronSet) -> NeuronSet:
        """Intersection: neurons in both sets."""
        return self._combine(other, "and", "intersect")

    def __sub__(self, other: NeuronSet) -> NeuronSet:
        """Difference: neurons in this set but not in ``other``."""
        return self._combine(other, "sub", "take the difference of")

    def __xor__(self, other: NeuronSet) -> NeuronSet:
        """Symmetric difference: neurons in exactly one of the two sets."""
        return self._combine(other, "xor", "take the symmetric difference of")

    def _reflected(self, other: object) -> NeuronSet:
        """``other | self`` where ``other`` is not a set (e.g. a LanguageNeurons): refuse it."""
        self._check_compatible(other, "combine")  # type: ignore[arg-type]  # always raises
        raise AssertionError  # pragma: no cover - unreachable

    __ror__ = __rand__ = __rsub__ = __rxor__ = _reflected

    def complement(self) -> NeuronSet:
        """Every neuron of the model that is not in the set (also ``~s``)."""
        return NeuronSet.from_mask(~self.to_mask(), site=self.site, model_id=self.model_id)

    def __invert__(self) -> NeuronSet:
        return self.complement()

    def overlap(self, other: NeuronSet) -> Overlap:
        """Intersection size, union size and Jaccard index with another compatible set."""
        self._check_compatible(other, "overlap")
        return Overlap.of(self, other)

    def issubset(self, other: NeuronSet) -> bool:
        """True if every neuron of this set is also in ``other``."""
        return len(self - other) == 0

    # ------------------------------------------------------------------ derived sets

    def random_like(self, seed: int, *, exclude: NeuronSet | None = None) -> NeuronSet:
        """A random set with exactly the same count in every layer: the usual baseline.

        Neurons are drawn uniformly without replacement within each layer, from the
        neurons not in ``exclude`` (pass ``exclude=s`` to get a baseline disjoint from
        ``s``). Deterministic for a given ``seed`` (a seeded ``torch.Generator``).

        Raises:
            NotEnoughNeuronsError: a layer has fewer neurons left than it must draw.
        """
        excluded = None
        if exclude is not None:
            self._check_compatible(exclude, "exclude")
            excluded = exclude.to_mask()
        generator = torch.Generator().manual_seed(seed)
        layers = []
        for layer, count in enumerate(self.per_layer()):
            if excluded is None:
                candidates = torch.arange(self.d_mlp, dtype=torch.int64)
            else:
                candidates = (~excluded[layer]).nonzero().flatten()
            if count > candidates.numel():
                raise NotEnoughNeuronsError(
                    f"Layer {layer} needs {count} random neurons but only "
                    f"{candidates.numel()} of {self.d_mlp} remain after `exclude`; "
                    f"exclude fewer neurons or draw a smaller set."
                )
            pick = torch.randperm(candidates.numel(), generator=generator)[:count]
            layers.append(candidates[pick].sort().values)
        return NeuronSet._trusted(tuple(layers), self.d_mlp, self.site, self.model_id)

    def restrict_layers(self, layers: Iterable[int]) -> NeuronSet:
        """Keep only the neurons of the given layers (the shape stays the same)."""
        keep = set()
        for layer in layers:
            self._check_layer(layer)
            keep.add(layer)
        none = torch.zeros(0, dtype=torch.int64)
        kept = tuple(t if i in keep else none for i, t in enumerate(self._layers))
        return NeuronSet._trusted(kept, self.d_mlp, self.site, self.model_id)

    def relabel(
        self, *, site: str | None = None, model_id: str | EllipsisType | None = ...
    ) -> NeuronSet:
        """The same neurons under another ``site`` and/or ``model_id``.

        Arguments left out keep their value; ``model_id=None`` clears the model id.

        Use it when two sets really describe the same neurons but were recorded under
        different labels (e.g. an imported file has no model id).
        """
        new_site = self.site if site is None else site
        _check_shape(self.n_layers, self.d_mlp, new_site)
        new_model = self.model_id if model_id is ... else model_id
        return NeuronSet._trusted(self._layers, self.d_mlp, new_site, new_model)

    def to(self, device: torch.device | str) -> NeuronSet:
        """Returns ``self``: indices always live on the CPU; use ``to_mask(device)``."""
        del device
        return self

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``<path>.safetensors``; see `lsn_mech.neurons.save`."""
        meta = {"kind": "NeuronSet", **self._file_meta()}
        return file_format.write(file_format.layer_tensors("", self.layers), meta, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NeuronSet:
        """Read a set written by `save`; see `lsn_mech.neurons.load`."""
        meta, tensors = file_format.read(path)
        file_format.check_kind(meta, path, "NeuronSet")
        return file_format.build(path, lambda: cls._from_file(meta, tensors))

    def _file_meta(self) -> dict[str, Any]:
        """The header fields that describe this set in a neuron file."""
        return {
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "site": self.site,
            "model_id": self.model_id,
        }

    @classmethod
    def _from_file(
        cls,
        meta: dict[str, Any],
        tensors: dict[str, Tensor],
        prefix: str = "",
        model_id: str | EllipsisType | None = ...,
    ) -> NeuronSet:
        """The set stored under ``prefix`` of a file read by `file_format.read`.

        ``model_id`` defaults to the header's (a `LanguageNeurons` file passes each
        language's own).
        """
        layers = file_format.read_layers(tensors, prefix, int(meta["n_layers"]))
        return cls(
            layers,
            d_mlp=int(meta["d_mlp"]),
            site=meta["site"],
            model_id=meta.get("model_id") if model_id is ... else model_id,
        )

    # ------------------------------------------------------------------ helpers

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise NeuronIndexError(
                f"Layer {layer} is out of range [0, {self.n_layers}): this set has "
                f"{self.n_layers} layers (0..{self.n_layers - 1})."
            )

    # ------------------------------------------------------------------ dataframes and display

    def to_pandas(self, *, include_site: bool = False) -> Any:
        """One row per neuron, in (layer, neuron) order: ``layer`` and ``neuron``
        (``int64``), plus ``site`` with ``include_site=True``. Per-layer counts are
        `per_layer`; see docs/dataframes.md."""
        return frames.neuron_rows(self, include_site=include_site)

    def _repr_html_(self) -> str:
        """Notebook view: size, share of the model, site and model on one line; the count
        and share of each layer below, coloured."""
        return frames.neuron_set_html(self)


def _check_shape(n_layers: int, d_mlp: int, site: str) -> None:
    if n_layers < 0 or d_mlp < 0:
        raise NeuronShapeMismatchError(
            f"A NeuronSet needs n_layers >= 0 and d_mlp >= 0, got n_layers={n_layers}, "
            f"d_mlp={d_mlp}; take both from the model's config."
        )
    if not isinstance(site, str) or not site:
        raise NeuronShapeMismatchError(
            f"site must be a hook-site name such as 'mlp_post' or 'mlp_pre', got {site!r}."
        )


def _clean_layer(layer: int, values: Tensor | Sequence[int], d_mlp: int) -> Tensor:
    """Validate one layer's indices and return them sorted, unique, int64, on CPU."""
    if isinstance(values, Tensor):
        if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
            raise WrongInputError(
                f"Layer {layer}: neuron indices must be an integer tensor, got {values.dtype}"
                + (" (for a mask use NeuronSet.from_mask)" if values.dtype == torch.bool else "")
            )
        if values.ndim > 1:
            raise WrongInputError(
                f"Layer {layer}: expected a 1-D tensor of neuron indices, got shape "
                f"{tuple(values.shape)}."
            )
        t = values.detach().to(device="cpu", dtype=torch.int64).reshape(-1)
    else:
        if isinstance(values, (str, bytes)):
            raise WrongInputError(f"Layer {layer}: expected neuron indices, got {values!r}.")
        try:
            t = torch.tensor([operator.index(v) for v in values], dtype=torch.int64)
        except TypeError:
            raise WrongInputError(
                f"Layer {layer}: neuron indices must be whole numbers, got {values!r}."
            ) from None
    if t.numel():
        bad = t[(t < 0) | (t >= d_mlp)]
        if bad.numel():
            raise NeuronIndexError(
                f"Layer {layer}: neuron index {int(bad[0])} is out of range [0, {d_mlp}) "
                f"(d_mlp={d_mlp}). Check that the neurons come from a model with "
                f"d_mlp={d_mlp}, or pass that model's d_mlp."
            )
    return torch.unique(t, sorted=True)
