"""Checkpoints of a statistics run: nothing is lost and nothing counted twice when a run stops.

Each checkpoint is ONE file committed atomically (`lsn_mech.files`: temporary file in
the same folder, fsync, ``os.replace``): the statistics and the position they stand at
travel together in ``checkpoint.safetensors``, the position and the run key in its
header, all covered by one checksum. A process killed at any instant (SIGKILL, power
loss) therefore leaves either the previous checkpoint or the new one, never statistics
that disagree with their position. The finished run is ``stats.safetensors``, which
carries the same record with ``finished`` set; only once it is committed is the last
checkpoint removed, and a folder holding both is read as finished.

Folders written by lsn_mech before this layout (a ``progress.json`` next to the
checkpoint) are refused, never read: their key does not cover the model's weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from lsn_mech.errors import CorruptFileError, StatisticsMismatchError
from lsn_mech.files import TEMPORARY_SUFFIX, process_alive, require_fields
from lsn_mech.stats.container import ActivationStats, read_stats, write_stats

STATE_FILE = "checkpoint.safetensors"
FINAL_FILE = "stats.safetensors"
OLD_PROGRESS_FILE = "progress.json"
"""The separate position file of lsn_mech before one-file checkpoints; refused."""

RECORD_KEY = "lsn_mech_run"
"""Header key of the run record (format, run key, position) in both files."""
RECORD_FORMAT = "lsn_mech.StatsRun"
RECORD_VERSION = 1


@dataclasses.dataclass
class Position:
    """Where a run stands: every batch before ``batch`` of language ``language`` is counted."""

    language: int = 0
    batch: int = 0
    finished: bool = False


class Checkpointer:
    """Saves and restores a run's statistics and position in one output folder.

    ``run_key`` identifies the run (model id and weights fingerprint, corpus
    fingerprint, languages, budgets, sites, accumulators); a folder holding another
    run's checkpoint is refused rather than silently mixed.
    """

    def __init__(self, directory: str | Path, run_key: dict[str, Any]) -> None:
        self.directory = Path(directory)
        # as it reads back from the header (tuples become lists), so equal keys compare equal
        self.run_key = json.loads(json.dumps(run_key))

    @property
    def final_path(self) -> Path:
        return self.directory / FINAL_FILE

    @property
    def fix(self) -> str:
        """What a user does about a checkpoint that cannot be used."""
        return f"Delete {self.directory} to start over."

    def restore(self, device: torch.device) -> tuple[ActivationStats, Position] | None:
        """The saved statistics and position, or ``None`` when the folder holds no run.

        The finished statistics win over a checkpoint left next to them (a run killed
        between committing one and removing the other).
        """
        self._refuse_old_layout()
        self._remove_abandoned_temporaries()
        if self.final_path.exists():
            restored = self._read(self.final_path, device)
            (self.directory / STATE_FILE).unlink(missing_ok=True)  # killed before tidying
            return restored
        if (self.directory / STATE_FILE).exists():
            return self._read(self.directory / STATE_FILE, device)
        return None

    def save(self, stats: ActivationStats, position: Position) -> None:
        """Commit statistics and position as one file; after the finished statistics are
        committed, remove the checkpoint they replace."""
        record = {
            "format": RECORD_FORMAT,
            "format_version": RECORD_VERSION,
            "run_key": self.run_key,
            "position": dataclasses.asdict(position),
        }
        target = self.final_path if position.finished else self.directory / STATE_FILE
        write_stats(stats, target, {RECORD_KEY: record})
        if position.finished:
            (self.directory / STATE_FILE).unlink(missing_ok=True)

    def batch_out_of_range(self, language: str, batch: int, n_batches: int) -> CorruptFileError:
        """The error for a saved position past the end of a language's batches."""
        return CorruptFileError(
            f"{self.directory / STATE_FILE} says {batch} batches of {language!r} are counted, "
            f"but the corpus gives only {n_batches}. {self.fix}"
        )

    def _read(self, path: Path, device: torch.device) -> tuple[ActivationStats, Position]:
        stats, header = read_stats(path, device=device, fix=self.fix, checksum_required=True)
        record = _parse_record(path, header, self.fix)
        if record["run_key"] != self.run_key:
            raise StatisticsMismatchError(
                f"{self.directory} holds a checkpoint of a different run "
                f"({_difference(record['run_key'], self.run_key)}). Use another "
                "output folder, or delete this one to start over."
            )
        position = Position(**record["position"])
        _check_position(path, position, stats, finished_file=path == self.final_path, fix=self.fix)
        return stats, position

    def _refuse_old_layout(self) -> None:
        if (self.directory / OLD_PROGRESS_FILE).exists():
            raise StatisticsMismatchError(
                f"{self.directory} holds a statistics run written by an earlier lsn_mech "
                f"({OLD_PROGRESS_FILE} next to the statistics), whose checkpoints do not "
                "record the model's weights, so it cannot be resumed safely. Delete "
                f"{self.directory} to start over (a finished run's {FINAL_FILE} still "
                "loads with ActivationStats.load: move it away first to keep it)."
            )

    def _remove_abandoned_temporaries(self) -> None:
        """Delete half-written checkpoints that killed runs left behind (they are never
        read, but each can be as large as the statistics): our ``.partial`` files of
        processes that no longer run, and the ``.tmpXXXXXX`` files safetensors itself
        writes before renaming (nothing else in a run folder writes those)."""
        for name in (STATE_FILE, FINAL_FILE):
            for leftover in self.directory.glob(f".{name}.*{TEMPORARY_SUFFIX}"):
                owner = leftover.name[len(name) + 2 : -len(TEMPORARY_SUFFIX)]
                if owner.isdigit() and not process_alive(int(owner), alive_but_done=True):
                    leftover.unlink(missing_ok=True)
        for leftover in self.directory.glob(".tmp??????"):
            if leftover.is_file() and leftover.name[4:].isalnum():
                leftover.unlink(missing_ok=True)


