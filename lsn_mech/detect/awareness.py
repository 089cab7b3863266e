"""Taylor-expansion awareness of neurons (LANDeRMT, Zhu et al. 2024, Eq. 3–4).

``Φ(i) = |ΔL(h_i)| ≈ |∂L/∂h_i · h_i|``: the first-order estimate of how much the loss
changes when neuron ``i``'s output ``h_i`` (at ``mlp_post``, the input of the down
projection) is set to zero. Scores come from real backward passes through the hook
sites and are accumulated per language while the batches stream, never storing
activations beyond one batch.

Granularity (``reduce``), a choice the paper leaves open:

* ``"batch"`` (default): ``|Σ_{b,t} g·h|`` per forward pass — literally the estimated
  loss change of zeroing the neuron in that pass, then averaged over passes;
* ``"example"``: ``Σ_b |Σ_t g·h|`` — the same per example, summed over the batch;
* ``"token"``: ``Σ_{b,t} |g·h|`` — no cancellation between positions (an upper bound).

``L`` is the mean cross-entropy over the batch's target tokens (``labels != -100``,
HF convention: the logits at position ``t`` predict ``labels[t+1]``), with logits
computed only at those positions. Which data a language's score comes from is up to
the caller (see `lsn_mech.pipelines.landermt`): translation pairs where the language is
the source or the target (default there), or its monolingual text.

Cost: parameters never get gradients (they are frozen during scoring), and the backward
pass stops at the first selected layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.detect._common import DetectorInputError
from lsn_mech.errors import CorruptFileError, MissingLanguageError
from lsn_mech.files import atomic_save_safetensors, read_safetensors, require_fields, require_file
from lsn_mech.models import runtime
from lsn_mech.models.protocol import HookedModel, model_device, model_id
from lsn_mech.models.sites import hook_sites
from lsn_mech.provenance import Provenance

Reduce = Literal["batch", "example", "token"]
_REDUCTIONS = ("batch", "example", "token")


@contextlib.contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """No parameter requires a gradient inside; the flags are restored on exit."""
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    try:
        for p in parameters:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)


def target_positions(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Deprecated: ``(lsn_mech.models.runtime.target_positions(labels), target_tokens(labels))``.

    The runtime's `~lsn_mech.models.runtime.target_positions` returns the mask alone.
    """
    warnings.warn(
        "lsn_mech.detect.awareness.target_positions is deprecated; use "
        "lsn_mech.models.runtime.target_positions (the mask) and target_tokens (the labels).",
        DeprecationWarning,
        stacklevel=2,
    )
    return runtime.target_positions(labels), runtime.target_tokens(labels)


def target_loss(
    model: HookedModel,
    batch: Mapping[str, Tensor],
    fwd_hooks: Sequence[tuple[str, Any]] = (),
    *,
    logits_chunk: int = 512,
) -> Tensor:
    """Mean cross-entropy over target tokens, logits computed only where a target is.

    `lsn_mech.models.runtime.target_loss` on a hooked model: the forward pass stops at the
    unembedding input and ``fwd_hooks`` run during it. Gradients flow as usual (no
    ``no_grad`` here). A batch without a target token is an error here: it would score
    every neuron 0.
    """
    total, count = runtime.target_nll_sum(model, batch, fwd_hooks, logits_chunk=logits_chunk)
    if count == 0:
        raise DetectorInputError(
            "A batch has no target token (every label is -100): build batches with "
            "lsn_mech.corpora.translation_batches or give labels for the tokens to score."
        )
    return (total / count).float()


def _reduce(product: Tensor, how: str) -> Tensor:
    """``[batch, seq, d_mlp]`` products ``g·h`` → ``[d_mlp]`` awareness of one pass."""
    if how == "batch":
        return product.sum(dim=(0, 1)).abs()
    if how == "example":
        return product.sum(dim=1).abs().sum(dim=0)
    return product.abs().sum(dim=(0, 1))


def batch_awareness(
    model: HookedModel,
    batch: Mapping[str, Tensor],
    layers: Sequence[int],
    *,
    reduce: Reduce = "batch",
    site: str = "mlp_post",
) -> tuple[Float[Tensor, "layer d_mlp"], float]:
    """``Φ`` of every neuron of ``layers`` for one forward/backward pass, and its loss."""
    sites = hook_sites(model)
    outputs: dict[int, Tensor] = {}

    def keep(layer: int) -> Any:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            if not activation.requires_grad:  # the first selected layer: a new leaf
                activation = activation.detach().requires_grad_(True)
            outputs[layer] = activation
            return activation

        return hook

    hooks = [(sites.name(site, layer), keep(layer)) for layer in layers]
    with torch.enable_grad(), frozen_parameters(model):  # type: ignore[arg-type]
        loss = target_loss(model, batch, hooks)
        tensors = [outputs[layer] for layer in layers]
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    scores = []
    for activation, grad in zip(tensors, grads):
        if grad is None:  # a layer that cannot reach the loss
            scores.append(activation.new_zeros(activation.shape[-1]))
        else:
            scores.append(_reduce((grad * activation).detach(), reduce))
    return torch.stack(scores).double(), float(loss.detach())


