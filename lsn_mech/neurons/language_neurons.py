"""Neuron sets keyed by language: what every detector returns and every evaluation consumes.

A `LanguageNeurons` is a read-only ``Mapping[str, NeuronSet]`` whose order is the
language order (rows and columns of every matrix derived from it), and which guarantees
that all its sets describe the same model, so cross-language algebra never fails halfway.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lsn_mech.errors import (
    InvalidSettingError,
    MissingLanguageError,
    NeuronShapeMismatchError,
    WrongInputError,
)
from lsn_mech.neurons import file_format, frames
from lsn_mech.neurons.neuron_set import DEFAULT_SITE, NeuronSet, Overlap
from lsn_mech.neurons.pretrained import PretrainedMixin
from lsn_mech.provenance import Provenance

OverlapKind = Literal["jaccard", "intersection"]


class OverlapMatrix:
    """Pairwise overlap of languages' neuron sets: ``values[i, j]`` for languages i, j.

    ``kind`` is ``"jaccard"`` (``|A ∩ B| / |A ∪ B|``, 1.0 on the diagonal unless a set is
    empty) or ``"intersection"`` (``|A ∩ B|``, the set sizes on the diagonal).
    """

    __slots__ = ("kind", "languages", "values")

    def __init__(
        self,
        languages: Sequence[str],
        values: Float[Tensor, "lang lang"],
        kind: OverlapKind,
    ) -> None:
        if values.shape != (len(languages), len(languages)):
            raise NeuronShapeMismatchError(
                f"An overlap matrix over {len(languages)} languages needs values of shape "
                f"({len(languages)}, {len(languages)}), got {tuple(values.shape)}."
            )
        self.languages: tuple[str, ...] = tuple(languages)
        self.values: Float[Tensor, "lang lang"] = values
        self.kind: OverlapKind = kind

    def __getitem__(self, pair: tuple[str, str]) -> float:
        """``matrix["zh", "ja"]``: the value for one pair of languages."""
        a, b = pair
        return float(self.values[self._index(a), self._index(b)])

    def _index(self, language: str) -> int:
        try:
            return self.languages.index(language)
        except ValueError:
            raise _missing(language, self.languages) from None

    def _cell(self, value: float) -> str:
        return f"{round(value)}" if self.kind == "intersection" else f"{value:.3f}"

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the matrix with a header row and a label column; returns the path."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([self.kind, *self.languages])
            for language, row in zip(self.languages, self.values.tolist(), strict=True):
                cells = [round(v) if self.kind == "intersection" else repr(v) for v in row]
                writer.writerow([language, *cells])
        return path

    def __str__(self) -> str:
        rows = [[self._cell(v) for v in row] for row in self.values.tolist()]
        width = max([len(x) for x in self.languages] + [len(c) for r in rows for c in r] + [1])
        head = " " * width + " " + " ".join(f"{x:>{width}}" for x in self.languages)
        lines = [f"{self.kind} overlap", head]
        for language, row in zip(self.languages, rows, strict=True):
            lines.append(f"{language:>{width}} " + " ".join(f"{c:>{width}}" for c in row))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"OverlapMatrix(kind={self.kind!r}, languages={list(self.languages)!r})"

    def plot(self, *, title: str | None = None) -> Any:
        """A plotly heatmap (``plotly.graph_objects.Figure``) with the values written in."""
        import plotly.graph_objects as go

        values = self.values.tolist()
        text = [[self._cell(v) for v in row] for row in values]
        fig = go.Figure(
            go.Heatmap(
                z=values,
                x=list(self.languages),
                y=list(self.languages),
                text=text,
                texttemplate="%{text}",
                colorscale="Viridis",
                colorbar={"title": self.kind},
            )
        )
        fig.update_layout(
            title=title or f"Neuron overlap between languages ({self.kind})",
            yaxis={"autorange": "reversed"},
        )
        return fig

    def to_pandas(self, form: str = "wide") -> Any:
        """``form="wide"``: the matrix, a label column named after the kind then one
        column per language; ``form="long"``: one row per ordered pair (``language_a``,
        ``language_b``, value). Intersections are ints, Jaccard indices floats."""
        return frames.overlap_matrix_frame(self, form)

    def _repr_html_(self) -> str:
        """Notebook view: the matrix coloured off the diagonal."""
        return frames.overlap_matrix_html(self)


def _missing(language: str, available: Iterable[str]) -> MissingLanguageError:
    return MissingLanguageError(
        f"language {language!r} not in these neurons; available: {', '.join(available)}. "
        f"Detect neurons for it first, or pick one of the available languages."
    )


class LanguageNeurons(PretrainedMixin, Mapping[str, NeuronSet]):
    """One `NeuronSet` per language, all of the same model, in language order.

    Args:
        sets: language code → neuron set; the iteration order is the language order.
        provenance: where the neurons came from (method, model, corpus, parameters).

    All sets must have the same ``n_layers``, ``d_mlp`` and ``site``, and their
    non-``None`` model ids must agree; otherwise
    `lsn_mech.errors.NeuronShapeMismatchError` is raised.

    ``==`` compares language order and sets; provenance is not compared.

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` (from
    `lsn_mech.neurons.pretrained.PretrainedMixin`) share them as a folder or on the hub.

    Example:
        >>> en = NeuronSet([[1], [2]], d_mlp=4)
        >>> fr = NeuronSet([[1], [3]], d_mlp=4)
        >>> neurons = LanguageNeurons({"en": en, "fr": fr})
        >>> neurons.overlap("en", "fr").jaccard
        0.3333333333333333
        >>> neurons.exclusive("fr").per_layer()
        [0, 1]
    """

    __slots__ = ("_provenance", "_sets")

    def __init__(
        self, sets: Mapping[str, NeuronSet], *, provenance: Provenance | None = None
    ) -> None:
        if not isinstance(sets, Mapping):
            raise WrongInputError(
                f"LanguageNeurons needs a mapping {{language: NeuronSet}}, e.g. "
                f"LanguageNeurons({{'fr': fr_set}}), got {type(sets).__name__}."
            )
        items = dict(sets)
        if not items:
            raise MissingLanguageError(
                "LanguageNeurons needs at least one language; pass {language: NeuronSet}."
            )
        first_language, first = next(iter(items.items()))
        for language, neuron_set in items.items():
            if not isinstance(language, str) or not language:
                raise WrongInputError(
                    f"Language codes must be non-empty strings, got {language!r}."
                )
            if not isinstance(neuron_set, NeuronSet):
                raise WrongInputError(
                    f"Language {language!r}: expected a NeuronSet, got {type(neuron_set).__name__}"
                    "; build one per language (NeuronSet.from_mask / from_pairs)."
                )
            if not first.is_compatible(neuron_set):
                try:
                    first._check_compatible(neuron_set, "group")
                except NeuronShapeMismatchError as exc:
                    raise NeuronShapeMismatchError(
                        f"Languages {first_language!r} and {language!r} disagree. {exc}"
                    ) from None
        ids = {s.model_id for s in items.values()} - {None}
        if len(ids) > 1:  # pairwise compatible with the first, but not with each other
            raise NeuronShapeMismatchError(
                f"The neuron sets name different models ({', '.join(sorted(ids))}); detect "
                f"all languages on the same model, or relabel with `.relabel(model_id=...)`."
            )
        self._sets: dict[str, NeuronSet] = items
        self._provenance = provenance

    @classmethod
    def from_mask(
        cls,
        mask: Bool[Tensor, "lang layer d_mlp"],
        languages: Sequence[str],
        *,
        site: str = DEFAULT_SITE,
        model_id: str | None = None,
        provenance: Provenance | None = None,
    ) -> LanguageNeurons:
        """Build from a boolean ``[lang, layer, d_mlp]`` mask, as detectors produce."""
        if mask.ndim != 3 or mask.shape[0] != len(languages):
            raise NeuronShapeMismatchError(
                f"Mask of shape {tuple(mask.shape)} does not match {len(languages)} languages; "
                f"expected [lang, layer, d_mlp] with lang = len(languages)."
            )
        sets = {
            language: NeuronSet.from_mask(mask[i], site=site, model_id=model_id)
            for i, language in enumerate(languages)
        }
        return cls(sets, provenance=provenance)

    # ------------------------------------------------------------------ mapping protocol

    def __getitem__(self, language: str) -> NeuronSet:
        try:
            return self._sets[language]
        except KeyError:
            raise _missing(language, self._sets) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    def __contains__(self, language: object) -> bool:
        return language in self._sets

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LanguageNeurons):
            return list(self._sets.items()) == list(other._sets.items())
        if isinstance(other, Mapping):
            return self._sets == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        counts = ", ".join(f"{lang}={len(s)}" for lang, s in self._sets.items())
        return (
            f"LanguageNeurons({len(self)} languages, {self.n_layers} layers × {self.d_mlp}, "
            f"site={self.site!r}, model_id={self.model_id!r}: {counts})"
        )

    # ------------------------------------------------------------------ shape

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes in order."""
        return tuple(self._sets)

    @property
    def provenance(self) -> Provenance | None:
        """Where these neurons came from, if recorded."""
        return self._provenance

    def _first(self) -> NeuronSet:
        return next(iter(self._sets.values()))

    @property
    def n_layers(self) -> int:
        """Layers of the model."""
        return self._first().n_layers

    @property
    def d_mlp(self) -> int:
        """Neurons per layer of the model."""
        return self._first().d_mlp

    @property
    def site(self) -> str:
        """Hook site shared by all sets."""
        return self._first().site

    @property
    def model_id(self) -> str | None:
        """The model id of the sets (the first one that is not ``None``)."""
        return next((s.model_id for s in self._sets.values() if s.model_id is not None), None)

    # ------------------------------------------------------------------ analysis

    def per_layer(self) -> dict[str, list[int]]:
        """Per-layer neuron counts of every language."""
        return {language: s.per_layer() for language, s in self._sets.items()}

    def overlap(self, a: str, b: str) -> Overlap:
        """Intersection, union and Jaccard index of two languages' neurons."""
        return self[a].overlap(self[b])

    def overlap_matrix(self, kind: OverlapKind = "jaccard") -> OverlapMatrix:
        """Pairwise overlaps of all languages (``"jaccard"`` or ``"intersection"``)."""
        if kind not in ("jaccard", "intersection"):
            raise InvalidSettingError(f"kind must be 'jaccard' or 'intersection', got {kind!r}.")
        masks = self.to_mask().reshape(len(self), -1).to(torch.float64)
        inter = masks @ masks.T
        if kind == "intersection":
            values = inter
        else:
            sizes = masks.sum(dim=1)
            union = sizes[:, None] + sizes[None, :] - inter
            values = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        return OverlapMatrix(self.languages, values, kind)

    def to_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, "lang layer d_mlp"]:
        """Boolean ``[lang, layer, d_mlp]`` mask of all languages, on ``device``."""
        return torch.stack([s.to_mask(device) for s in self._sets.values()])

    def union(self) -> NeuronSet:
        """Neurons of any language."""
        result = self._first()
        for s in self._sets.values():
            result = result | s
        return result

    def exclusive(self, language: str) -> NeuronSet:
        """Neurons of ``language`` that belong to no other language."""
        result = self[language]
        for other, s in self._sets.items():
            if other != language:
                result = result - s
        return result

    def shared(self, min_languages: int = 2) -> NeuronSet:
        """Neurons that belong to at least ``min_languages`` languages."""
        if min_languages < 1:
            raise InvalidSettingError(f"min_languages must be at least 1, got {min_languages}.")
        counts = self.to_mask().sum(dim=0)
        return NeuronSet.from_mask(counts >= min_languages, site=self.site, model_id=self.model_id)

    # ------------------------------------------------------------------ derived objects

    def map(self, fn: Callable[[NeuronSet], NeuronSet]) -> LanguageNeurons:
        """Apply ``fn`` to every language's set (e.g. ``lambda s: s.restrict_layers(...)``)."""
        return LanguageNeurons(
            {language: fn(s) for language, s in self._sets.items()}, provenance=self._provenance
        )

    def subset(self, languages: Iterable[str]) -> LanguageNeurons:
        """Only the given languages, in the given order."""
        return LanguageNeurons(
            {language: self[language] for language in languages}, provenance=self._provenance
        )

    def with_provenance(self, provenance: Provenance | None) -> LanguageNeurons:
        """The same sets with another provenance."""
        return LanguageNeurons(self._sets, provenance=provenance)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``<path>.safetensors``; see `lsn_mech.neurons.save`."""
        meta = {
            "kind": "LanguageNeurons",
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "site": self.site,
            "model_id": self.model_id,
            "languages": list(self.languages),
            "model_ids": {language: s.model_id for language, s in self.items()},
            "provenance": None if self.provenance is None else self.provenance.to_dict(),
        }
        tensors: dict[str, Tensor] = {}
        for language, s in self.items():  # `.layers` copies: no shared storage
            tensors.update(file_format.layer_tensors(f"{language}/", s.layers))
        return file_format.write(tensors, meta, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LanguageNeurons:
        """Read neurons written by `save`; see `lsn_mech.neurons.load`."""
        meta, tensors = file_format.read(path)
        file_format.check_kind(meta, path, "LanguageNeurons")
        return file_format.build(path, lambda: cls._from_file(meta, tensors))

    @classmethod
    def _from_file(cls, meta: dict[str, Any], tensors: dict[str, Tensor]) -> LanguageNeurons:
        """The neurons of a file read by `file_format.read`."""
        model_ids = meta.get("model_ids") or {}
        sets = {
            language: NeuronSet._from_file(meta, tensors, f"{language}/", model_ids.get(language))
            for language in meta["languages"]
        }
        provenance = meta.get("provenance")
        return cls(
            sets, provenance=None if provenance is None else Provenance.from_dict(provenance)
        )

    # ------------------------------------------------------------------ dataframes and display

    def to_pandas(self, form: str = "long", *, include_site: bool = False) -> Any:
        """The neurons as a ``pandas.DataFrame`` (see docs/dataframes.md).

        ``form="long"``: one row per (``language``, ``layer``, ``neuron``), languages in
        order, then (layer, neuron) order; ``include_site=True`` adds ``site``.
        ``form="wide"``: one row per language, its neuron count per layer in columns
        ``0 … n_layers - 1`` (``int64``): the long form counted per language and layer.
        """
        return frames.language_neuron_frame(self, form, include_site=include_site)

    def _repr_html_(self) -> str:
        """Notebook view: languages, totals, share of the MLP neurons and per-language
        counts on one line; the counts per language × layer below, coloured."""
        return frames.language_neurons_html(self)
