"""Activation counts published with the LAPE reference code, as lsn_mech statistics.

The reference code saves, for each language, a ``torch.save``-d dict
``{"n": <int tokens>, "over_zero": LongTensor[layer, d_mlp]}`` (the number of tokens
on which each neuron's gate activation was > 0). These readers turn such files into
probabilities, or into an `ActivationStats` holding only the ``mlp_pre/positive`` counts,
so every detector that needs probabilities runs on statistics not collected here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from lsn_mech.detect._common import DetectorInputError, check_languages
from lsn_mech.errors import MissingFileError, StatisticsMismatchError
from lsn_mech.provenance import Provenance, stable_hash
from lsn_mech.stats.container import ActivationStats
from lsn_mech.stats.positive_counts import PositiveCountAccumulator

__all__ = [
    "PositiveCountAccumulator",  # moved to lsn_mech.stats; importable from here too
    "activation_stats_from_lape",
    "load_lape_activations",
]

PathLike = str | os.PathLike[str]


def _resolve(
    paths_by_language: Mapping[str, PathLike] | Sequence[PathLike],
    languages: Sequence[str] | None,
) -> dict[str, Path]:
    if isinstance(paths_by_language, Mapping):
        paths = {str(k): Path(v) for k, v in paths_by_language.items()}
        if languages is not None:
            missing = [x for x in languages if x not in paths]
            if missing:
                raise DetectorInputError(
                    f"No activation file given for {', '.join(missing)}; the mapping has "
                    f"{', '.join(paths)}."
                )
            paths = {x: paths[x] for x in languages}
        return paths
    if isinstance(paths_by_language, (str, os.PathLike)):
        raise DetectorInputError(
            "Pass several files: {language: path} or a list of paths with languages=[...]."
        )
    listed = [Path(p) for p in paths_by_language]
    if languages is None:
        raise DetectorInputError(
            "A list of activation files carries no language names: pass languages=[...] "
            "(one code per file, in order) or a {language: path} mapping."
        )
    codes = check_languages(languages, len(listed), "list of activation files")
    return dict(zip(codes, listed))


def _read_one(language: str, path: Path) -> tuple[int, Tensor]:
    if not path.exists():
        raise MissingFileError(
            f"No LAPE activation file for {language!r} at {path}; the reference code writes "
            f"one per language (e.g. data/activation.{language}.train.<model>)."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means "not this format"
        raise DetectorInputError(
            f"{path} is not a torch-saved LAPE activation file ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(data, Mapping) or "n" not in data or "over_zero" not in data:
        got = f"keys {list(data)}" if isinstance(data, Mapping) else type(data).__name__
        raise DetectorInputError(
            f"{path} should hold a dict with keys 'n' (token count) and 'over_zero' "
            f"([layer, d_mlp] counts), as the LAPE reference code writes; got {got}."
        )
    n = int(data["n"])
    counts = torch.as_tensor(data["over_zero"])
    if counts.ndim != 2 or counts.is_floating_point() or counts.is_complex():
        raise DetectorInputError(
            f"{path}: 'over_zero' must be an integer [layer, d_mlp] tensor, got "
            f"{counts.dtype} of shape {tuple(counts.shape)}."
        )
    counts = counts.to(torch.int64)
    if n <= 0:
        raise DetectorInputError(f"{path}: token count n={n}; it must be positive.")
    if bool((counts < 0).any()) or bool((counts > n).any()):
        raise DetectorInputError(
            f"{path}: 'over_zero' counts must lie in [0, n={n}], got [{int(counts.min())}, "
            f"{int(counts.max())}]."
        )
    return n, counts


def _read_all(
    paths_by_language: Mapping[str, PathLike] | Sequence[PathLike],
    languages: Sequence[str] | None,
) -> tuple[list[str], Tensor, Tensor, dict[str, Path]]:
    paths = _resolve(paths_by_language, languages)
    if not paths:
        raise DetectorInputError("No activation files given.")
    tokens, counts = [], []
    shape = None
    for language, path in paths.items():
        n, c = _read_one(language, path)
        if shape is not None and tuple(c.shape) != shape:
            raise StatisticsMismatchError(
                f"{path} has shape {tuple(c.shape)} but the other files have {shape}: they "
                f"come from different models. Use files of one model."
            )
        shape = tuple(c.shape)
        tokens.append(n)
        counts.append(c)
    return list(paths), torch.stack(counts, dim=-1), torch.tensor(tokens, dtype=torch.int64), paths


def load_lape_activations(
    paths_by_language: Mapping[str, PathLike] | Sequence[PathLike],
    languages: Sequence[str] | None = None,
) -> tuple[Float[Tensor, "layer d_mlp lang"], Int64[Tensor, " lang"]]:
    """Probabilities ``over_zero / n`` (float64 ``[layer, d_mlp, lang]``) and token counts.

    Args:
        paths_by_language: ``{language: path}`` (order = language order), or a list of
            paths together with ``languages``.
        languages: with a mapping, the languages to read, in this order; with a list,
            the code of each file (required).

    Examples:
        >>> files = {"en": "activation.en.train.llama-7b", "zh": "activation.zh.train.llama-7b"}
        >>> probs, tokens = load_lape_activations(files)  # doctest: +SKIP
        >>> neurons = lape(probs, languages=["en", "zh"])  # doctest: +SKIP
    """
    _, counts, tokens, _ = _read_all(paths_by_language, languages)
    return counts.to(torch.float64) / tokens.to(torch.float64), tokens


def activation_stats_from_lape(
    paths_by_language: Mapping[str, PathLike] | Sequence[PathLike],
    languages: Sequence[str] | None = None,
    *,
    model_id: str | None = None,
) -> ActivationStats:
    """An `ActivationStats` built from LAPE reference activation files.

    It holds ``state["mlp_pre/positive"]`` (the ``over_zero`` counts, ``[layer, d_mlp,
    lang]``) and ``tokens`` (the ``n``), so ``activation_probability("mlp_pre")`` and the
    probability-based detectors (`lape`, `lap`) work; ``mean``/``std`` raise
    `lsn_mech.errors.StatisticsMismatchError` (the files hold no sums). Its accumulator
    is `PositiveCountAccumulator`: it saves, loads and merges with other imported
    statistics (token counts and counts add up), but not with statistics collected with
    the default moments accumulator.
    """
    codes, counts, tokens, paths = _read_all(paths_by_language, languages)
    n_layers, d_mlp, _ = counts.shape
    files = {lang: str(path) for lang, path in paths.items()}
    provenance = Provenance(
        model_id=model_id,
        corpus="lape-activation-files",
        corpus_hash=stable_hash(files, tokens.tolist()),
        method="import:lape_activations",
        parameters={"files": files},
    )
    return ActivationStats(
        languages=codes,
        n_layers=int(n_layers),
        d_mlp=int(d_mlp),
        sites=("mlp_pre",),
        tokens=tokens,
        state={"mlp_pre/positive": counts},
        accumulators=[PositiveCountAccumulator(("mlp_pre",)).config()],
        provenance=provenance,
    )
