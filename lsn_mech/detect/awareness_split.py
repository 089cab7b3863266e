"""Language-general and language-specific neurons from awareness (LANDeRMT, Eq. 5).

In each selected layer, the variance of a neuron's awareness across languages says how
much it cares *which* language it sees. The ``round(ε · p)`` neurons with the lowest
variance (``ε = 0.9`` in the paper, whose §A.4 calls 0.9 "the proportion of
language-general neurons") are language-general; the rest are language-specific, each
assigned to the language where its awareness is highest. A pair's specific set is the
union of its source's and target's.

Eq. 5 sorts variances "from the highest to the lowest" and indexes ``|ε·p|``, which read
literally would make only 10 % general; §A.4 and the routing section (general neurons
shared by every pair) say 90 %, which is what this module does. Variance is the
population variance (``correction=0``) unless ``correction=1`` is asked for; ties in the
ranking are broken by neuron index (stable sort), ties in the arg-max by language order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.detect._common import DetectorInputError, check_rate, check_selectable
from lsn_mech.detect.awareness import Awareness
from lsn_mech.detect.registry import Detection, DetectorSpec, register
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance


@dataclasses.dataclass
class AwarenessSplit:
    """The outcome of Eq. 5: one general set, one specific set per language.

    ``pair(src, tgt)`` is what LANDeRMT finetunes for a pair: general ∪ specific(src) ∪
    specific(tgt). Both parts are ordinary `NeuronSet`s, so the set algebra applies.
    """

    general: NeuronSet
    specific: LanguageNeurons
    layers: list[int]
    epsilon: float
    awareness: Awareness | None = None

    @property
    def languages(self) -> list[str]:
        return list(self.specific.languages)

    def pair_specific(self, src: str, tgt: str) -> NeuronSet:
        """Neurons specific to the source or the target language."""
        return self.specific[src] | self.specific[tgt]

    def pair(self, src: str, tgt: str) -> NeuronSet:
        """General ∪ specific(src) ∪ specific(tgt): the neurons a pair trains and routes."""
        return self.general | self.pair_specific(src, tgt)

    def summary(self) -> str:
        """Counts per selected layer: general, then each language's specific neurons."""
        general = self.general.per_layer()
        lines = [f"layers {self.layers}, ε = {self.epsilon}"]
        lines.append(
            "general:  " + ", ".join(f"L{layer}={general[layer]}" for layer in self.layers)
        )
        for lang in self.languages:
            counts = self.specific[lang].per_layer()
            lines.append(
                f"{lang:<9} " + ", ".join(f"L{layer}={counts[layer]}" for layer in self.layers)
            )
        return "\n".join(lines)

    def layer_means(self) -> dict[str, dict[str, list[float]]]:
        """Mean awareness of general and of specific neurons per layer, per language
        (Fig. 6–7 of the paper). Needs the awareness it was split from."""
        if self.awareness is None:
            raise DetectorInputError("This split carries no awareness scores (it was loaded).")
        result: dict[str, dict[str, list[float]]] = {"general": {}, "specific": {}}
        general = self.general.to_mask()[self.layers]
        for i, lang in enumerate(self.awareness.languages):
            scores = self.awareness.scores[..., i]
            own = self.specific[lang].to_mask()[self.layers] if lang in self.specific else None
            result["general"][lang] = _masked_means(scores, general)
            if own is not None:
                result["specific"][lang] = _masked_means(scores, own)
        return result

    def plot(self, kind: str = "general") -> Any:
        """Fig. 6 (``"general"``) or Fig. 7 (``"specific"``): mean awareness per layer."""
        import plotly.graph_objects as go

        figure = go.Figure()
        for lang, values in self.layer_means()[kind].items():
            figure.add_trace(go.Scatter(x=self.layers, y=values, name=lang, mode="lines+markers"))
        figure.update_layout(
            title=f"Average awareness of language-{kind} neurons per layer",
            xaxis_title="layer",
            yaxis_title="mean Φ",
        )
        return figure

    def save(self, directory: str | Path) -> Path:
        """``general.safetensors`` + ``specific.safetensors`` (+ ``awareness.safetensors``)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self.general.save(target / "general.safetensors")
        self.specific.save(target / "specific.safetensors")
        if self.awareness is not None:
            self.awareness.save(target / "awareness.safetensors")
        return target

    @classmethod
    def load(cls, directory: str | Path) -> AwarenessSplit:
        source = Path(directory)
        general = NeuronSet.load(source / "general.safetensors")
        specific = LanguageNeurons.load(source / "specific.safetensors")
        awareness_file = source / "awareness.safetensors"
        awareness = Awareness.load(awareness_file) if awareness_file.exists() else None
        parameters = specific.provenance.parameters
        return cls(
            general=general,
            specific=specific,
            layers=list(parameters.get("layers", [])),
            epsilon=float(parameters.get("epsilon", 0.9)),
            awareness=awareness,
        )

    # ----- dataframes and display ------------------------------------------------------
    def _sets(self) -> dict[str, NeuronSet]:
        return {"general": self.general, **dict(self.specific.items())}

    def to_pandas(self, form: str = "long") -> Any:
        """``form="long"``: one row per neuron: ``set`` (``"general"`` or the language it
        is specific to), ``layer``, ``neuron``. ``form="wide"``: one row per set, its
        neuron count in each selected layer (columns: the layer numbers)."""
        import pandas as pd

        display.check_form(
            form,
            {"long": "one row per neuron", "wide": "counts per set × layer"},
            "AwarenessSplit",
            DetectorInputError,
        )
        if form == "wide":
            return pd.DataFrame(self._count_rows(), columns=["set", *self.layers])
        parts = []
        for name, neuron_set in self._sets().items():
            part = neuron_set.to_pandas()
            part.insert(0, "set", name)
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    def _count_rows(self) -> list[list[Any]]:
        rows = []
        for name, neuron_set in self._sets().items():
            counts = neuron_set.per_layer()
            rows.append([name, *(counts[layer] for layer in self.layers)])
        return rows

    def _repr_html_(self) -> str:
        """Notebook view: layers, ε and set sizes on one line; counts per layer below."""
        sizes = [(name, len(s)) for name, s in self._sets().items()]
        summary = f"layers {self.layers}, ε = {self.epsilon}; {display.counts_line(sizes)}"
        rows = self._count_rows()
        table = display.Table(
            ["set", *map(str, self.layers)],
            rows,
            heat=display.numeric_heat(rows),
            legend="colour: neurons in the layer",
        )
        provenance = self.specific.provenance
        return display.render(display.title_of("AwarenessSplit", provenance), summary, table)


def _masked_means(scores: Tensor, mask: Tensor) -> list[float]:
    counts = mask.sum(dim=1).clamp(min=1)
    return ((scores * mask).sum(dim=1) / counts).tolist()


def split_scores(
    scores: Float[Tensor, "layer d_mlp lang"],
    *,
    epsilon: float = 0.9,
    correction: int = 0,
) -> tuple[Tensor, Tensor]:
    """Eq. 5 on a ``[layer, d_mlp, lang]`` tensor of one model's selected layers.

    Returns ``(general [layer, d_mlp] bool, owner [layer, d_mlp] long)`` where ``owner``
    is the language index of each specific neuron and ``-1`` for general ones.
    """
    epsilon = check_rate("epsilon", epsilon, allow_zero=True)
    if scores.ndim != 3 or scores.shape[-1] < 2:
        raise DetectorInputError(
            "Awareness must be [layer, d_mlp, lang] with at least two languages; got "
            f"shape {tuple(scores.shape)}."
        )
    if not bool(torch.isfinite(scores).all()):
        raise DetectorInputError("Awareness scores contain NaN or inf: check the batches' losses.")
    variance = scores.double().var(dim=-1, correction=correction)  # [layer, d_mlp]
    n_general = round(epsilon * scores.shape[1])
    order = torch.sort(variance, dim=1, stable=True).indices[:, :n_general]
    general = torch.zeros_like(variance, dtype=torch.bool)
    general.scatter_(1, order, True)
    owner = scores.argmax(dim=-1)  # first maximum: language order breaks ties
    owner = torch.where(general, torch.full_like(owner, -1), owner)
    return general, owner


def split_awareness(
    awareness: Awareness, *, epsilon: float = 0.9, correction: int = 0
) -> AwarenessSplit:
    """Language-general and language-specific neurons of the selected layers (Eq. 5)."""
    check_selectable(
        awareness.scores,
        awareness.languages,
        method="LANDeRMT split",
        what="awareness scores",
        fix="Zero gradients: check that the batches' labels mark target tokens (not all "
        "-100) and that the scored layers take part in the loss.",
    )
    general_rows, owner_rows = split_scores(
        awareness.scores, epsilon=epsilon, correction=correction
    )
    n_layers, d_mlp = awareness.n_layers, awareness.d_mlp
    general = torch.zeros(n_layers, d_mlp, dtype=torch.bool)
    owner = torch.full((n_layers, d_mlp), -1, dtype=torch.long)
    general[awareness.layers] = general_rows.cpu()
    owner[awareness.layers] = owner_rows.cpu()
    parameters = {
        "layers": awareness.layers,
        "epsilon": epsilon,
        "correction": correction,
        "awareness": awareness.provenance.parameters,
    }
    provenance = Provenance(
        model_id=awareness.provenance.model_id,
        corpus=awareness.provenance.corpus,
        corpus_hash=awareness.provenance.corpus_hash,
        method="landermt.variance_split",
        parameters=parameters,
        library_version=__version__,
    )
    model = awareness.provenance.model_id
    general_set = NeuronSet.from_mask(general, model_id=model)
    languages = list(awareness.languages)
    masks = torch.stack([owner == i for i in range(len(languages))])
    specific = LanguageNeurons.from_mask(masks, languages, model_id=model, provenance=provenance)
    return AwarenessSplit(
        general=general_set,
        specific=specific,
        layers=list(awareness.layers),
        epsilon=epsilon,
        awareness=awareness,
    )


@register("landermt-split", label="LANDeRMT specific")
@dataclasses.dataclass(frozen=True)
class AwarenessSplitSpec(DetectorSpec):
    """LANDeRMT's general/specific split (Eq. 5) as a registered detector.

    It reads an `Awareness` (from `taylor_awareness`, which needs the model and parallel
    data), not statistics. The result's ``neurons`` are the language-specific sets, its
    ``scores`` the awareness ``[len(layers), d_mlp, lang]`` of the selected layers, and
    its ``details`` the whole `AwarenessSplit` (with the language-general set).
    """

    method: ClassVar[str] = "landermt.variance_split"
    reads_statistics: ClassVar[bool] = False
    reads: ClassVar[str] = "an Awareness (lsn_mech.detect.taylor_awareness)"

    epsilon: float = 0.9
    """Share of each selected layer's neurons that are language-general (paper: 0.9)."""
    correction: int = 0
    """Variance correction: 0 (population variance) or 1 (sample variance)."""

    def detect(
        self,
        source: Awareness,
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> Detection:
        """`split_awareness` of ``source``; its languages and model are the awareness's."""
        if not isinstance(source, Awareness):
            raise DetectorInputError(
                f"landermt-split reads {self.reads}, got {type(source).__name__}."
            )
        if languages is not None or model_id is not None:
            raise DetectorInputError(
                "landermt-split takes its languages and model from the awareness; choose "
                "them when computing it (taylor_awareness), not here."
            )
        split = split_awareness(source, epsilon=self.epsilon, correction=self.correction)
        return Detection(neurons=split.specific, scores=source.scores, details=split)
