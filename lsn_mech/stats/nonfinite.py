"""NaN / inf guard of `collect_stats`: non-finite activations never reach the statistics.

One NaN folded into a sum makes that neuron's mean NaN forever, and a detector then
ranks it silently. Every hooked activation is checked once over the counted positions
(one float32 sum per hook call: NaN and inf survive a sum; the elementwise
``torch.isfinite`` runs only when the sum is not finite). Padding is not checked: some
models write NaN there by design. ``"raise"`` (the default) stops at the
first non-finite value, naming the layer, site and language. ``"count"`` skips every
batch that holds one (the statistics are restored to their state before the batch, so
no layer keeps part of it), counts what was skipped in
``stats.provenance.parameters["nonfinite"]`` and warns once.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, get_args

import torch

from lsn_mech.errors import InvalidSettingError, NonFiniteActivationError

NonFiniteMode = Literal["raise", "count"]
NONFINITE_MODES: tuple[str, ...] = get_args(NonFiniteMode)
REPORT_KEY = "nonfinite"
"""Key of the report in ``stats.provenance.parameters`` (present only when a batch was skipped)."""


class NonFiniteGuard:
    """Checks the activations of one batch before they are folded (see the module docstring)."""

    def __init__(self, mode: str) -> None:
        if mode not in NONFINITE_MODES:
            raise InvalidSettingError(
                f"nonfinite={mode!r} is not a mode; use 'raise' (stop at the first NaN/inf) "
                "or 'count' (skip batches that hold one and report them)."
            )
        self.mode = mode
        self._snapshot: dict[str, torch.Tensor] | None = None
        self._first: dict[str, Any] | None = None
        self._values = 0
        self._warned = False

    def begin(self, state: dict[str, torch.Tensor]) -> None:
        """Start a batch; in ``"count"`` mode remember the state to restore if it is skipped."""
        self._first, self._values = None, 0
        if self.mode == "count":
            self._snapshot = {key: value.clone() for key, value in state.items()}

    def admits(self, site: str, layer: int, language: str, counted: torch.Tensor) -> bool:
        """True if ``counted`` may be folded; raises or marks the batch skipped otherwise."""
        if self._first is None and _all_finite(counted):
            return True
        bad = int((~torch.isfinite(counted)).sum())
        if bad == 0:  # a later layer of a batch already skipped
            return False
        if self.mode == "raise":
            raise NonFiniteActivationError(
                f"The model produced {bad} NaN/inf activation(s) at layer {layer}, site "
                f"{site!r}, on {language!r} text; statistics would be poisoned. Load the model "
                "in float32 (lsn_mech.load_model(..., dtype=torch.float32)) or check its "
                "weights; or pass nonfinite='count' to skip such batches and count them."
            )
        if self._first is None:
            self._first = {"language": language, "site": site, "layer": layer}
        self._values += bad
        return False

    def end(self, stats: Any, tokens: int) -> bool:
        """Finish a batch: True if it was kept; else restore the state and record the skip."""
        if self._first is None:
            return True
        assert self._snapshot is not None
        for key, saved in self._snapshot.items():
            stats.state[key].copy_(saved)
        parameters = dict(stats.provenance.parameters)
        report = dict(parameters.get(REPORT_KEY) or {"batches": 0, "tokens": 0, "values": 0})
        report["batches"] += 1
        report["tokens"] += tokens
        report["values"] += self._values
        report.setdefault("first", self._first)
        parameters[REPORT_KEY] = report
        stats.provenance = stats.provenance.replace(parameters=parameters)
        if not self._warned:
            self._warned = True
            first = self._first
            warnings.warn(
                f"NaN/inf activations at layer {first['layer']}, site {first['site']!r}, on "
                f"{first['language']!r} text: such batches are skipped (nonfinite='count') and "
                f"counted in stats.provenance.parameters[{REPORT_KEY!r}].",
                stacklevel=2,
            )
        return False


def _all_finite(values: torch.Tensor) -> bool:
    """True if no value is NaN or inf: one float32 sum (NaN and inf survive a sum), and
    the elementwise check only when that sum is not finite (it may have overflowed)."""
    if bool(torch.isfinite(values.sum(dtype=torch.float32))):
        return True
    return bool(torch.isfinite(values).all())
