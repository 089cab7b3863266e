"""The one stage timer of the jobs: each stage is logged when it starts and ends, and its
wall time goes into the report and ``timings.json``, so every job reports its cost the
same way.

It also owns the job's marker ``job.json``: `start_job` writes it with ``"status":
"running"`` before anything else, and `StageTimer.finish` rewrites it with ``"complete"``
(and the files the run wrote) as the job's last act. A folder whose marker is missing or
says ``running`` comes from a job that was killed or failed; `completed_job` refuses it,
and rerunning the same command into it resumes what can resume (statistics) and redoes
the rest (docs/cli.md, "What resumes").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from lsn_mech.errors import CorruptFileError
from lsn_mech.files import TEMPORARY_SUFFIX, atomic_write_json, read_json, require_file
from lsn_mech.pipelines.configs import write_config
from lsn_mech.pipelines.validation import prepare_output, validate_config

__all__ = ["JOB_FILE", "StageTimer", "completed_job", "start_job", "timed_stage"]

JOB_FILE = "job.json"
"""The marker of a job's output folder: which job, and whether it ran to the end."""


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
        self.started = time.time()

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
        return atomic_write_json(Path(output) / "timings.json", self.seconds)

    def finish(self, output: str | Path) -> Path:
        """The job's last act: write ``timings.json``, then mark ``output`` complete in
        ``job.json`` with the files this run wrote. Returns the marker's path."""
        folder = Path(output)
        self.save(folder)
        written = sorted(
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file()
            and not path.name.endswith(TEMPORARY_SUFFIX)
            and path.name != JOB_FILE
            and path.stat().st_mtime >= self.started - 1.0
        )
        marker = {"job": self.job, "status": "complete", "started": self.started}
        return atomic_write_json(folder / JOB_FILE, {**marker, "files": written})


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
    timer = StageTimer(job, log)
    marker = {"job": job, "status": "running", "started": timer.started}
    atomic_write_json(Path(output) / JOB_FILE, marker)
    write_config(config, output)
    return timer


def completed_job(output: str | Path, job: str | None = None) -> dict[str, Any]:
    """The marker of a finished job's folder (``job``, ``status``, ``files``), or an error.

    Read a report folder through this first: a folder whose job was killed or failed
    midway (marker ``running``), that no job wrote (no marker), or that another job wrote
    raises `CorruptFileError` (`MissingFileError` for no marker) naming the folder and the
    fix, instead of half a report being read as a whole one.
    """
    folder = Path(output)
    rerun = "Run the job again with the same command (statistics resume; the rest is redone)."
    path = require_file(
        folder / JOB_FILE,
        fix=f"{folder} is not the output folder of a finished lsn-mech job. {rerun}",
    )
    marker = read_json(path, fix=rerun)
    status, found = marker.get("status"), marker.get("job")
    if status != "complete":
        raise CorruptFileError(
            f"{folder} holds an unfinished {found or 'lsn-mech'} job (status {status!r}): it "
            f"was killed or failed midway, so its files are incomplete. {rerun}"
        )
    if job is not None and found != job:
        raise CorruptFileError(
            f"{path} says the folder holds a {found!r} job, not {job!r}; pass the output "
            f"folder of a {job} job."
        )
    return marker
