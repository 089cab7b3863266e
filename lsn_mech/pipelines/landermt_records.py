"""One saved record per method run of the LANDeRMT job, so ``--resume`` skips finished ones.

A method run (one method, one training seed) writes its translations first and then
``methods/<method>_seed<seed>.json``: its table row and the settings its translations
depend on (`LandermtConfig.result_key`). The record is written last and atomically, so a
run killed midway leaves no record and is redone; a record whose settings differ from
the current config is ignored (the run is redone and the record replaced).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsn_mech.files import atomic_write_json, read_json

RECORDS = "methods"


def record_path(output: str | Path, method: str, seed: int) -> Path:
    return Path(output) / RECORDS / f"{method}_seed{seed}.json"


def save_method_run(
    output: str | Path,
    method: str,
    seed: int,
    config: Any,
    result: Any,
    evaluated: Mapping[str, Any],
    suffix: str = "",
) -> Path:
    """Write the run's translations (``translations/<method><suffix>_<direction>.json``)
    and then its record."""
    output = Path(output)
    files = {}
    for direction, evaluation in evaluated.items():
        path = output / "translations" / f"{method}{suffix}_{direction}.json"
        evaluation.save(path)
        files[direction] = str(path.relative_to(output))
    record = {"key": config.result_key(), "result": result.to_dict(), "translations": files}
    return atomic_write_json(record_path(output, method, seed), record)


def load_method_run(
    output: str | Path, method: str, seed: int, config: Any
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(table row as a dict, {direction: TranslationResult})`` of a finished run with
    the same settings, or ``None`` (no record, other settings, or an unreadable file)."""
    from lsn_mech.errors import LsnMechError
    from lsn_mech.evaluate.translation import TranslationResult

    path = record_path(output, method, seed)
    if not path.is_file():
        return None
    try:
        record = read_json(path, fix="Delete the record to redo the run.")
        if record.get("key") != _plain(config.result_key()):
            return None
        evaluated = {
            direction: TranslationResult.load(Path(output) / file)
            for direction, file in record["translations"].items()
        }
    except (LsnMechError, OSError, KeyError, ValueError):
        return None
    return record["result"], evaluated


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
