"""`lsn_mech.files`: atomic commits and reads that refuse every broken file by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lsn_mech.errors import CorruptFileError, LsnMechError
from lsn_mech.files import (
    TEMPORARY_SUFFIX,
    WRITE_PROBE_PREFIX,
    atomic_save_safetensors,
    atomic_write,
    atomic_write_json,
    prepare_folder,
    process_alive,
    read_json,
    read_safetensors,
    require_fields,
)

FIX = "Delete the folder to start over."


def test_json_round_trip_and_no_leftovers(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "a" / "x.json", {"b": 1, "a": [1, 2]})
    assert read_json(target, fix=FIX) == {"b": 1, "a": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "x.json", {"old": True})

    def explode(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert json.loads(target.read_text()) == {"old": True}
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))


@pytest.mark.parametrize(
    "content, problem",
    [('{"a": 1', "not valid JSON"), ("[1, 2]", "not a dict"), (b"\xff\xfe", "not valid JSON")],
)
def test_broken_json_is_refused_by_name(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = tmp_path / "p.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(CorruptFileError, match=problem) as info:
        read_json(path, fix=FIX)
    assert str(path) in str(info.value) and FIX in str(info.value)
    assert isinstance(info.value, LsnMechError)


def test_missing_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="does not exist"):
        read_json(tmp_path / "none.json", fix=FIX)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    path = atomic_save_safetensors(tmp_path / "t.safetensors", tensors, {"m": json.dumps({"k": 1})})
    meta, loaded = read_safetensors(path, fix=FIX, metadata_key="m")
    assert meta == {"k": 1}
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])


@pytest.mark.parametrize("keep", [0, 4, 8, 30, -1])
def test_truncated_safetensors_are_refused(tmp_path: Path, keep: int) -> None:
    path = atomic_save_safetensors(
        tmp_path / "t.safetensors", {"a": torch.ones(64)}, {"m": json.dumps({"k": 1})}
    )
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-7])
    with pytest.raises(CorruptFileError, match=str(path)):
        read_safetensors(path, fix=FIX, metadata_key="m")


def test_metadata_of_another_writer_is_refused(tmp_path: Path) -> None:
    path = atomic_save_safetensors(tmp_path / "t.safetensors", {"a": torch.ones(2)}, {"x": "1"})
    with pytest.raises(CorruptFileError, match="no 'm' metadata"):
        read_safetensors(path, fix=FIX, metadata_key="m")
    path = atomic_save_safetensors(tmp_path / "u.safetensors", {"a": torch.ones(2)}, {"m": "{"})
    with pytest.raises(CorruptFileError, match="damaged 'm' metadata"):
        read_safetensors(path, fix=FIX, metadata_key="m")


def test_require_fields_names_the_field(tmp_path: Path) -> None:
    record = {"n": 3, "name": "x", "flag": True}
    require_fields(tmp_path / "f", record, {"n": int, "name": str}, fix=FIX)
    with pytest.raises(CorruptFileError, match="lacks the field 'k'"):
        require_fields(tmp_path / "f", record, {"k": int}, fix=FIX)
    with pytest.raises(CorruptFileError, match="'name' = 'x', which is not a int"):
        require_fields(tmp_path / "f", record, {"name": int}, fix=FIX)
    with pytest.raises(CorruptFileError, match="'flag' = True"):
        require_fields(tmp_path / "f", record, {"flag": int}, fix=FIX)


def test_prepare_folder_removes_probes_of_killed_runs_only(tmp_path: Path) -> None:
    """A run killed between writing its write probe and removing it leaves the probe; the
    next run removes it (a probe of a process that still runs stays)."""
    import os
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid)
    (tmp_path / f"{WRITE_PROBE_PREFIX}{dead.pid}").write_bytes(b"probe")
    live = tmp_path / f"{WRITE_PROBE_PREFIX}{os.getppid()}"
    live.write_bytes(b"probe")
    (tmp_path / "result.json").write_text("{}")
    prepare_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "result.json"])
