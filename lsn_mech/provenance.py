"""Where a result came from: recorded on every saved object so results stay traceable."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from typing import Any

from lsn_mech._version import __version__


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Model, corpus, method and parameters behind a result, plus the library version.

    Every field is JSON-serialisable so that provenance travels in the JSON side-car
    of a safetensors file.
    """

    model_id: str | None = None
    corpus: str | None = None
    corpus_hash: str | None = None
    method: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    library_version: str = __version__
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, ready for ``json.dumps``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Provenance:
        """Inverse of `to_dict`; unknown keys (from newer versions) are ignored."""
        if not data:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> Provenance:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def stable_hash(*parts: Any) -> str:
    """A short, stable SHA-256 digest of JSON-serialisable parts (for corpus and run ids)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
