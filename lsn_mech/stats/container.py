"""``ActivationStats``: per-language, per-neuron activation statistics with provenance."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from lsn_mech.errors import (
    InvalidSettingError,
    MissingFileError,
    MissingLanguageError,
    StatisticsMismatchError,
    WrongInputError,
)
from lsn_mech.models.limits import check_device
from lsn_mech.provenance import Provenance
from lsn_mech.stats import frames, quantile_state
from lsn_mech.stats.histogram import Histogram, histogram_quantile
from lsn_mech.stats.registry import ACCUMULATOR_TYPES as ACCUMULATOR_TYPES  # its old home
from lsn_mech.stats.registry import build_accumulator as build_accumulator  # its old home
from lsn_mech.stats.stats_file import (
    FORMAT,
    FORMAT_VERSION,
    LOAD_FIX,
    read_stats_file,
    write_stats_file,
)


class SiteValues(dict[str, Tensor]):
    """One statistic of one language, per hook site: ``values["mlp_post"]`` is ``[layer, d_mlp]``.

    Interventions such as `lsn_mech.activate` pick the entry at the neurons' site.
    """


@dataclasses.dataclass
class ActivationStats:
    """Streaming statistics of MLP neurons, per language.

    Tensors in ``state`` have shape ``[layer, d_mlp, lang]`` and are keyed
    ``"{site}/{quantity}"`` (``positive``: count of activations > 0; ``sum``; ``sum_sq``).
    ``tokens[i]`` is the number of token positions counted for ``languages[i]``.
    """

    languages: list[str]
    n_layers: int
    d_mlp: int
    sites: tuple[str, ...]
    tokens: Int64[Tensor, " lang"]
    state: dict[str, Tensor]
    accumulators: list[dict[str, Any]]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    # ----- views -------------------------------------------------------------------
    def __getitem__(self, language: str) -> LanguageStats:
        return LanguageStats(self, self.language_index(language))

    def __contains__(self, language: object) -> bool:
        return language in self.languages

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.languages)

    def __len__(self) -> int:
        return len(self.languages)

    def language_index(self, language: str) -> int:
        """Position of ``language`` in the language axis, or a clear error."""
        try:
            return self.languages.index(language)
        except ValueError:
            raise MissingLanguageError(
                f"Language {language!r} is not in these statistics (they cover "
                f"{', '.join(self.languages)}). Collect statistics for it with "
                f"lsn_mech.collect_stats(model, corpus, languages=[..., {language!r}])."
            ) from None

    def _quantity(self, site: str, quantity: str) -> Tensor:
        key = f"{site}/{quantity}"
        if key not in self.state:
            raise StatisticsMismatchError(
                f"These statistics have no {quantity!r} at site {site!r} (sites collected: "
                f"{', '.join(self.sites)}). Collect with sites=(..., {site!r})."
            )
        return self.state[key]

    def _per_token(self) -> Tensor:
        if bool((self.tokens == 0).any()):
            empty = [lang for lang, n in zip(self.languages, self.tokens.tolist()) if n == 0]
            raise StatisticsMismatchError(
                f"No tokens were counted for {', '.join(empty)}; their statistics are undefined. "
                "Give those languages text or drop them with stats.subset([...])."
            )
        return self.tokens.to(torch.float64)

    def activation_probability(self, site: str = "mlp_pre") -> Float[Tensor, "layer d_mlp lang"]:
        """Fraction of tokens on which each neuron's activation is > 0 (LAPE's ``p``)."""
        counts = self._quantity(site, "positive").to(torch.float64)
        return counts / self._per_token().to(counts.device)

    def mean(self, site: str = "mlp_post") -> Float[Tensor, "layer d_mlp lang"]:
        """Mean activation per neuron and language."""
        return self._quantity(site, "sum") / self._per_token().to(self.tokens.device)

    def variance(self, site: str = "mlp_post") -> Float[Tensor, "layer d_mlp lang"]:
        """Population variance per neuron and language (``E[x²] − E[x]²``, clamped at 0)."""
        tokens = self._per_token()
        mean = self._quantity(site, "sum") / tokens
        return (self._quantity(site, "sum_sq") / tokens - mean.square()).clamp_min(0.0)

    def std(self, site: str = "mlp_post") -> Float[Tensor, "layer d_mlp lang"]:
        """Population standard deviation per neuron and language."""
        return self.variance(site).sqrt()

    def quantile(
        self, q: float | int, site: str = "mlp_post", *, estimate: str = "histogram"
    ) -> Float[Tensor, "layer d_mlp lang"]:
        """Quantile ``q`` per neuron and language (float64; needs a `QuantileAccumulator`,
        or a `BatchQuantileAccumulator` for ``estimate="batch_mean"``; see
        `lsn_mech.stats.percentiles`)."""
        _check_quantile(q)
        if estimate == "histogram":
            return self._histogram_quantile(q, site)[0]
        quantile_state.check_estimate(estimate)
        value = quantile_state.batch_mean_quantile(self.state, q, site)
        self._per_token()  # a language without tokens has no quantiles: say so
        return value

    def quantile_error_bound(
        self, q: float | int, site: str = "mlp_post"
    ) -> Float[Tensor, "layer d_mlp lang"]:
        """Guaranteed bound on ``|quantile(q) − exact quantile|`` per neuron and language.

        The larger width of the (at most two) histogram bins that hold the order statistics
        the quantile interpolates; see `lsn_mech.stats.histogram.histogram_quantile`.
        """
        _check_quantile(q)
        return self._histogram_quantile(q, site)[1]

    def statistic(
        self, name: str, site: str = "mlp_post", *, estimate: str = "histogram"
    ) -> Float[Tensor, "layer d_mlp lang"]:
        """``"mean"``, ``"p5"`` … ``"p95"`` (any ``"p<number>"``) per neuron and language."""
        q = quantile_state.parse_statistic(name)
        if q is None:
            return self.mean(site)
        return self.quantile(q, site, estimate=estimate)

    def histogram(self, site: str) -> Histogram:
        """The `QuantileAccumulator` histogram of ``site``, or an error that names the fix."""
        found = quantile_state.histogram(self.state, site)
        self._per_token()  # a language without tokens has no quantiles: say so
        return found

    def _histogram_quantile(self, q: float | int, site: str) -> tuple[Tensor, Tensor]:
        """`histogram_quantile`, remembered on ``self`` until its counts change.

        Interventions ask for the same percentile once per language and value; recomputing
        it over every neuron, bin and language each time cost seconds on Gemma 3 270M. The
        key holds the counts tensor's version counter, so counts updated in place (a
        callback reading statistics mid-collection) are never served stale.
        """
        counts = self.state.get(f"{site}/hist")
        positive = self.state.get(f"{site}/positive")  # read too: exact counts at 0
        key = (site, float(q), id(counts), getattr(counts, "_version", None), id(positive))
        cache: dict[Any, tuple[Tensor, Tensor]] = self.__dict__.setdefault("_quantile_cache", {})
        if key not in cache:
            cache[key] = histogram_quantile(self.histogram(site), q)
        return cache[key]

    # ----- algebra -----------------------------------------------------------------
    def check_compatible(self, other: ActivationStats) -> None:
        """Raise unless ``other`` describes the same model, sites and accumulators."""
        if not isinstance(other, ActivationStats):
            raise WrongInputError(
                f"Statistics combine only with ActivationStats, got {type(other).__name__}; "
                "pass statistics from lsn_mech.collect_stats or ActivationStats.load."
            )
        mine = (self.n_layers, self.d_mlp, self.sites, self.accumulators)
        theirs = (other.n_layers, other.d_mlp, other.sites, other.accumulators)
        if mine != theirs:
            raise StatisticsMismatchError(
                f"Cannot combine statistics of different shape or kind: {mine} vs {theirs}. "
                "Collect both with the same model, sites and accumulators."
            )
        a, b = self.provenance.model_id, other.provenance.model_id
        if a and b and a != b:
            raise StatisticsMismatchError(
                f"Statistics come from different models ({a!r} vs {b!r}); they cannot be merged."
            )

    def merge(self, other: ActivationStats) -> ActivationStats:
        """Statistics of both token streams together (languages are united by name)."""
        self.check_compatible(other)
        languages = list(self.languages) + [x for x in other.languages if x not in self.languages]
        left, right = self._aligned(languages), other._aligned(languages)
        merged_state: dict[str, Tensor] = {}
        for config in self.accumulators:
            accumulator = build_accumulator(config)
            keys = accumulator.keys()
            part = accumulator.merge(
                {k: left.state[k] for k in keys}, {k: right.state[k] for k in keys}
            )
            merged_state.update(part)
        provenance = self.provenance.replace(
            parameters={**self.provenance.parameters, "merged_with": other.provenance.to_dict()}
        )
        return dataclasses.replace(
            self,
            languages=languages,
            tokens=left.tokens + right.tokens,
            state=merged_state,
            provenance=provenance,
        )

    __add__ = merge

    def _aligned(self, languages: list[str]) -> ActivationStats:
        """The same statistics on a wider language axis, zeros for missing languages."""
        if languages == self.languages:
            return self
        positions = [self.languages.index(x) if x in self.languages else -1 for x in languages]
        present = torch.tensor([p >= 0 for p in positions])
        index = torch.tensor([max(p, 0) for p in positions])
        state = {}
        for key, value in self.state.items():
            picked = value.index_select(-1, index.to(value.device))
            state[key] = picked * present.to(value.device).to(picked.dtype)
        tokens = self.tokens.index_select(0, index.to(self.tokens.device)) * present.to(
            self.tokens.device
        )
        return dataclasses.replace(self, languages=languages, tokens=tokens, state=state)

    def subset(self, languages: Iterable[str]) -> ActivationStats:
        """Statistics of some languages only, in the order given."""
        wanted = list(languages)
        if not wanted:
            raise InvalidSettingError(
                f"subset() needs at least one language; these statistics have "
                f"{', '.join(self.languages)}."
            )
        index = torch.tensor([self.language_index(x) for x in wanted])
        state = {k: v.index_select(-1, index.to(v.device)) for k, v in self.state.items()}
        tokens = self.tokens.index_select(0, index.to(self.tokens.device))
        return dataclasses.replace(self, languages=wanted, tokens=tokens, state=state)

    def to(self, device: str | torch.device) -> ActivationStats:
        """The same statistics with tensors on ``device``."""
        check_device(device)
        state = {k: v.to(device) for k, v in self.state.items()}
        return dataclasses.replace(self, tokens=self.tokens.to(device), state=state)

    def equal(self, other: ActivationStats) -> bool:
        """Exact equality of languages, token counts and every tensor."""
        return (
            self.languages == other.languages
            and self.state.keys() == other.state.keys()
            and torch.equal(self.tokens.cpu(), other.tokens.cpu())
            and all(torch.equal(v.cpu(), other.state[k].cpu()) for k, v in self.state.items())
        )

    # ----- persistence -------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready data."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "languages": self.languages,
            "n_layers": self.n_layers,
            "d_mlp": self.d_mlp,
            "sites": list(self.sites),
            "accumulators": self.accumulators,
            "provenance": self.provenance.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.safetensors``) with the JSON metadata in its header.

        The file is committed atomically with a checksum of its content
        (`lsn_mech.stats.stats_file`), so a crash never leaves half a file and damage is
        noticed when it is loaded.
        """
        return write_stats(self, _with_suffix(path))

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", *, fix: str = LOAD_FIX
    ) -> ActivationStats:
        """Read statistics written by `save`.

        A truncated, damaged, hand-edited or foreign file (a neuron file, say) raises
        `lsn_mech.errors.CorruptFileError` naming the file and ``fix``.
        """
        check_device(device)
        given = Path(path)
        source = given if given.is_file() else _with_suffix(path)
        if not source.is_file():
            raise MissingFileError(
                f"No statistics at {source}. Collect them with `lsn-mech stats` or "
                "lsn_mech.collect_stats(...).save(path)."
            )
        return read_stats(source, device=device, fix=fix)[0]

    def __repr__(self) -> str:
        counts = ", ".join(f"{x}={n:,}" for x, n in zip(self.languages, self.tokens.tolist()))
        return (
            f"ActivationStats(model={self.provenance.model_id!r}, layers={self.n_layers}, "
            f"d_mlp={self.d_mlp}, sites={list(self.sites)}, tokens: {counts})"
        )

    # ----- dataframes and display --------------------------------------------------
    def to_pandas(
        self,
        form: str = "summary",
        *,
        site: str | None = None,
        statistic: str = "probability",
        layers: Sequence[int] | None = None,
    ) -> Any:
        """The statistics as a ``pandas.DataFrame`` (see docs/dataframes.md).

        ``form="summary"`` (cheap): one row per (``language``, ``site``) with
        ``tokens``, ``n_layers``, ``d_mlp``, the ``quantities`` collected there, and the
        ``mean_probability`` / ``mean_activation`` over all neurons (NaN where not
        collected). The per-neuron forms hold ``len(layers) × d_mlp`` rows per language,
        so they are built only on request, optionally for some ``layers``:
        ``form="long"``: one row per (``language``, ``layer``, ``neuron``) with
        ``probability``, ``mean`` and ``std`` at ``site`` (those it collected; default:
        the first site); ``form="wide"``: one row per (``layer``, ``neuron``), one column
        per language holding ``statistic`` (``"probability"``, ``"mean"`` or
        ``"std"``; default site: the first that has it).
        """
        return frames.stats_frame(self, form, site=site, statistic=statistic, layers=layers)

    def _repr_html_(self) -> str:
        """Notebook view: languages, shape, sites and tokens; the summary frame below."""
        return frames.stats_html(self)


