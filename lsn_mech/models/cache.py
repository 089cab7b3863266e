"""Where lsn_mech keeps converted models and other reusable artefacts."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LSN_MECH_CACHE"


def cache_dir() -> Path:
    """``$LSN_MECH_CACHE`` if set, else the platform's user cache directory for lsn_mech."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        path = Path(configured).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("lsn_mech"))
    path.mkdir(parents=True, exist_ok=True)
    return path
