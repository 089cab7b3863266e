"""PV as a registered detector: its selection parameters, run on per-language change rates.

PV's input is not activation statistics but the weights of per-language finetuned
copies of a model. Turning weights into change rates (``pv_change_rates``, with its
``change`` and ``include_bias`` options) is model plumbing and stays in `pv_detector`;
the registered spec is steps 2–4 of the method, on the ``[layer, d_mlp, lang]`` rates::

    rates = detect.pv_change_rates(base_sd, {"en": sd_en, "fr": sd_fr}, model_type="llama")
    detect.run("pv", rates, languages=["en", "fr"]).neurons

`pv`, `pv_from_state_dicts` and `pv_from_rates` (in `pv_detector`) keep their signatures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from jaxtyping import Float
from torch import Tensor

from lsn_mech.detect._common import DetectorInputError, EntropySelection, check_rate
from lsn_mech.detect.pv_detector import Direction, pv_from_rates
from lsn_mech.detect.registry import DetectorSpec, register


@register("pv", label="PV")
@dataclasses.dataclass(frozen=True)
class PvSpec(DetectorSpec):
    """PV's selection parameters (Tang et al. §3.1 (d)); defaults are the paper's."""

    reads_statistics: ClassVar[bool] = False
    reads: ClassVar[str] = (
        "[layer, d_mlp, lang] change rates (lsn_mech.detect.pv_change_rates) with languages="
    )

    top_rate: float = 0.01
    """Share of all neurons selected, lowest entropy first (paper: 1 %)."""
    direction: Direction = "low"
    """``"low"``: specific where the neuron changed *little* while it changed a lot in
    the other languages (paper); ``"high"`` mirrors it."""
    share_threshold: float | None = None
    """Share of the normalised spread a language must exceed for a selected neuron to
    belong to it; ``None``: ``1 / n_languages`` (more than an even share)."""
    min_change: float = 0.0
    """A neuron whose largest rate is ``≤ min_change`` is never selected."""
    neuron_site: str = "mlp_post"
    """Site of the returned neurons."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "top_rate", check_rate("top_rate", self.top_rate, allow_zero=False)
        )
        if self.direction not in ("low", "high"):
            raise DetectorInputError(f"direction must be 'low' or 'high', got {self.direction!r}.")

    def detect(
        self,
        source: Float[Tensor, "layer d_mlp lang"],
        *,
        languages: Sequence[str] | None = None,
        model_id: str | None = None,
    ) -> EntropySelection:
        """Steps 2–4 of PV on change rates; scores are the entropies (``+inf``: ineligible)."""
        if not isinstance(source, Tensor):
            raise DetectorInputError(
                f"pv reads {self.reads}, got {type(source).__name__}; for models or state "
                f"dicts call lsn_mech.detect.pv or pv_from_state_dicts."
            )
        if languages is None:
            raise DetectorInputError(
                "Change rates carry no language names: pass languages=[...], one code per "
                "column of their last axis."
            )
        return pv_from_rates(source, list(languages), **dataclasses.asdict(self), model_id=model_id)
