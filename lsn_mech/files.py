"""The one owner of writing and reading lsn_mech's files safely.

Writes are atomic commits: the content goes to a temporary file in the same folder, is
flushed and fsynced, then moved into place with ``os.replace`` (and the folder entry is
fsynced), so a process killed at any instant leaves either the old file or the new one,
never a truncated mix. Reads turn every way a file can be broken (missing, truncated,
not JSON, not safetensors, of another kind, edited by hand) into a `CorruptFileError`
that names the file and the fix, never a raw ``JSONDecodeError`` or ``SafetensorError``.

Every module that saves or loads a file calls these functions; none calls
``os.replace``, ``json.loads`` on a file or ``safe_open`` on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from lsn_mech.errors import CorruptFileError, MissingFileError, OutputFolderError

TEMPORARY_SUFFIX = ".partial"
"""Suffix of files being written; a killed process may leave one, and nothing reads them."""


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def temporary_path(target: Path) -> Path:
    """Where ``target`` is written before it is committed: same folder, unique to the process."""
    return target.with_name(f".{target.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Commit a file atomically: ``write(temporary)`` fills it, then fsync and rename.

    ``write`` receives the temporary path and may write it any way (``save_file``,
    ``Path.write_text``); if it raises, the temporary file is removed and ``path`` is
    untouched. Returns ``path``.
    """
    target = Path(path)
    make_folder(target.parent)
    temporary = temporary_path(target)
    try:
        try:
            write(temporary)
        except (PermissionError, IsADirectoryError, NotADirectoryError) as error:
            raise OutputFolderError(
                f"{target} cannot be written ({error.strerror or error}); "
                "save to a folder you can write to."
            ) from None
        with open(temporary, "rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Commit a UTF-8 text file atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 2) -> Path:
    """Commit ``value`` as a JSON file atomically (keys in the order given)."""
    return atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def atomic_save_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Commit a safetensors file atomically (tensors moved to the CPU, made contiguous)."""
    from safetensors.torch import save_file

    plain = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    return atomic_write(
        path, lambda temporary: save_file(plain, str(temporary), metadata=dict(metadata or {}))
    )


def _refuse(path: Path, problem: str, fix: str) -> CorruptFileError:
    return CorruptFileError(f"{path} {problem}. {fix}")


def read_json(path: str | os.PathLike[str], *, fix: str, kind: type = dict) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (a dict by default).

    ``fix`` is the sentence telling the user what to do when the file is missing,
    unreadable or not JSON of that kind (e.g. "Delete OUTPUT/stats to start over.").
    """
    source = Path(path)
    if not source.is_file():
        raise _refuse(source, "does not exist or is not a file", fix)
    try:
        value = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(source, f"is not valid JSON (truncated or edited? {exc})", fix) from None
    except OSError as exc:
        raise _refuse(source, f"cannot be read ({exc.strerror or exc})", fix) from None
    if not isinstance(value, kind):
        raise _refuse(source, f"holds a JSON {type(value).__name__}, not a {kind.__name__}", fix)
    return value


@contextlib.contextmanager
def open_safetensors(
    path: str | os.PathLike[str], *, fix: str, device: str | torch.device = "cpu"
) -> Iterator[Any]:
    """``safe_open`` on ``path``, refusing a missing, truncated or non-safetensors file.

    Errors raised while reading tensors inside the ``with`` block (a file cut short after
    its header) are refused the same way.
    """
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise _refuse(source, "does not exist or is not a file", fix)
    broken = (SafetensorError, OSError, RuntimeError, ValueError, EOFError)
    try:
        handle_context = safe_open(str(source), framework="pt", device=str(device))
        handle = handle_context.__enter__()
    except broken as exc:
        raise _refuse(source, f"is not a readable safetensors file ({exc})", fix) from None
    try:
        yield handle
    except broken as exc:
        if isinstance(exc, CorruptFileError):
            raise
        raise _refuse(source, f"is damaged: reading it failed ({exc})", fix) from None
    finally:
        with contextlib.suppress(Exception):
            handle_context.__exit__(None, None, None)


def read_safetensors(
    path: str | os.PathLike[str],
    *,
    fix: str,
    metadata_key: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a safetensors file, every tensor read.

    With ``metadata_key`` the header must carry that key holding a JSON object, which is
    returned parsed as the metadata (the convention of every lsn_mech file); without it
    the raw string metadata is returned.
    """
    source = Path(path)
    with open_safetensors(source, fix=fix, device=device) as handle:
        raw = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if metadata_key is None:
        return dict(raw), tensors
    return parse_metadata(source, raw, metadata_key, fix=fix), tensors


def parse_metadata(path: Path, raw: Mapping[str, str], key: str, *, fix: str) -> dict[str, Any]:
    """The JSON object stored under ``key`` in a safetensors header, or a refusal."""
    if key not in raw:
        raise _refuse(path, f"has no {key!r} metadata, so lsn_mech did not write it", fix)
    try:
        value = json.loads(raw[key])
    except json.JSONDecodeError as exc:
        raise _refuse(path, f"has damaged {key!r} metadata ({exc})", fix) from None
    if not isinstance(value, dict):
        raise _refuse(path, f"has {key!r} metadata that is not a JSON object", fix)
    return value


def require_fields(
    path: str | os.PathLike[str],
    record: Mapping[str, Any],
    fields: Mapping[str, type | tuple[type, ...]],
    *,
    fix: str,
) -> None:
    """Refuse a record (parsed metadata or JSON) that lacks a field or has one of the wrong
    type, e.g. after a hand edit; ``fields`` maps each name to its type(s)."""
    for name, expected in fields.items():
        if name not in record:
            raise _refuse(Path(path), f"lacks the field {name!r}", fix)
        value = record[name]
        if not isinstance(value, expected) or (
            isinstance(value, bool) and expected in (int, float)
        ):
            wanted = (
                expected.__name__
                if isinstance(expected, type)
                else "/".join(t.__name__ for t in expected)
            )
            raise _refuse(Path(path), f"has {name!r} = {value!r}, which is not a {wanted}", fix)


def require_file(path: str | os.PathLike[str], *, fix: str) -> Path:
    """``path`` if it is a file; otherwise a `MissingFileError` (a `CorruptFileError` and
    a ``FileNotFoundError``) naming it and ``fix``, raised before any reader can fail
    with a raw ``FileNotFoundError``."""
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(f"{source} does not exist or is not a file. {fix}")
    return source


# ----- checksummed safetensors (added for crash-safe statistics; issue 12) ------------

CHECKSUM_KEY = "lsn_mech_checksum"
"""Header key of the checksum `save_checked_safetensors` writes and `verify_checksum` reads."""


def content_checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """CRC-32 of every header entry (but the checksum) and every tensor's name, dtype,
    shape and bytes: safetensors itself notices a torn file but not a flipped byte in
    the tensor data, nor a hand edit of the header that stays valid JSON."""
    import zlib

    crc = 0
    for key in sorted(k for k in metadata if k != CHECKSUM_KEY):
        crc = zlib.crc32(f"{key}\x00{metadata[key]}\x00".encode(), crc)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        crc = zlib.crc32(f"{name}\x00{tensor.dtype}\x00{tuple(tensor.shape)}\x00".encode(), crc)
        crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"crc32:{crc:08x}"


def save_checked_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
) -> Path:
    """`atomic_save_safetensors` with a `content_checksum` in the header."""
    plain = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    header = {key: value for key, value in metadata.items() if key != CHECKSUM_KEY}
    header[CHECKSUM_KEY] = content_checksum(plain, header)
    return atomic_save_safetensors(path, plain, header)


def verify_checksum(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    *,
    fix: str,
    required: bool = True,
) -> None:
    """Refuse a file whose content no longer matches the checksum it was written with
    (damaged on disk or edited by hand). Without a checksum the file is refused when
    ``required``, else accepted (files written before checksums existed)."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        if required:
            raise _refuse(Path(path), "has no checksum, so lsn_mech did not write it", fix)
        return
    if stored != content_checksum(tensors, metadata):
        raise _refuse(
            Path(path), "does not match its checksum (damaged on disk or edited by hand)", fix
        )


def make_folder(folder: str | os.PathLike[str], *, argument: str | None = None) -> Path:
    """Create ``folder`` (and its parents), or raise `OutputFolderError` naming it (and
    ``argument``, the setting that chose it) instead of a raw ``FileExistsError``."""
    path = Path(folder)
    named = f"{argument} {path}" if argument else str(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{named} is a file, not a folder; pass a folder path.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputFolderError(
            f"{named} cannot be created ({error.strerror or error}); "
            "pass a folder you can write to."
        ) from None
    return path


WRITE_PROBE_PREFIX = ".lsn_mech_write_probe_"
"""The name of `prepare_folder`'s probe file, before the pid of the process writing it."""


def process_alive(pid: int, *, alive_but_done: bool = False) -> bool:
    """Whether process ``pid`` runs (always assumed where that cannot be asked safely):
    a file named after a process that no longer runs was left by a killed run.

    With ``alive_but_done`` this process counts as not running: while it restores, it
    is writing nothing, so its own leftovers are abandoned too."""
    if alive_but_done and pid == os.getpid():
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def prepare_folder(folder: str | os.PathLike[str], *, argument: str | None = None) -> Path:
    """`make_folder`, then prove it writable (a probe file written and removed): results
    need a home before the work that makes them starts. Probes of processes killed
    between writing and removing theirs are removed first."""
    path = make_folder(folder, argument=argument)
    named = f"{argument} {path}" if argument else str(path)
    for leftover in path.glob(WRITE_PROBE_PREFIX + "*"):
        owner = leftover.name[len(WRITE_PROBE_PREFIX) :]
        if owner.isdigit() and not process_alive(int(owner)):
            leftover.unlink(missing_ok=True)
    probe = path / f"{WRITE_PROBE_PREFIX}{os.getpid()}"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        raise OutputFolderError(
            f"{named} cannot be written ({error.strerror or error}); "
            "pass a folder you can write to."
        ) from None
    return path


# ----- whole-file digests (added for shared neuron folders; issue 13) -------------------


def file_sha256(path: str | os.PathLike[str], *, fix: str) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read in blocks: a folder that travels (the hub,
    a copy) records it beside the file, and a reader compares before trusting the file."""
    import hashlib

    source = Path(path)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise _refuse(source, f"cannot be read ({exc.strerror or exc})", fix) from None
    return f"sha256:{digest.hexdigest()}"
