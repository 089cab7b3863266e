"""Stage timing shared by the jobs: each stage is logged when it starts and ends, and its
seconds go into the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def timed_stage(
    seconds: dict[str, float], stage: str, log: Callable[[str], None], job: str
) -> Iterator[None]:
    """Log ``[job] stage ...``, run the block, record and log its wall time."""
    log(f"[{job}] {stage} ...")
    start = time.perf_counter()
    yield
    seconds[stage] = round(time.perf_counter() - start, 2)
    log(f"[{job}] {stage}: {seconds[stage]:.1f} s")