def _parse_record(path: Path, header: dict[str, str], fix: str) -> dict[str, Any]:
    """The run record in ``header``, checked field by field."""
    if RECORD_KEY not in header:
        raise CorruptFileError(
            f"{path} holds statistics but no run record (saved by ActivationStats.save or "
            f"an earlier lsn_mech, not by this run), so it cannot be resumed. {fix}"
        )
    try:
        record = json.loads(header[RECORD_KEY])
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise CorruptFileError(f"{path} has a damaged run record. {fix}")
    fields = {"format_version": int, "run_key": dict, "position": dict}
    require_fields(path, record, fields, fix=fix)
    if record["format_version"] > RECORD_VERSION:
        raise CorruptFileError(
            f"{path} was written by a newer lsn_mech (run record version "
            f"{record['format_version']}). Upgrade lsn_mech, or {fix[0].lower()}{fix[1:]}"
        )
    places = {"language": int, "batch": int, "finished": bool}
    require_fields(path, record["position"], places, fix=fix)
    if set(record["position"]) != set(places):
        raise CorruptFileError(f"{path} has a position with unknown fields. {fix}")
    return record


def _check_position(
    path: Path, position: Position, stats: ActivationStats, *, finished_file: bool, fix: str
) -> None:
    """Refuse a position that cannot belong to these statistics: out of range, a
    finished flag in the wrong file, or tokens counted for languages not yet reached."""
    n_languages = len(stats.languages)
    problem = None
    if position.finished != finished_file:
        problem = "has a finished flag that does not match its file name"
    elif not 0 <= position.language <= n_languages or position.batch < 0:
        problem = f"has a position outside its {n_languages} languages"
    elif position.language == n_languages and position.batch != 0:
        problem = "has a position past its last language"
    elif position.finished and position.language != n_languages:
        problem = "is marked finished at a position before the end"
    else:
        started = position.language + (1 if position.batch > 0 else 0)
        if bool((stats.tokens[started:] != 0).any()):
            problem = "counts tokens of languages its position has not reached"
    if problem is not None:
        raise CorruptFileError(f"{path} {problem}. {fix}")


def _difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(set(saved) | set(wanted))
    changed = [
        f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)
    ]
    if saved.get("weights_fingerprint") != wanted.get("weights_fingerprint"):
        changed.append("the model's weights changed: was it finetuned, or loaded in another dtype?")
    return "; ".join(changed) or "unknown difference"
