"""The k largest activations of chosen neurons, per language, in bounded memory.

A neuron dashboard shows where a neuron fires hardest. Keeping every activation would grow
with the corpus; `TopActivations` keeps, for each (neuron, language), only the running
top ``k`` with where it happened (window, position) and the context around it (token ids
and this neuron's activations ``context`` tokens either side), so it never needs the
windows again. Each batch is folded in with one ``torch.topk`` over the chosen neurons
and a merge with what is kept: memory is O(neurons × languages × k × context).

The order is total: larger value first, then the earlier window, then the earlier
position. So ties resolve the same way however the corpus is cut into batches, and
merging batches (or two accumulators) in any order gives the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech.errors import InvalidSettingError, WrongInputError
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_device
from lsn_mech.models.runtime import capture
from lsn_mech.models.sites import hook_sites

__all__ = ["TopActivations", "collect_top_activations"]

MISSING = -1
"""Window, position and token id of an empty slot (fewer than ``k`` tokens seen)."""


class TopActivations:
    """Running top-``k`` activations of ``n_neurons`` neurons in each of ``n_languages``.

    Tensors, each ``[neuron, language, k, ...]``, sorted best first within a slot row:

    * ``values``: the activations (``-inf`` in empty slots);
    * ``windows``, ``positions``: where each was seen (``-1`` in empty slots);
    * ``context_ids``: token ids at ``position - context … position + context`` of that
      window (``-1`` outside the window or where the mask was ``False``);
    * ``context_values``: this neuron's activation at those tokens (``nan`` where the id
      is ``-1``).

    ``tokens[language]`` counts the positions read (where the mask was ``True``).
    Non-finite activations never enter (a NaN or ``-inf`` is treated as not seen).
    """

    def __init__(
        self,
        n_neurons: int,
        n_languages: int,
        k: int,
        *,
        context: int = 8,
        device: torch.device | str = "cpu",
    ) -> None:
        check_count("k", k)
        check_count("n_neurons", n_neurons)
        check_count("n_languages", n_languages)
        check_count("context", context, minimum=0)
        self.k = k
        self.context = context
        shape = (n_neurons, n_languages, k)
        width = 2 * context + 1
        self.values = torch.full(shape, -torch.inf, dtype=torch.float32, device=device)
        self.windows = torch.full(shape, MISSING, dtype=torch.int64, device=device)
        self.positions = torch.full(shape, MISSING, dtype=torch.int64, device=device)
        self.context_ids = torch.full((*shape, width), MISSING, dtype=torch.int64, device=device)
        self.context_values = torch.full(
            (*shape, width), torch.nan, dtype=torch.float32, device=device
        )
        self.tokens = torch.zeros(n_languages, dtype=torch.int64)

    @property
    def n_neurons(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_languages(self) -> int:
        return int(self.values.shape[1])

    def update(
        self,
        language: int,
        activations: Float[Tensor, "batch seq neuron"],
        token_ids: Int[Tensor, "batch seq"],
        mask: Bool[Tensor, "batch seq"],
        *,
        first_window: int,
    ) -> None:
        """Fold one batch of ``language`` into the running top-k.

        ``activations[b, s, n]`` is neuron ``n``'s activation at position ``s`` of window
        ``first_window + b``; only positions where ``mask`` is ``True`` can be kept or
        shown as context.
        """
        if activations.ndim != 3 or activations.shape[2] != self.n_neurons:
            raise WrongInputError(
                f"activations must be [batch, seq, {self.n_neurons}], got "
                f"{tuple(activations.shape)}; pass only the chosen neurons' columns."
            )
        if not 0 <= language < self.n_languages:
            raise InvalidSettingError(
                f"language must be in [0, {self.n_languages}), got {language}."
            )
        batch, seq, _ = activations.shape
        device = self.values.device
        values = activations.detach().to(device=device, dtype=torch.float32)
        mask = mask.to(device=device, dtype=torch.bool)
        token_ids = token_ids.to(device=device, dtype=torch.int64)
        flat = values.reshape(batch * seq, -1).T  # [neuron, batch·seq], flat = b·seq + s
        flat = torch.where(mask.reshape(1, -1) & flat.isfinite(), flat, -torch.inf)
        chosen = _top_indices(flat, min(self.k, batch * seq))  # [neuron, k'], best first
        top = flat.gather(1, chosen)
        found = top > -torch.inf
        rows, cols = chosen // seq, chosen % seq
        offsets = torch.arange(-self.context, self.context + 1, device=device)
        around = cols[..., None] + offsets  # [neuron, k', width]
        inside = (around >= 0) & (around < seq)
        clamped = around.clamp(0, seq - 1)
        row_index = rows[..., None].expand_as(clamped)
        visible = inside & mask[row_index, clamped] & found[..., None]
        neuron = torch.arange(self.n_neurons, device=device)[:, None, None].expand_as(clamped)
        ids = torch.where(visible, token_ids[row_index, clamped], MISSING)
        shown = torch.where(visible, values[row_index, clamped, neuron], torch.nan)
        windows = torch.where(found, rows + first_window, MISSING)
        positions = torch.where(found, cols, MISSING)
        self._merge_rows(language, top, windows, positions, ids, shown)
        self.tokens[language] += int(mask.sum())

    def _merge_rows(
        self,
        language: int,
        values: Tensor,
        windows: Tensor,
        positions: Tensor,
        ids: Tensor,
        shown: Tensor,
    ) -> None:
        """Merge candidates ``[neuron, m]`` into the kept slots of one language."""
        merged = _best(
            torch.cat([self.values[:, language], values], dim=1),
            torch.cat([self.windows[:, language], windows], dim=1),
            torch.cat([self.positions[:, language], positions], dim=1),
            self.k,
        )
        all_ids = torch.cat([self.context_ids[:, language], ids], dim=1)
        all_shown = torch.cat([self.context_values[:, language], shown], dim=1)
        expand = merged[..., None].expand(-1, -1, all_ids.shape[2])
        self.values[:, language] = torch.cat([self.values[:, language], values], 1).gather(
            1, merged
        )
        self.windows[:, language] = torch.cat([self.windows[:, language], windows], 1).gather(
            1, merged
        )
        self.positions[:, language] = torch.cat([self.positions[:, language], positions], 1).gather(
            1, merged
        )
        self.context_ids[:, language] = all_ids.gather(1, expand)
        self.context_values[:, language] = all_shown.gather(1, expand)

    def merge(self, other: TopActivations) -> TopActivations:
        """A new accumulator holding the top-k of both (windows as each recorded them)."""
        if (
            not isinstance(other, TopActivations)
            or other.values.shape != self.values.shape
            or other.context != self.context
        ):
            raise InvalidSettingError(
                "Only accumulators of the same neurons, languages, k and context merge."
            )
        result = TopActivations(
            self.n_neurons,
            self.n_languages,
            self.k,
            context=self.context,
            device=self.values.device,
        )
        for source in (self, other):
            for language in range(self.n_languages):
                result._merge_rows(
                    language,
                    source.values[:, language],
                    source.windows[:, language],
                    source.positions[:, language],
                    source.context_ids[:, language],
                    source.context_values[:, language],
                )
            result.tokens += source.tokens
        return result

    def counts(self) -> Int[Tensor, "neuron language"]:
        """How many slots hold an activation (fewer than ``k`` when fewer tokens were seen)."""
        return (self.windows != MISSING).sum(dim=2)

    def entries(self, neuron: int, language: int) -> list[tuple[float, int, int]]:
        """``(value, window, position)`` of the kept activations, best first."""
        n = int(self.counts()[neuron, language])
        return [
            (
                float(self.values[neuron, language, i]),
                int(self.windows[neuron, language, i]),
                int(self.positions[neuron, language, i]),
            )
            for i in range(n)
        ]


def _top_indices(flat: Float[Tensor, "neuron n"], k: int) -> Int[Tensor, "neuron k"]:
    """Indices of each row's ``k`` largest values; among equal values the lower index wins
    (``torch.topk`` alone leaves ties in any order), best first."""
    top = torch.topk(flat, k, dim=1).values
    threshold = top[:, -1:]  # the k-th value of each row
    above = flat > threshold
    tied = flat == threshold
    room = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (tied.cumsum(dim=1) <= room))
    index = keep.nonzero()[:, 1].reshape(flat.shape[0], k)  # ascending index per row
    order = _best(flat.gather(1, index), index, torch.zeros_like(index), k)
    return index.gather(1, order)


def _best(values: Tensor, windows: Tensor, positions: Tensor, k: int) -> Tensor:
    """Column order of each row by (value desc, window asc, position asc), first ``k``.

    Empty slots (``-inf``) sort last, among themselves in any fixed order.
    """
    order = torch.argsort(positions, dim=1, stable=True)
    order = order.gather(1, torch.argsort(windows.gather(1, order), dim=1, stable=True))
    ranked = torch.argsort(values.gather(1, order), dim=1, descending=True, stable=True)
    return order.gather(1, ranked)[:, :k]


def collect_top_activations(
    model: HookedModel,
    corpus: Any,
    layers: Sequence[int],
    indices: Sequence[int],
    *,
    languages: Sequence[str],
    site: str = "mlp_post",
    k: int = 10,
    context: int = 8,
    max_tokens_per_language: int | None = 20_000,
    batch_size: int = 8,
    window: int = 512,
    split: str | None = "train",
    progress: bool = True,
) -> TopActivations:
    """One streaming pass: the top-``k`` activations of neurons ``(layers[i], indices[i])``
    at ``site`` in each language of ``corpus``, with their contexts.

    Windows are built as `collect_stats` builds them (same packing, same counted
    positions: real tokens, not BOS), so window numbers match a statistics run with the
    same ``window`` and budget. The forward pass stops after the last layer with a chosen
    neuron (`lsn_mech.models.runtime.capture`).
    """
    from lsn_mech.corpora.sources import language_windows

    if len(layers) != len(indices) or not layers:
        raise InvalidSettingError(
            "layers and indices must name the same, non-zero number of neurons; got "
            f"{len(layers)} layers and {len(indices)} indices."
        )
    check_window(model, window, texts=corpus)
    check_count("batch_size", batch_size)
    geometry = hook_sites(model)
    device = model_device(model)
    columns: dict[str, tuple[Tensor, Tensor]] = {}  # hook → (its neuron indices, columns)
    layer_tensor = torch.as_tensor(list(layers), dtype=torch.int64)
    index_tensor = torch.as_tensor(list(indices), dtype=torch.int64)
    for layer in sorted(set(layer_tensor.tolist())):
        geometry.check_layer(layer)
        where = (layer_tensor == layer).nonzero().flatten()
        columns[geometry.name(site, layer)] = (index_tensor[where].to(device), where)
    top = TopActivations(len(layers), len(languages), k, context=context, device=device)
    for language_index, language in enumerate(languages):
        windows = language_windows(
            corpus,
            language,
            model.tokenizer,
            split=split,
            window=window,
            max_tokens=max_tokens_per_language,
        )
        bar = tqdm(
            total=windows.n_tokens,
            desc=f"top activations [{language}]",
            unit="tok",
            unit_scale=True,
            disable=not progress,
        )
        try:
            first = 0
            for batch in windows.batches(batch_size):
                batch = batch.to(device)
                gathered = torch.empty(
                    (*batch.input_ids.shape, len(layers)), dtype=torch.float32, device=device
                )

                def keep(name: str, activation: Tensor, into: Tensor = gathered) -> None:
                    neuron_indices, targets = columns[name]
                    into[..., targets.to(into.device)] = activation[..., neuron_indices].float()

                with torch.no_grad():
                    capture(
                        model,
                        batch.input_ids,
                        list(columns),
                        attention_mask=batch.attention_mask,
                        callback=keep,
                    )
                top.update(
                    language_index,
                    gathered,
                    batch.input_ids,
                    batch.stats_mask,
                    first_window=first,
                )
                first += len(batch)
                bar.update(batch.n_tokens)
        finally:
            bar.close()
    return top
