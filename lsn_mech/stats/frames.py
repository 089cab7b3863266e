"""`ActivationStats` as ``pandas`` frames and as a notebook table.

Statistics are ``[layer, d_mlp, lang]`` tensors: 36,864 neurons per language for Gemma 3
270M. The default frame is therefore a summary, one row per (language, site); the
per-neuron forms are built only when asked for, optionally for some layers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lsn_mech import display
from lsn_mech.errors import InvalidSettingError

FORMS = {
    "summary": "one row per language and site",
    "long": "one row per language, layer and neuron",
    "wide": "one row per neuron, one column per language",
}
"""The forms of ``ActivationStats.to_pandas``, each with what its rows are."""
NEURON_STATISTICS = ("probability", "mean", "std")
"""What the per-neuron forms hold: activation probability (needs ``positive`` counts),
mean and standard deviation (need ``sum`` / ``sum_sq``)."""

_NEEDS = {"probability": "positive", "mean": "sum", "std": "sum_sq"}


def _quantities(stats: Any, site: str) -> list[str]:
    prefix = f"{site}/"
    return [key[len(prefix) :] for key in stats.state if key.startswith(prefix)]


def _per_token_mean(stats: Any, site: str, quantity: str) -> list[float]:
    """Per language: the sum over neurons of ``quantity`` / (tokens × neurons); NaN without
    tokens."""
    total = stats.state[f"{site}/{quantity}"].to(torch.float64).sum(dim=(0, 1)).cpu()
    neurons = stats.n_layers * stats.d_mlp
    return [
        float(t) / (int(n) * neurons) if int(n) and neurons else float("nan")
        for t, n in zip(total.tolist(), stats.tokens.tolist())
    ]


def summary_rows(stats: Any) -> tuple[list[str], list[list[Any]]]:
    """One row per (language, site): tokens, shape, the quantities collected and, where
    collected, the mean activation probability and mean activation over all neurons."""
    header = ["language", "site", "tokens", "n_layers", "d_mlp", "quantities"]
    header += ["mean_probability", "mean_activation"]
    rows = []
    for site in stats.sites:
        quantities = _quantities(stats, site)
        nan = [float("nan")] * len(stats.languages)
        probability = _per_token_mean(stats, site, "positive") if "positive" in quantities else nan
        activation = _per_token_mean(stats, site, "sum") if "sum" in quantities else nan
        for i, language in enumerate(stats.languages):
            shape = [int(stats.tokens[i]), stats.n_layers, stats.d_mlp, ", ".join(quantities)]
            rows.append([language, site, *shape, probability[i], activation[i]])
    order = {language: i for i, language in enumerate(stats.languages)}
    rows.sort(key=lambda row: order[row[0]])  # language-major, sites in order (stable)
    return header, rows


def _neuron_values(stats: Any, statistic: str, site: str) -> torch.Tensor:
    """``[layer, d_mlp, lang]`` float64 values of one statistic at ``site``."""
    if statistic not in NEURON_STATISTICS:
        raise InvalidSettingError(
            f"statistic must be one of {', '.join(NEURON_STATISTICS)}, got {statistic!r}."
        )
    if statistic == "probability":
        return stats.activation_probability(site)
    return getattr(stats, statistic)(site).to(torch.float64)


def _default_site(stats: Any, statistic: str | None) -> str:
    """The first site that has what ``statistic`` needs (any site for ``None``)."""
    for site in stats.sites:
        if statistic is None or _NEEDS.get(statistic, "") in _quantities(stats, site):
            return site
    return stats.sites[0]


def _layers(stats: Any, layers: Sequence[int] | None) -> list[int]:
    chosen = list(range(stats.n_layers)) if layers is None else [int(x) for x in layers]
    bad = [x for x in chosen if not 0 <= x < stats.n_layers]
    if bad:
        raise InvalidSettingError(
            f"layers={bad} is out of range: these statistics have layers 0..{stats.n_layers - 1}."
        )
    return chosen


def stats_frame(
    stats: Any,
    form: str = "summary",
    *,
    site: str | None = None,
    statistic: str = "probability",
    layers: Sequence[int] | None = None,
) -> Any:
    """See `ActivationStats.to_pandas`."""
    import pandas as pd

    display.check_form(form, FORMS, "ActivationStats", InvalidSettingError)
    if form == "summary":
        header, rows = summary_rows(stats)
        return pd.DataFrame(rows, columns=header)
    site = site or _default_site(stats, statistic if form == "wide" else None)
    if site not in stats.sites:
        raise InvalidSettingError(
            f"site={site!r} was not collected; these statistics have {', '.join(stats.sites)}."
        )
    chosen = _layers(stats, layers)
    index = torch.tensor(chosen, dtype=torch.long)
    layer_column = index.repeat_interleave(stats.d_mlp).numpy()
    neuron_column = torch.arange(stats.d_mlp).repeat(len(chosen)).numpy()
    if form == "wide":
        values = _neuron_values(stats, statistic, site)[index].reshape(-1, len(stats.languages))
        frame = pd.DataFrame({"layer": layer_column, "neuron": neuron_column})
        for i, language in enumerate(stats.languages):
            frame[language] = values[:, i].cpu().numpy()
        return frame
    present = [s for s in NEURON_STATISTICS if _NEEDS[s] in _quantities(stats, site)]
    parts = []
    for i, language in enumerate(stats.languages):
        part = pd.DataFrame({"layer": layer_column, "neuron": neuron_column})
        part.insert(0, "language", language)
        for name in present:
            part[name] = _neuron_values(stats, name, site)[index][..., i].reshape(-1).cpu().numpy()
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def stats_html(stats: Any) -> str:
    """Languages, shape, sites and tokens on one line; the summary frame below."""
    tokens = [(x, int(n)) for x, n in zip(stats.languages, stats.tokens.tolist())]
    summary = (
        f"{display.plural(len(stats.languages), 'language')}, "
        f"{display.plural(stats.n_layers, 'layer')} × "
        f"{stats.d_mlp} ({stats.n_layers * stats.d_mlp:,} MLP neurons), sites "
        f"{', '.join(stats.sites)}; tokens {display.counts_line(tokens)}"
    )
    header, rows = summary_rows(stats)
    table = display.Table(header, rows, label_columns=2)
    return display.render(display.title_of("ActivationStats", stats.provenance), summary, table)