def write_stats(
    stats: ActivationStats, path: Path, records: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Commit ``stats`` to ``path`` with extra header ``records`` (a run's position)."""
    tensors = {**stats.state, "tokens": stats.tokens}
    return write_stats_file(path, tensors, stats.metadata(), records)


def read_stats(
    path: Path,
    *,
    device: str | torch.device = "cpu",
    fix: str = LOAD_FIX,
    checksum_required: bool = False,
) -> tuple[ActivationStats, dict[str, str]]:
    """Statistics written by `write_stats`, checked, and the file's raw header."""
    meta, tensors, header = read_stats_file(path, fix=fix, checksum_required=checksum_required)
    tokens = tensors.pop("tokens")
    stats = ActivationStats(
        languages=list(meta["languages"]),
        n_layers=int(meta["n_layers"]),
        d_mlp=int(meta["d_mlp"]),
        sites=tuple(meta["sites"]),
        tokens=tokens.to(device),
        state={key: value.to(device) for key, value in tensors.items()},
        accumulators=list(meta["accumulators"]),
        provenance=Provenance.from_dict(meta["provenance"]),
    )
    return stats, header


@dataclasses.dataclass(frozen=True)
class LanguageStats:
    """The statistics of one language, each as ``[layer, d_mlp]`` tensors."""

    parent: ActivationStats
    index: int

    @property
    def language(self) -> str:
        return self.parent.languages[self.index]

    @property
    def tokens(self) -> int:
        return int(self.parent.tokens[self.index])

    def probability(self, site: str = "mlp_pre") -> Float[Tensor, "layer d_mlp"]:
        """Activation probability of every neuron for this language."""
        return self.parent.activation_probability(site)[..., self.index]

    def _per_site(self, statistic: str) -> SiteValues:
        getter = getattr(self.parent, statistic)
        return SiteValues({site: getter(site)[..., self.index] for site in self.parent.sites})

    @property
    def mean(self) -> SiteValues:
        """Mean activation per site: ``stats["fr"].mean["mlp_post"]`` is ``[layer, d_mlp]``."""
        return self._per_site("mean")

    @property
    def std(self) -> SiteValues:
        """Standard deviation per site."""
        return self._per_site("std")

    def statistic(self, name: str, *, estimate: str = "histogram") -> SiteValues:
        """``"mean"`` or ``"p5"`` … ``"p95"`` at every site that has it, for `lsn_mech.set_to`.

        Each site's value is that site's own statistic; for Mondal et al.'s pre→post
        mismatch use `lsn_mech.stats.statistic_value`.
        """
        q = quantile_state.parse_statistic(name)
        if q is None:
            return self.mean
        sites = quantile_state.quantile_sites(self.parent.sites, self.parent.state, estimate)  # type: ignore[arg-type]
        if not sites:  # raises, naming the accumulator to collect with
            self.parent.quantile(q, self.parent.sites[0], estimate=estimate)
        return SiteValues(
            {s: self.parent.statistic(name, s, estimate=estimate)[..., self.index] for s in sites}
        )

    def percentile(self, p: float | int, *, estimate: str = "histogram") -> SiteValues:
        """Percentile ``p`` (0–100) per site: ``stats["fr"].percentile(90)``."""
        return self.statistic(f"p{format(float(p), 'g')}", estimate=estimate)


def _with_suffix(path: str | Path) -> Path:
    target = Path(path)
    return (
        target
        if target.suffix == ".safetensors"
        else target.with_name(target.name + ".safetensors")
    )


def _check_quantile(q: float | int) -> None:
    """Refuse ``q`` outside [0, 1] (and NaN) before any state is read."""
    if not 0.0 <= q <= 1.0:
        raise InvalidSettingError(f"A quantile must lie in [0, 1], got {q!r} (use 0.9 for P90).")
