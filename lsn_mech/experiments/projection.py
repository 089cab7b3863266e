"""Where texts of each language land in the space of a neuron subset (LANDeRMT Fig. 12–13).

Each text becomes the mean activation (over its tokens, BOS excluded) of the chosen
neurons of one layer at ``mlp_post``; the points are centred and projected on their two
principal components. Language-general neurons should mix languages, language-specific
ones should separate them. ``separation`` puts a number on what the plot shows: the
leave-one-out nearest-centroid accuracy of the language labels, in the full neuron
subspace and in the 2-D projection (chance is ``1 / languages``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech._version import __version__
from lsn_mech.corpora.windows import tokenizer_adds_bos
from lsn_mech.errors import EmptyCorpusError
from lsn_mech.experiments._results import Result, ResultTable
from lsn_mech.models.protocol import HookedModel, model_device, model_id
from lsn_mech.models.runtime import capture
from lsn_mech.models.sites import hook_sites
from lsn_mech.neurons import NeuronSet
from lsn_mech.provenance import Provenance


@torch.no_grad()
def neuron_features(
    model: HookedModel,
    texts: Sequence[str],
    layer: int,
    indices: Tensor,
    *,
    site: str = "mlp_post",
    batch_size: int = 8,
    max_length: int = 128,
    progress: bool = False,
) -> Float[Tensor, "text neuron"]:
    """Mean activation of neurons ``indices`` of ``layer`` for each text."""
    name = hook_sites(model).name(site, layer)
    device = model_device(model)
    skip_bos = tokenizer_adds_bos(model.tokenizer)
    rows: list[Tensor] = []
    for start in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="features"):
        chunk = list(texts[start : start + batch_size])
        encoded = [model.tokenizer(t)["input_ids"][:max_length] for t in chunk]
        length = max(len(e) for e in encoded)
        ids = torch.zeros(len(chunk), length, dtype=torch.long)
        mask = torch.zeros(len(chunk), length, dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e, dtype=torch.long)
            mask[i, : len(e)] = True
        ids, mask = ids.to(device), mask.to(device)
        pool = mask.clone()
        if skip_bos:
            pool[:, 0] = mask.sum(dim=1) == 1
        weights = (pool.float() / pool.sum(dim=1, keepdim=True).clamp(min=1)).unsqueeze(-1)
        rows.append(_pooled_subset(model, name, ids, mask, weights, indices))
    return torch.cat(rows)


def _pooled_subset(
    model: HookedModel, name: str, ids: Tensor, mask: Tensor, weights: Tensor, indices: Tensor
) -> Tensor:
    """Weighted token mean of the subset's activations at hook ``name`` for one batch."""
    activation = capture(model, ids, [name], attention_mask=mask)[name]
    picked = activation[..., indices.to(activation.device)].float()
    return (picked * weights).sum(dim=1)


def principal_components(
    features: Float[Tensor, "n dim"], k: int = 2
) -> tuple[Float[Tensor, "n k"], list[float]]:
    """Projection on the top-``k`` principal components and their explained-variance shares."""
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(k, vh.shape[0])
    points = centred @ vh[:k].T
    variance = singular**2
    share = (variance[:k] / variance.sum().clamp(min=1e-30)).tolist()
    return points.float(), share


def nearest_centroid_accuracy(points: Tensor, labels: Tensor) -> float:
    """Leave-one-out nearest-centroid accuracy of ``labels`` (each point is removed from
    its own class centroid before it is classified)."""
    points = points.double()
    classes = labels.unique()
    sums = torch.stack([points[labels == c].sum(dim=0) for c in classes])
    counts = torch.stack([(labels == c).sum() for c in classes]).double()
    correct = 0
    for i in range(points.shape[0]):
        own = int((classes == labels[i]).nonzero())
        centroids = sums.clone()
        sizes = counts.clone()
        centroids[own] -= points[i]
        sizes[own] -= 1
        valid = sizes > 0
        centroids = centroids[valid] / sizes[valid].unsqueeze(1)
        distances = (centroids - points[i]).norm(dim=1)
        predicted = classes[valid][int(distances.argmin())]
        correct += int(predicted == labels[i])
    return correct / points.shape[0]