@dataclasses.dataclass
class Awareness:
    """Average Taylor awareness ``Φ`` per neuron of the selected layers, per language.

    Attributes:
        languages: language order of the last axis.
        layers: the scored (selected) layers, in order; ``scores[i]`` is layer ``layers[i]``.
        scores: ``[len(layers), d_mlp, lang]``, the mean over each language's passes.
        passes: forward/backward passes per language.
        losses: mean loss per language over its passes.
        reduce: granularity (module doc). site: the hook site scored.
    """

    languages: list[str]
    layers: list[int]
    scores: Tensor
    passes: list[int]
    losses: list[float]
    n_layers: int
    reduce: str = "batch"
    site: str = "mlp_post"
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def d_mlp(self) -> int:
        return int(self.scores.shape[1])

    def of(self, language: str) -> Float[Tensor, "layer d_mlp"]:
        """Scores of one language, ``[len(layers), d_mlp]``."""
        if language not in self.languages:
            raise MissingLanguageError(
                f"No awareness for {language!r}; scored languages: {', '.join(self.languages)}."
            )
        return self.scores[..., self.languages.index(language)]

    def full(self) -> Float[Tensor, "n_layers d_mlp lang"]:
        """Scores placed in a ``[n_layers, d_mlp, lang]`` tensor (zeros in unscored layers)."""
        out = self.scores.new_zeros(self.n_layers, self.d_mlp, len(self.languages))
        out[self.layers] = self.scores
        return out

    def layer_means(self) -> dict[str, list[float]]:
        """Mean awareness per scored layer for each language (Fig. 8)."""
        means = self.scores.mean(dim=1)  # [layer, lang]
        return {lang: means[:, i].tolist() for i, lang in enumerate(self.languages)}

    def plot(self) -> Any:
        """Layer-wise average awareness per language (Fig. 8 of the paper)."""
        import plotly.graph_objects as go

        figure = go.Figure()
        for lang, values in self.layer_means().items():
            figure.add_trace(go.Scatter(x=self.layers, y=values, name=lang, mode="lines+markers"))
        figure.update_layout(
            title="Average neuron awareness Φ per layer",
            xaxis_title="layer",
            yaxis_title="mean Φ",
        )
        return figure

    def save(self, path: str | Path) -> Path:
        """``path`` as safetensors (scores) with the rest as JSON metadata (atomic)."""
        target = Path(path)
        if target.suffix != ".safetensors":
            target = target.with_name(target.name + ".safetensors")
        meta = {
            "format": AWARENESS_FORMAT,
            "languages": self.languages,
            "layers": self.layers,
            "passes": self.passes,
            "losses": self.losses,
            "n_layers": self.n_layers,
            "reduce": self.reduce,
            "site": self.site,
            "provenance": self.provenance.to_dict(),
        }
        return atomic_save_safetensors(
            target, {"scores": self.scores}, metadata={"lsn_mech": json.dumps(meta)}
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Awareness:
        """Read an `Awareness` written by `save`; a missing, broken, hand-edited file or one
        of another kind raises `CorruptFileError` naming it."""
        source = Path(path)
        if not source.exists():
            source = source.with_name(source.name + ".safetensors")
        fix = "Compute it again with taylor_awareness and save() it."
        require_file(source, fix=fix)
        meta, tensors = read_safetensors(source, fix=fix, metadata_key="lsn_mech", device=device)
        if meta.pop("format", None) != AWARENESS_FORMAT:
            raise CorruptFileError(
                f"{source} is not an lsn_mech Awareness file; load it with the class that "
                f"wrote it. {fix}"
            )
        require_fields(source, meta, _AWARENESS_FIELDS, fix=fix)
        scores = tensors.get("scores")
        shape = tuple(scores.shape) if scores is not None else None
        expected = (len(meta["layers"]), len(meta["languages"]))
        if scores is None or scores.ndim != 3 or (shape[0], shape[2]) != expected:  # type: ignore[index]
            raise CorruptFileError(
                f"{source} has scores of shape {shape}, which do not fit its "
                f"{expected[0]} layers and {expected[1]} languages; it was damaged or edited "
                f"by hand. {fix}"
            )
        unknown = sorted(set(meta) - set(_AWARENESS_FIELDS) - {"provenance"})
        if unknown:
            raise CorruptFileError(f"{source} has unknown fields {unknown}. {fix}")
        meta["provenance"] = Provenance.from_dict(meta.get("provenance"))
        return cls(scores=scores, **meta)

    # ----- dataframes and display ------------------------------------------------------
    def to_pandas(self, form: str = "wide") -> Any:
        """``form="wide"`` (cheap): one row per scored ``layer``, one column per language
        holding its mean awareness over the layer's neurons (`layer_means`, Fig. 8).
        ``form="long"``: one row per (``language``, ``layer``, ``neuron``) with its
        ``awareness`` (``len(layers) × d_mlp`` rows per language; the wide form is its
        mean per layer and language)."""
        import pandas as pd

        display.check_form(
            form,
            {"wide": "mean per layer", "long": "one row per neuron"},
            "Awareness",
            DetectorInputError,
        )
        if form == "wide":
            return pd.DataFrame(self._layer_rows(), columns=["layer", *self.languages])
        layer = torch.tensor(self.layers, dtype=torch.long).repeat_interleave(self.d_mlp)
        neuron = torch.arange(self.d_mlp).repeat(len(self.layers))
        parts = []
        for i, language in enumerate(self.languages):
            part = pd.DataFrame({"layer": layer.numpy(), "neuron": neuron.numpy()})
            part.insert(0, "language", language)
            part["awareness"] = self.scores[..., i].reshape(-1).double().cpu().numpy()
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    def _layer_rows(self) -> list[list[Any]]:
        """``[layer, mean of each language]`` per scored layer."""
        means = self.layer_means()
        return [
            [layer, *(means[x][i] for x in self.languages)] for i, layer in enumerate(self.layers)
        ]

    def _repr_html_(self) -> str:
        """Notebook view: what was scored on one line, the mean per layer below."""
        summary = (
            f"{display.plural(len(self.languages), 'language')}, layers {self.layers} of "
            f"{self.n_layers} × {self.d_mlp}, site {self.site}, reduce {self.reduce}; passes "
            + display.counts_line(list(zip(self.languages, self.passes)))
        )
        rows = self._layer_rows()
        table = display.Table(
            ["layer", *self.languages],
            rows,
            heat=display.numeric_heat(rows),
            legend="colour: mean awareness Φ of the layer's neurons",
        )
        return display.render(display.title_of("Awareness", self.provenance), summary, table)


AWARENESS_FORMAT = "lsn_mech.Awareness"
_AWARENESS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "languages": list,
    "layers": list,
    "passes": list,
    "losses": list,
    "n_layers": int,
    "reduce": str,
    "site": str,
}


