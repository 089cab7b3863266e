"""Representation analysis (LANDeRMT, Zhu et al. 2024, Eq. 1–2): which layers a language
pair changes most.

For every forward pass ``n`` over a pair's translation examples, ``A[i, n]`` is the
average FFN activation of layer ``i`` (the mean over real token positions and all
neurons at ``site``; by default ``mlp_post``, the input of the down projection, i.e.
the FFN's hidden activation). ``D_i = |mean_n A[i, n] − mean_n A[i+1, n]|`` for
``i = 0 … L−2``, and the top-``k`` ``D_i`` (``k = 4`` in the paper) select the layers.

``D_i`` is a property of the *transition* from layer ``i`` to ``i+1``; the paper does
not say which of the two layers it names. ``attribute_to="next"`` (default) selects
layer ``i+1`` — the layer whose representation changed, which also lets the last layer
be chosen, as the paper's Fig. 5 discussion of "the final layers" requires;
``attribute_to="previous"`` selects layer ``i``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.detect._common import DetectorInputError
from lsn_mech.models.protocol import HookedModel, model_device, model_id
from lsn_mech.models.runtime import capture
from lsn_mech.models.sites import hook_sites
from lsn_mech.provenance import Provenance
from lsn_mech.results import canonical, load_json, save_json, table

Attribution = Literal["next", "previous"]
Combine = Literal["mean", "per_pair"]


def pair_name(pair: tuple[str, str] | str) -> str:
    """``("en", "fr")`` → ``"en-fr"`` (the key used in result files)."""
    return pair if isinstance(pair, str) else f"{pair[0]}-{pair[1]}"


@torch.no_grad()
def layer_activation_means(
    model: HookedModel,
    batches: Iterable[Mapping[str, Tensor]],
    *,
    site: str = "mlp_post",
    progress: bool = False,
    description: str = "layer means",
) -> Float[Tensor, "n_passes layer"]:
    """``A[n, i]``: the mean activation of layer ``i`` in forward pass ``n`` (Eq. 1's terms).

    ``batches`` yield dicts with ``input_ids`` and ``attention_mask`` (extra keys such as
    ``labels`` are ignored); padding positions never count. Each batch is one forward
    pass. The forward stops after the last layer's hook.
    """
    sites = hook_sites(model)
    device = model_device(model)
    n_layers = sites.n_layers
    layer_of = {sites.name(site, layer): layer for layer in range(n_layers)}
    rows: list[Tensor] = []
    current = torch.zeros(n_layers, dtype=torch.float64, device=device)
    mask_holder: dict[str, Tensor] = {}

    def record(name: str, activation: Tensor) -> None:
        real = activation[mask_holder["mask"]]  # [tokens, d_mlp]
        current[layer_of[name]] = real.double().mean()

    for batch in tqdm(list(batches), desc=description, disable=not progress):
        attention = batch["attention_mask"].to(device).bool()
        if not bool(attention.any()):
            continue
        mask_holder["mask"] = attention
        capture(
            model,
            batch["input_ids"].to(device),
            list(layer_of),
            attention_mask=attention,
            callback=record,
        )
        rows.append(current.clone())
    if not rows:
        raise DetectorInputError(
            "No forward pass had a real token: pass batches with at least one non-padding "
            "position (e.g. from lsn_mech.corpora.translation_batches)."
        )
    return torch.stack(rows).float()


@dataclasses.dataclass
class LayerSelection:
    """Eq. 1–2 of LANDeRMT for several language pairs.

    Attributes:
        pairs: pair names (``"en-fr"``), in order.
        means: ``means[p][i]``: average activation of layer ``i`` for pair ``p`` (Fig. 4).
        passes: forward passes averaged per pair (``N`` of Eq. 1).
        k: layers selected.
        attribute_to: which layer a transition ``D_i`` names (module doc).
        site: hook site whose activations were averaged.
    """

    pairs: list[str]
    means: list[list[float]]
    passes: list[int]
    k: int = 4
    attribute_to: str = "next"
    site: str = "mlp_post"
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def __post_init__(self) -> None:
        _check_k(self.k, self.n_layers)
        if self.attribute_to not in ("next", "previous"):
            raise DetectorInputError(
                f"attribute_to must be 'next' or 'previous', got {self.attribute_to!r}."
            )

    @property
    def n_layers(self) -> int:
        return len(self.means[0]) if self.means else 0

    def deltas(
        self, pair: tuple[str, str] | str | None = None
    ) -> Float[Tensor, "*pair transition"]:
        """``D_i = |mean A_i − mean A_{i+1}|`` (Eq. 1), per pair or for one pair (Fig. 5)."""
        means = torch.tensor(self.means, dtype=torch.float64)
        deltas = (means[:, :-1] - means[:, 1:]).abs()
        if pair is None:
            return deltas
        return deltas[self._index(pair)]

    def layers(
        self, pair: tuple[str, str] | str | None = None, *, combine: Combine = "mean"
    ) -> list[int]:
        """The top-``k`` layers (Eq. 2), sorted.

        For one ``pair``: that pair's own ``D``. With no pair, ``combine="mean"`` ranks
        the transitions by ``D`` averaged over all pairs — one layer set shared by every
        pair, which multi-pair training needs (the paper finetunes "the chosen four
        layers"); ``combine="per_pair"`` is only valid with a ``pair``.
        """
        if pair is not None:
            scores = self.deltas(pair)
        elif combine == "mean":
            scores = self.deltas().mean(dim=0)
        else:
            raise DetectorInputError("combine='per_pair' needs a pair: layers(('en', 'fr')).")
        top = torch.topk(scores, self.k, largest=True, sorted=True).indices
        offset = 1 if self.attribute_to == "next" else 0
        return sorted(int(i) + offset for i in top)

    def per_pair(self) -> dict[str, list[int]]:
        """Each pair's own top-``k`` layers."""
        return {p: self.layers(p) for p in self.pairs}

    def _index(self, pair: tuple[str, str] | str) -> int:
        name = pair_name(pair)
        if name not in self.pairs:
            raise DetectorInputError(
                f"No pair {name!r} in this selection (pairs: {', '.join(self.pairs)})."
            )
        return self.pairs.index(name)

    # ----- output ------------------------------------------------------------------
    def table(self) -> str:
        """Per-pair selected layers and the shared selection."""
        rows: list[list[Any]] = [[p, ", ".join(map(str, self.layers(p)))] for p in self.pairs]
        rows.append(["(mean over pairs)", ", ".join(map(str, self.layers()))])
        return table(["pair", f"top-{self.k} layers"], rows)

    def plot(self, kind: Literal["means", "deltas"] = "deltas") -> Any:
        """Fig. 4 (``"means"``: average activation per layer) or Fig. 5 (``"deltas"``)."""
        import plotly.graph_objects as go

        figure = go.Figure()
        values = self.means if kind == "means" else self.deltas().tolist()
        offset = 1 if (kind == "deltas" and self.attribute_to == "next") else 0
        for pair, row in zip(self.pairs, values):
            figure.add_trace(
                go.Scatter(
                    x=[i + offset for i in range(len(row))], y=row, name=pair, mode="lines+markers"
                )
            )
        title = (
            "Layer-wise average FFN activation"
            if kind == "means"
            else f"|Δ average activation| (D_i, shown at layer i{'+1' if offset else ''})"
        )
        figure.update_layout(title=title, xaxis_title="layer", yaxis_title=kind)
        return figure

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    @classmethod
    def load(cls, path: str | Path) -> LayerSelection:
        return load_json(cls, path)

    # ----- dataframes and display ------------------------------------------------------
    def to_pandas(self, form: str = "wide") -> Any:
        """``form="wide"``: one row per ``layer``, one column per pair holding its average
        activation (Eq. 1's ``mean A_i``, Fig. 4). ``form="long"``: one row per (``pair``,
        ``layer``) with ``mean`` and ``selected`` (the layer is among the pair's own
        top-``k``)."""
        import pandas as pd

        display.check_form(
            form,
            {"wide": "layer × pair", "long": "one row per pair and layer"},
            "LayerSelection",
            DetectorInputError,
        )
        if form == "wide":
            return pd.DataFrame(self._layer_rows(), columns=["layer", *self.pairs])
        rows = [
            [pair, layer, value, layer in chosen]
            for pair, means, chosen in zip(self.pairs, self.means, self.per_pair().values())
            for layer, value in enumerate(means)
        ]
        return pd.DataFrame(rows, columns=["pair", "layer", "mean", "selected"])

    def _layer_rows(self) -> list[list[Any]]:
        return [[layer, *(means[layer] for means in self.means)] for layer in range(self.n_layers)]

    def _repr_html_(self) -> str:
        """Notebook view: the shared selection on one line; the per-layer means below,
        the selected layers' labels marked with ``*``."""
        shared = self.layers() if self.pairs else []
        summary = (
            f"{display.plural(len(self.pairs), 'pair')}, top-{self.k} layers by |Δ mean "
            f"activation| (attributed to the {self.attribute_to} layer): {shared}"
        )
        rows = [[f"{r[0]}*" if r[0] in shared else r[0], *r[1:]] for r in self._layer_rows()]
        table = display.Table(
            ["layer", *self.pairs],
            rows,
            heat=display.numeric_heat(rows),
            legend="colour: average activation of the layer (Fig. 4); * selected",
        )
        return display.render(display.title_of("LayerSelection", self.provenance), summary, table)


def _check_k(k: int, n_layers: int) -> None:
    if not (isinstance(k, int) and 1 <= k <= max(n_layers - 1, 1)):
        raise DetectorInputError(
            f"k must be an integer in [1, {n_layers - 1}] (there are {n_layers - 1} "
            f"transitions between {n_layers} layers); got {k!r}. The paper uses k=4."
        )


def select_layers(
    model: HookedModel,
    batches_by_pair: Mapping[tuple[str, str] | str, Iterable[Mapping[str, Tensor]]],
    *,
    k: int = 4,
    attribute_to: Attribution = "next",
    site: str = "mlp_post",
    progress: bool = True,
) -> LayerSelection:
    """Representation analysis over each pair's translation batches (Eq. 1–2).

    Feed the pair's translation-instruction examples (prompt and target, as the model
    sees them during finetuning), e.g. ``translation_batches(tokenizer, examples)``.
    """
    if not batches_by_pair:
        raise DetectorInputError("Pass at least one language pair's batches.")
    pairs: list[str] = []
    means: list[list[float]] = []
    passes: list[int] = []
    for pair, batches in batches_by_pair.items():
        values = layer_activation_means(
            model, batches, site=site, progress=progress, description=f"layers {pair_name(pair)}"
        )
        pairs.append(pair_name(pair))
        means.append([float(v) for v in values.double().mean(dim=0)])
        passes.append(int(values.shape[0]))
    provenance = Provenance(
        model_id=model_id(model),
        method="landermt.representation_analysis",
        parameters=canonical({"k": k, "attribute_to": attribute_to, "site": site}),
        library_version=__version__,
    )
    return LayerSelection(
        pairs=pairs,
        means=means,
        passes=passes,
        k=k,
        attribute_to=attribute_to,
        site=site,
        provenance=provenance,
    )


def layer_selection_from_means(
    means: Float[Tensor, "pair layer"] | Sequence[Sequence[float]],
    pairs: Sequence[tuple[str, str] | str],
    *,
    k: int = 4,
    attribute_to: Attribution = "next",
) -> LayerSelection:
    """A `LayerSelection` from average activations computed elsewhere."""
    rows = torch.as_tensor(means, dtype=torch.float64)
    if rows.ndim != 2 or rows.shape[0] != len(pairs):
        raise DetectorInputError(
            f"means must be [pair, layer] with one row per pair ({len(pairs)}); "
            f"got shape {tuple(rows.shape)}."
        )
    return LayerSelection(
        pairs=[pair_name(p) for p in pairs],
        means=rows.tolist(),
        passes=[0] * len(pairs),
        k=k,
        attribute_to=attribute_to,
    )
