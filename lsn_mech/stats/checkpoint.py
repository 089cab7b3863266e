"""Checkpoints of a statistics run: nothing is lost when a long run stops."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from lsn_mech.errors import StatisticsMismatchError
from lsn_mech.stats.container import ActivationStats

STATE_FILE = "checkpoint.safetensors"
PROGRESS_FILE = "progress.json"
FINAL_FILE = "stats.safetensors"


@dataclasses.dataclass
class Position:
    """Where a run stands: every batch before ``batch`` of language ``language`` is counted."""

    language: int = 0
    batch: int = 0
    finished: bool = False


class Checkpointer:
    """Saves and restores a run's statistics and position in one output folder.

    ``run_key`` identifies the run (model, corpus fingerprint, languages, budgets,
    sites, accumulators); a folder holding another run's checkpoint is refused rather
    than silently mixed.
    """

    def __init__(self, directory: str | Path, run_key: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.run_key = run_key

    @property
    def final_path(self) -> Path:
        return self.directory / FINAL_FILE

    def restore(self, device: torch.device) -> tuple[ActivationStats, Position] | None:
        """The saved statistics and position, or ``None`` when the folder holds no run."""
        progress_file = self.directory / PROGRESS_FILE
        if not progress_file.exists():
            return None
        progress = json.loads(progress_file.read_text())
        if progress.get("run_key") != self.run_key:
            raise StatisticsMismatchError(
                f"{self.directory} holds a checkpoint of a different run "
                f"({_difference(progress.get('run_key', {}), self.run_key)}). Use another "
                "output folder, or delete this one to start over."
            )
        position = Position(**progress["position"])
        source = self.final_path if position.finished else self.directory / STATE_FILE
        return ActivationStats.load(source, device=device), position

    def save(self, stats: ActivationStats, position: Position) -> None:
        """Write statistics first, then the position that points at them (atomic order)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stats.save(self.final_path if position.finished else self.directory / STATE_FILE)
        record = {"run_key": self.run_key, "position": dataclasses.asdict(position)}
        temporary = self.directory / (PROGRESS_FILE + ".tmp")
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True))
        temporary.replace(self.directory / PROGRESS_FILE)
        if position.finished:
            (self.directory / STATE_FILE).unlink(missing_ok=True)


def _difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(set(saved) | set(wanted))
    changed = [
        f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)
    ]
    return "; ".join(changed) or "unknown difference"
