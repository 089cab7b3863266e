"""Training runs people can follow: the one owner of TensorBoard and Weights & Biases.

Every finetuning loop (`selective_finetune`, `finetune_classifier`) takes
``report_to="none" | "tensorboard" | "wandb"`` and reports its loss, learning rate and
throughput through a `Tracker` made here. The writing itself is accelerate's
(`accelerate.tracking.TensorBoardTracker` / `WandBTracker`, the trackers
``Accelerator(log_with=...)`` uses): this module only checks up front that the run can
report (package installed, W&B mode or login), names the folders, and keeps ``"none"``
free of any import.

Why the loops are not run through ``accelerate.Accelerator`` is written down in
docs/architecture.md ("Training runs: accelerate's trackers, hand-written loops").
"""

from __future__ import annotations

import importlib
import json
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lsn_mech.errors import InvalidSettingError, MissingDependencyError
from lsn_mech.results import canonical

__all__ = ["REPORT_TO", "Tracker", "check_report_to", "make_tracker", "open_tracker"]

REPORT_TO = ("none", "tensorboard", "wandb")
"""Where a training run can report (``--report-to``)."""

INSTALL = "pip install 'lsn-mech[tracking]'"
WANDB_PROJECT = "lsn-mech"
"""The W&B project runs go to unless ``WANDB_PROJECT`` names another."""

_PACKAGES = {"tensorboard": ("tensorboard", "TensorBoard"), "wandb": ("wandb", "Weights & Biases")}
_OFFLINE_MODES = ("offline", "dryrun", "disabled")

Metrics = Mapping[str, "float | int | str"]


class Tracker:
    """One training run's reporter: `log` scalars at a step, then `finish`.

    ``kind`` is ``"none"`` (nothing is imported or written), ``"tensorboard"`` or
    ``"wandb"``; ``directory`` is where the run's files go (``None`` for ``"none"``). Use
    it as a context manager, or call `finish` yourself: a run handed to a training loop
    as ``report_to=tracker`` is left open, so the caller can add evaluation metrics.
    """

    def __init__(self, kind: str, backend: Any = None, directory: Path | None = None) -> None:
        self.kind = kind
        self.directory = directory
        self._backend = backend
        self._finished = False

    def log(self, metrics: Metrics, step: int) -> None:
        """Report ``metrics`` (numbers; a string becomes text) at optimiser step ``step``."""
        if self._backend is not None and not self._finished:
            self._backend.log(dict(metrics), step=int(step))

    def finish(self) -> None:
        """Close the run (flush TensorBoard's events, end the W&B run); idempotent."""
        if self._backend is not None and not self._finished:
            self._finished = True
            self._backend.finish()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def __repr__(self) -> str:
        where = f", directory={str(self.directory)!r}" if self.directory is not None else ""
        return f"Tracker({self.kind!r}{where})"


def check_report_to(report_to: str, *, argument: str = "report_to") -> None:
    """Refuse a run that could not report, before any training starts.

    Raises `InvalidSettingError` for an unknown name or for W&B online without a login,
    and `MissingDependencyError` when the reporter's package is not installed; each
    message names ``argument`` (``--report-to`` for a job) and the fix.
    """
    if report_to not in REPORT_TO:
        raise InvalidSettingError(
            f"{argument} must be one of {', '.join(REPORT_TO)}, got {report_to!r}."
        )
    if report_to == "none":
        return
    module, label = _PACKAGES[report_to]
    for needed in (module, "accelerate"):
        try:
            importlib.import_module(needed)
        except ImportError:
            raise MissingDependencyError(
                f"{argument} {report_to} needs the package '{needed}' ({label} reporting), "
                f"which is not installed; install it with: {INSTALL} (or pass {argument} none)."
            ) from None
    if report_to == "wandb":
        _check_wandb_login(argument)


def _check_wandb_login(argument: str) -> None:
    """W&B online needs an API key; without one ``wandb.init`` would prompt or fail late."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in _OFFLINE_MODES or os.environ.get("WANDB_API_KEY"):
        return
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or _netrc_has_wandb_login():
        return
    raise InvalidSettingError(
        f"{argument} wandb found no W&B login: set WANDB_API_KEY (or run `wandb login`), or "
        f"set WANDB_MODE=offline to write the run locally and `wandb sync` it later."
    )


def _netrc_has_wandb_login() -> bool:
    """Whether the netrc file (``NETRC`` or ``~/.netrc``) holds a login for the W&B host."""
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return host is not None and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def make_tracker(
    report_to: str,
    run_dir: str | os.PathLike[str] = "runs",
    run_name: str = "train",
    config: Mapping[str, Any] | None = None,
) -> Tracker:
    """A started `Tracker` for one training run.

    Args:
        report_to: ``"none"`` (a no-op), ``"tensorboard"`` or ``"wandb"``.
        run_dir: the folder of a job's runs. TensorBoard writes ``run_dir/run_name/``
            (open it with ``tensorboard --logdir run_dir``); W&B writes
            ``run_dir/wandb/`` unless ``WANDB_DIR`` names another folder.
        run_name: the run's name (one folder / W&B run per trained model).
        config: the run's settings, stored with it (TensorBoard: as text; W&B: the
            run's config).

    W&B follows its own environment: ``WANDB_MODE=offline`` writes the run locally
    (``wandb sync`` uploads it later), ``WANDB_MODE=disabled`` writes nothing,
    ``WANDB_PROJECT`` picks the project (default ``lsn-mech``).
    """
    check_report_to(report_to)
    if report_to == "none":
        return Tracker("none")
    from accelerate.state import PartialState

    PartialState()  # accelerate's trackers log through its process state (one process here)
    settings = canonical(config or {})
    directory = Path(run_dir)
    if report_to == "tensorboard":
        from accelerate.tracking import TensorBoardTracker

        backend: Any = TensorBoardTracker(run_name, directory)
        backend.start()
        backend.log({"config": "```json\n" + json.dumps(settings, indent=1) + "\n```"}, step=0)
        return Tracker("tensorboard", backend, directory / run_name)
    from accelerate.tracking import WandBTracker

    wandb_dir = os.environ.get("WANDB_DIR") or None
    if wandb_dir is None:
        directory.mkdir(parents=True, exist_ok=True)
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    backend = WandBTracker(
        os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
        name=run_name,
        dir=str(wandb_dir or directory),
        config=settings,
        reinit="create_new",  # one process trains several models (one run each)
        # read now: wandb caches its settings once per process
        **({"mode": mode} if mode else {}),
    )
    backend.start()
    return Tracker("wandb", backend, Path(wandb_dir or directory) / "wandb")


def open_tracker(
    report_to: str | Tracker,
    run_dir: str | os.PathLike[str] = "runs",
    run_name: str = "train",
    config: Mapping[str, Any] | None = None,
) -> tuple[Tracker, bool]:
    """The tracker a training loop reports to, and whether the loop must finish it.

    A `Tracker` passed in is the caller's (left open); a name makes a new one.
    """
    if isinstance(report_to, Tracker):
        return report_to, False
    return make_tracker(report_to, run_dir, run_name, config), True
