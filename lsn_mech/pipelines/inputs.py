"""What a job loads from its config: the model (by name, device and dtype name) and the
corpus (local files or the embedded Bible). Shared so every job reads these fields the
same way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsn_mech.errors import LsnMechError
from lsn_mech.pipelines.configs import config_to_dict, paths_from_strings
from lsn_mech.pipelines.validation import DTYPES, check_fits_model

if TYPE_CHECKING:
    from lsn_mech.pipelines.stages import StageTimer

__all__ = [
    "DEFAULT_LANGUAGES",
    "DTYPES",
    "CorpusJobConfig",
    "collect_job_stats",
    "load_job_corpus",
    "load_job_inputs",
    "load_job_model",
]

DEFAULT_LANGUAGES = ("en", "fr", "es", "zh", "ja", "vi", "id")


class UnknownDtypeError(LsnMechError, ValueError):
    """A dtype name that is not one of `DTYPES`."""


@dataclasses.dataclass
class CorpusJobConfig:
    """The leading fields of a job that reads one corpus (statistics, perplexity).

    ``languages`` are read from ``text_files`` ({language: path}) when given, else from
    the embedded Bible; the command with ``--text-files`` and no ``--languages`` takes
    every language of the files. A job subclasses this, redeclares ``split`` or
    ``max_tokens`` for its own default (a redeclared field keeps its place, so flags
    and ``config.json`` keep their order) and adds its fields after these.
    """

    model: str = "gemma-3-270m"
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    text_files: dict[str, str] | None = None
    split: str = "train"
    window: int = 512
    batch_size: int = 8
    max_tokens: int = 20_000

    def __post_init__(self) -> None:
        """Accept what Python callers pass loosely: a list of languages, paths as strings."""
        self.languages = tuple(self.languages)
        paths_from_strings(self)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def load_job_model(model: str, *, device: str | None = None, dtype: str | None = None) -> Any:
    """``lm.load_model`` with the dtype given by name (``None``: the device's default)."""
    import torch

    from lsn_mech.models import load_model

    if dtype is not None and dtype not in DTYPES:
        raise UnknownDtypeError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    return load_model(model, device=device, dtype=getattr(torch, dtype) if dtype else None)


def load_job_corpus(languages: Sequence[str], text_files: Mapping[str, str] | None) -> Any:
    """``text_files`` ({language: path}) when given, else the Bible in ``languages``."""
    from lsn_mech.corpora import bible, from_files

    if text_files:
        return from_files(dict(text_files))
    return bible(list(languages))


def load_job_inputs(config: Any, timer: StageTimer) -> tuple[Any, Any]:
    """The model and corpus named by ``config``, each loaded as its own timed stage.

    Reads ``model``, ``device``, ``dtype``, ``languages`` and ``text_files``: the fields
    every corpus-reading job has, so they load the same way and report the same stages.
    """
    with timer("load model"):
        model = load_job_model(config.model, device=config.device, dtype=config.dtype)
        check_fits_model(config, model)  # window, neuron files: before any forward pass
    with timer("load corpus"):
        corpus = load_job_corpus(config.languages, config.text_files)
    return model, corpus


def collect_job_stats(
    model: Any,
    corpus: Any,
    config: Any,
    timer: StageTimer,
    *,
    max_tokens: int,
    output_dir: str | Path,
    progress: bool = True,
    **options: Any,
) -> Any:
    """The timed "collect statistics" stage of a corpus job.

    ``collect_stats`` over ``config.languages`` with its ``batch_size`` and ``window``,
    checkpointed into ``output_dir``; ``options`` go to ``collect_stats`` as they are.
    One call, so the jobs that collect statistics read their configs the same way.
    """
    from lsn_mech.stats import collect_stats

    with timer("collect statistics"):
        return collect_stats(
            model,
            corpus,
            languages=list(config.languages),
            max_tokens_per_language=max_tokens,
            batch_size=config.batch_size,
            window=config.window,
            output_dir=output_dir,
            progress=progress,
            **options,
        )