def taylor_awareness(
    model: HookedModel,
    batches_by_language: Mapping[str, Iterable[Mapping[str, Tensor]]],
    layers: Sequence[int],
    *,
    reduce: Reduce = "batch",
    site: str = "mlp_post",
    max_batches: int | None = None,
    progress: bool = True,
) -> Awareness:
    """Average ``Φ`` (Eq. 3–4) of every neuron in ``layers``, per language.

    ``batches_by_language`` yields HF-style dicts (``input_ids``, ``attention_mask``,
    ``labels`` with ``-100`` outside the tokens whose loss counts) for each language.
    """
    if reduce not in _REDUCTIONS:
        raise DetectorInputError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}.")
    if not batches_by_language:
        raise DetectorInputError("Pass batches for at least one language.")
    sites = hook_sites(model)
    layers = sorted({int(layer) for layer in layers})
    if not layers:
        raise DetectorInputError("Pass at least one layer to score (e.g. from select_layers).")
    for layer in layers:
        sites.check_layer(layer)
    device = model_device(model)
    languages = list(batches_by_language)
    totals = torch.zeros(
        len(layers), sites.d_mlp, len(languages), dtype=torch.float64, device=device
    )
    passes = [0] * len(languages)
    losses = [0.0] * len(languages)
    for index, language in enumerate(languages):
        batches = list(batches_by_language[language])
        if max_batches is not None:
            batches = batches[:max_batches]
        for batch in tqdm(batches, desc=f"awareness {language}", disable=not progress):
            scores, loss = batch_awareness(model, batch, layers, reduce=reduce, site=site)
            totals[..., index] += scores
            passes[index] += 1
            losses[index] += loss
        if passes[index] == 0:
            raise DetectorInputError(f"No batch for {language!r}: every language needs data.")
    means = totals / torch.tensor(passes, dtype=torch.float64, device=device)
    provenance = Provenance(
        model_id=model_id(model),
        method="landermt.taylor_awareness",
        parameters={"layers": layers, "reduce": reduce, "site": site, "max_batches": max_batches},
        library_version=__version__,
    )
    return Awareness(
        languages=languages,
        layers=layers,
        scores=means.float(),
        passes=passes,
        losses=[total / n for total, n in zip(losses, passes)],
        n_layers=sites.n_layers,
        reduce=reduce,
        site=site,
        provenance=provenance,
    )