@dataclasses.dataclass
class NeuronProjection(Result):
    """2-D PCA points of texts in a neuron subspace, with their languages.

    Attributes:
        name: what the subset is (``"general"``, ``"specific"``, ...).
        layer: the layer. n_neurons: size of the subset in that layer.
        languages: language of each point. points: ``[[x, y], ...]``.
        explained: explained-variance share of the two components.
        separation: leave-one-out nearest-centroid accuracy in the full subspace.
        separation_2d: the same in the 2-D projection.
    """

    name: str
    layer: int
    n_neurons: int
    languages: list[str]
    points: list[list[float]]
    explained: list[float]
    separation: float
    separation_2d: float
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def plot(self) -> Any:
        """Scatter of the texts, coloured by language (Fig. 12–13)."""
        import plotly.graph_objects as go

        figure = go.Figure()
        for lang in dict.fromkeys(self.languages):
            xs = [p[0] for p, lg in zip(self.points, self.languages) if lg == lang]
            ys = [p[1] for p, lg in zip(self.points, self.languages) if lg == lang]
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=lang))
        figure.update_layout(
            title=(
                f"Layer {self.layer}, {self.name} neurons ({self.n_neurons}): "
                f"separation {self.separation:.2f}"
            ),
            xaxis_title=f"PC1 ({self.explained[0]:.0%})",
            yaxis_title=f"PC2 ({self.explained[-1]:.0%})",
        )
        return figure

    def _display_summary(self) -> str:
        explained = " + ".join(f"{e:.0%}" for e in self.explained)
        return (
            f"{len(self.points)} texts on the {self.n_neurons} {self.name} neurons of layer "
            f"{self.layer}; explained {explained}; separation {self.separation:.2f} "
            f"(2-D: {self.separation_2d:.2f})"
        )

    def tabulate(self) -> ResultTable:
        """One row per text: its language and its two coordinates."""
        rows = [[language, *point] for language, point in zip(self.languages, self.points)]
        return ResultTable(["language", "x", "y"], rows)


def neuron_projection(
    model: HookedModel,
    texts_by_language: Mapping[str, Sequence[str]],
    neurons: NeuronSet,
    layer: int,
    *,
    name: str = "neurons",
    site: str = "mlp_post",
    batch_size: int = 8,
    progress: bool = False,
) -> NeuronProjection:
    """Project each language's texts on the neurons of ``neurons`` in ``layer``."""
    indices = neurons.indices(layer)
    if indices.numel() == 0:
        raise EmptyCorpusError(
            f"The set has no neuron in layer {layer} (per layer: {neurons.per_layer()}); "
            "pick a layer where it has some."
        )
    features: list[Tensor] = []
    languages: list[str] = []
    for lang, texts in texts_by_language.items():
        if not texts:
            raise EmptyCorpusError(f"No text for {lang!r}: give every language some texts.")
        features.append(
            neuron_features(
                model, texts, layer, indices, site=site, batch_size=batch_size, progress=progress
            )
        )
        languages.extend([lang] * len(texts))
    stacked = torch.cat(features)
    points, explained = principal_components(stacked)
    order = list(dict.fromkeys(languages))
    labels = torch.tensor([order.index(lang) for lang in languages])
    provenance = Provenance(
        model_id=model_id(model),
        method="landermt.neuron_projection",
        parameters={"layer": layer, "site": site, "name": name},
        library_version=__version__,
    )
    return NeuronProjection(
        name=name,
        layer=layer,
        n_neurons=int(indices.numel()),
        languages=languages,
        points=points.tolist(),
        explained=explained,
        separation=nearest_centroid_accuracy(stacked.cpu(), labels),
        separation_2d=nearest_centroid_accuracy(points.cpu(), labels),
        provenance=provenance,
    )
