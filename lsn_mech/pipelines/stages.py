"""The one stage timer of the jobs: each stage is logged when it starts and ends, and its
wall time goes into the report and ``timings.json``, so every job reports its cost the
same way."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from lsn_mech.pipelines.configs import write_config
from lsn_mech.pipelines.validation import prepare_output, validate_config

__all__ = ["StageTimer", "start_job", "timed_stage"]


class StageTimer:
    """Times the stages of one job run: ``with timer("collect statistics"): ...``.

    ``seconds`` maps each finished stage to its wall time (rounded to 10 ms), in the
    order the stages ran.
    """

    def __init__(
        self,
        job: str,
        log: Callable[[str], None] = print,
        seconds: dict[str, float] | None = None,
    ) -> None:
        self.job = job
        self.log = log
        self.seconds: dict[str, float] = {} if seconds is None else seconds

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Log ``[job] stage ...``, run the block, record and log its wall time."""
        self.log(f"[{self.job}] {stage} ...")
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 2)
        self.log(f"[{self.job}] {stage}: {self.seconds[stage]:.1f} s")

    def save(self, output: str | Path) -> Path:
        """Write ``output/timings.json`` (stage → seconds) and return its path."""
        path = Path(output) / "timings.json"
        path.write_text(json.dumps(self.seconds, indent=2))
        return path


def timed_stage(
    seconds: dict[str, float], stage: str, log: Callable[[str], None], job: str
) -> AbstractContextManager[None]:
    """One stage timed into ``seconds`` (the functional spelling of `StageTimer`)."""
    return StageTimer(job, log, seconds)(stage)


def start_job(
    job: str, config: Any, output: str | Path, log: Callable[[str], None] = print
) -> StageTimer:
    """Check ``config``, make ``output``, write its ``config.json`` and return the job's
    stage timer.

    Every job starts this way, so every setting is checked before anything is loaded
    (`lsn_mech.pipelines.validation`) and each report folder holds the config that made
    it before any stage can fail.
    """
    validate_config(config)
    prepare_output(output)
    write_config(config, output)
    return StageTimer(job, log)
