"""The string forms experiments and the command line use, parsed into specs in one place.

* Table columns and deactivation values (Mondal et al.): ``"none"``, ``"zero"``, a number
  (``"1"``, ``"-10"``, ``"+1"``), ``"mean"``, a percentile ``"p<0…100>"`` (``"p5"``,
  ``"p90"``) — `parse_intervention` / `parse_value`.
* Steering settings (Tang et al., Tables 4 and 5): ``"normal"``, ``"steered"``,
  ``"cross"`` — `steering_specs`.
"""

from __future__ import annotations

import dataclasses
import math

from lsn_mech.interventions.kinds import NoIntervention, SetToStatistic, SetValue
from lsn_mech.interventions.spec import (
    InterventionSpec,
    InterventionSpecError,
    UnknownInterventionError,
)
from lsn_mech.models.sites import Site
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.stats.percentiles import Estimate, parse_statistic

NONE, ZERO = "none", "zero"

_FORMS = "'zero', a number such as '1' or '-10', 'mean', or a percentile such as 'p90'"

STEERING_SETTINGS: tuple[str, ...] = ("normal", "steered", "cross")
"""No intervention; the prompt language's neurons at its mean; the prompt language's
neurons deactivated and the target's at the target's mean."""


def accepted_forms(*, allow_none: bool = True) -> str:
    """The accepted string forms, as error messages list them."""
    return (f"'{NONE}', " if allow_none else "") + _FORMS


@dataclasses.dataclass(frozen=True)
class ParsedValue:
    """One word of the mini-language, before it is given neurons and a language.

    Attributes:
        label: ``"none"``, ``"zero"``, the statistic as written (``"p2.5"``), or the
            number as ``format(x, "g")`` (``"-0.17"``).
        constant: the value written for ``"zero"`` (0.0) and numbers, else ``None``.
        statistic: ``"mean"`` or ``"p<q>"``, else ``None``.
    """

    label: str
    constant: float | None = None
    statistic: str | None = None

    @property
    def is_none(self) -> bool:
        """``"none"``: no intervention."""
        return self.constant is None and self.statistic is None

    def spec(
        self,
        neurons: NeuronSet,
        *,
        language: str | None = None,
        site: Site | None = None,
        read_site: Site | None = None,
        estimate: Estimate = "histogram",
    ) -> InterventionSpec:
        """The spec this word means for ``neurons`` (``language``: whose statistic)."""
        if self.constant is not None:
            return SetValue(neurons, self.constant, site=site)
        if self.statistic is None:
            return NoIntervention(neurons, site=site)
        if language is None:
            raise InterventionSpecError(
                f"{self.label!r} is a statistic of a language; pass language='<code>'."
            )
        return SetToStatistic(
            neurons,
            language=language,
            statistic=self.statistic,
            read_site=read_site,
            estimate=estimate,
            site=site,
        )


def parse_value(value: str | float | int, *, allow_none: bool = True) -> ParsedValue:
    """Read one word of the mini-language (see the module docstring).

    Raises:
        UnknownInterventionError: anything else, or a constant that is not finite; the
            message lists the accepted forms.
    """
    forms = accepted_forms(allow_none=allow_none)
    if isinstance(value, bool):
        raise UnknownInterventionError(f"An intervention cannot be a bool ({value}); use {forms}.")
    if isinstance(value, str):
        if value == NONE and allow_none:
            return ParsedValue(NONE)
        if value == ZERO:
            return ParsedValue(ZERO, constant=0.0)
        try:
            parse_statistic(value)
            return ParsedValue(value, statistic=value)
        except ValueError:
            pass
    try:
        number = float(value)
    except ValueError:
        raise UnknownInterventionError(f"Unknown intervention {value!r}: use {forms}.") from None
    if not math.isfinite(number):
        raise UnknownInterventionError(
            f"A constant intervention must be finite, got {value!r}; use {forms}."
        )
    return ParsedValue(format(number, "g"), constant=number)


def parse_intervention(
    value: str | float | int,
    neurons: NeuronSet,
    *,
    language: str | None = None,
    site: Site | None = None,
    read_site: Site | None = None,
    estimate: Estimate = "histogram",
    allow_none: bool = True,
) -> InterventionSpec:
    """The spec a word means: ``parse_intervention("p90", neurons["vi"], language="vi")``.

    ``"none"`` → `NoIntervention`; ``"zero"`` and numbers → `SetValue`; ``"mean"`` and
    ``"p<q>"`` → `SetToStatistic` of ``language``, read at ``read_site`` (default: the
    site written), written at ``site`` (default: the neurons' site).
    """
    parsed = parse_value(value, allow_none=allow_none)
    return parsed.spec(
        neurons, language=language, site=site, read_site=read_site, estimate=estimate
    )


def steering_specs(
    setting: str,
    language: str,
    *,
    neurons: LanguageNeurons,
    target: str | None = None,
    deactivate_source: bool = True,
) -> list[InterventionSpec]:
    """The specs of one steering setting for prompts in ``language``, in application order.

    ``"normal"``: none. ``"steered"``: ``language``'s neurons at its mean.
    ``"cross"``: ``language``'s neurons set to 0 (unless ``deactivate_source=False``),
    then ``target``'s neurons at the target's mean (where the sets overlap, the target wins).
    """
    if setting == "normal":
        return []
    if setting == "steered":
        return [SetToStatistic(neurons[language], language=language, statistic="mean")]
    if setting == "cross":
        if target is None:
            raise InterventionSpecError("The 'cross' setting needs target='<language>'.")
        specs: list[InterventionSpec] = []
        if deactivate_source:
            specs.append(SetValue(neurons[language], 0.0))
        specs.append(SetToStatistic(neurons[target], language=target, statistic="mean"))
        return specs
    raise UnknownInterventionError(
        f"Unknown steering setting {setting!r}; choose from {', '.join(STEERING_SETTINGS)}."
    )
