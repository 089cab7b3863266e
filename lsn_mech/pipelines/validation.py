"""Every job's settings checked before its first forward pass, so no long run dies at
the end on a value it could have refused at the start.

One table, `FIELD_RULES`, says what each config field must be, by field name: a field
means the same in every job (``batch_size`` is a count wherever it appears), so a new
job gets its checks by naming its fields as the others do. Three phases, each one line
in the shared job start:

1. `validate_config` (in `start_job`, before anything is written or loaded): each field
   against its rule, the device, and the languages against the corpus;
2. `prepare_output` (in `start_job`): the output folder is created and a probe file is
   written into it and removed;
3. `check_fits_model` (right after the model is loaded, before any forward pass): the
   window and example lengths fit the model's context, neuron files fit its shape.

Every refusal is one line naming the flag to change (``--top-rate``, ``--window``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lsn_mech.errors import (
    InvalidSettingError,
    LsnMechError,
    MissingLanguageError,
    NeuronShapeMismatchError,
)
from lsn_mech.files import prepare_folder
from lsn_mech.pipelines.configs import field_types, split_optional

__all__ = [
    "DTYPES",
    "FIELD_RULES",
    "MODEL_RULES",
    "UNCHECKED_FIELDS",
    "Rule",
    "check_fits_model",
    "fitted_window",
    "flag",
    "prepare_output",
    "validate_config",
]

DTYPES = ("float32", "bfloat16", "float16")
"""The dtype names a job accepts (``None``: the device's default)."""


def flag(field: str) -> str:
    """The command-line flag of a config field: ``top_rate`` → ``--top-rate``."""
    return "--" + field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field's value must be: ``accepts(value)`` decides, ``must`` says it in
    words for the message (``"an integer of at least 1"``)."""

    must: str
    accepts: Callable[[Any], bool]

    def problem(self, field: str, value: Any) -> str | None:
        """The one-line refusal of ``value`` for ``field``, or ``None`` when it is fine."""
        try:
            fine = self.accepts(value)
        except (TypeError, ValueError, LsnMechError):
            fine = False
        return None if fine else f"{flag(field)} must be {self.must}, got {value!r}."


# ----- rule builders ----------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def count(minimum: int = 1) -> Rule:
    """An integer of at least ``minimum`` (sizes, budgets, steps)."""
    return Rule(f"an integer of at least {minimum}", lambda v: _is_int(v) and v >= minimum)


def positive() -> Rule:
    """A finite number above 0 (learning rates, epochs, LoRA alpha)."""
    return Rule("a finite number above 0", lambda v: _is_number(v) and v > 0)


def non_negative() -> Rule:
    """A finite number of at least 0 (weight decay)."""
    return Rule("a finite number of at least 0", lambda v: _is_number(v) and v >= 0)


def rate() -> Rule:
    """A fraction in (0, 1]: a share of neurons that must select something."""
    return Rule("a fraction in (0, 1], e.g. 0.01 for 1 %", lambda v: _is_number(v) and 0 < v <= 1)


def fraction() -> Rule:
    """A fraction in [0, 1] (quantile levels, shares that may be zero)."""
    return Rule("a fraction in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)


def seed() -> Rule:
    """A seed every random generator we use accepts (NumPy's refuses negatives)."""
    return Rule("an integer in [0, 2**63)", lambda v: _is_int(v) and 0 <= v < 2**63)


def seed_list() -> Rule:
    """Training seeds, each once (empty: the job's single ``seed``)."""
    return Rule(
        "integers in [0, 2**63), each once, e.g. 0 1 2",
        lambda v: all(seed().accepts(s) for s in v) and len(set(v)) == len(v),
    )


def level() -> Rule:
    """A confidence level strictly between 0 and 1."""
    return Rule("a number in (0, 1), e.g. 0.95", lambda v: _is_number(v) and 0 < v < 1)


def choice(*allowed: Any) -> Rule:
    """One of ``allowed``."""
    return Rule(f"one of {', '.join(map(str, allowed))}", lambda v: v in allowed)


def subset(allowed: Callable[[], tuple[str, ...]], *, empty: bool) -> Rule:
    """Names from ``allowed()`` (read when checked, so importing the library waits),
    each once; ``empty`` says whether none at all is fine."""

    def accepts(values: Any) -> bool:
        names = tuple(values)
        return (
            (empty or bool(names))
            and len(set(names)) == len(names)
            and all(n in allowed() for n in names)
        )

    return Rule(
        ("" if empty else "at least one of ") + "the names listed by --help, each once",
        accepts,
    )


LANGUAGE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9]+)*$")
"""A language code as corpora name them: ``en``, ``zh``, ``pt_BR``, ``zh-Hant``."""


def language() -> Rule:
    """One language code."""
    return Rule(
        "a language code such as en", lambda v: isinstance(v, str) and bool(LANGUAGE_CODE.match(v))
    )


def languages(*, empty: bool = False) -> Rule:
    """Language codes, each once (an empty list only where ``empty``)."""

    def accepts(values: Any) -> bool:
        codes = tuple(values)
        well_formed = all(isinstance(c, str) and LANGUAGE_CODE.match(c) for c in codes)
        return (empty or bool(codes)) and well_formed and len(set(codes)) == len(codes)

    what = "language codes such as en,fr, each once"
    return Rule(what if empty else "one or more " + what, accepts)


def directions() -> Rule:
    """``src-tgt`` pairs of two different language codes, each once."""

    def accepts(values: Any) -> bool:
        pairs = tuple(values)
        if not pairs or len(set(pairs)) != len(pairs):
            return False
        for pair in pairs:
            parts = pair.split("-")
            if len(parts) != 2 or parts[0] == parts[1]:
                return False
            if not all(LANGUAGE_CODE.match(p) for p in parts):
                return False
        return True

    return Rule("one or more directions src-tgt such as en-fr, each once", accepts)


def intervention_values(*, allow_none: bool) -> Rule:
    """Words of the intervention mini-language (``zero``, ``mean``, ``p90``, ``-1``)."""

    def accepts(values: Any) -> bool:
        from lsn_mech.interventions.parse import parse_value

        names = tuple(values)
        for name in names:
            parse_value(name, allow_none=allow_none)
        return bool(names) and len(set(names)) == len(names)

    forms = "none, " if allow_none else ""
    return Rule(f"values such as {forms}zero, mean, p10 or -1, each once", accepts)


def car_formula() -> Rule:
    """``paper``, ``swapped`` or a constant CAR in [0, 1]."""

    def accepts(value: Any) -> bool:
        if value in ("paper", "swapped"):
            return True
        number = float(value)
        return math.isfinite(number) and 0 <= number <= 1

    return Rule("paper, swapped or a number in [0, 1]", accepts)


def existing_file(suffix: str = "") -> Rule:
    """A path to a file that exists (``suffix`` may be left off, as the loaders allow)."""

    def accepts(value: Any) -> bool:
        path = Path(value)
        return path.is_file() or (bool(suffix) and Path(f"{path}{suffix}").is_file())

    return Rule("an existing file", accepts)


def text_files() -> Rule:
    """``{language: path}`` with well-formed codes and files that exist."""

    def accepts(value: Any) -> bool:
        return (
            isinstance(value, Mapping)
            and bool(value)
            and all(isinstance(k, str) and LANGUAGE_CODE.match(k) for k in value)
            and all(Path(p).is_file() for p in value.values())
        )

    return Rule("LANG=PATH items naming files that exist", accepts)


def text_template() -> Rule:
    """A frame around a row's text: a string holding ``{text}`` once, and no other field."""

    def accepts(value: Any) -> bool:
        if not isinstance(value, str) or value.count("{text}") != 1:
            return False
        try:
            value.format(text="")
        except (KeyError, IndexError, ValueError):
            return False
        return True

    return Rule("a string holding {text} once (e.g. '{text}\\nGenre:')", accepts)


def _label_sets() -> tuple[str, ...]:
    from lsn_mech.corpora.genre import BIBLE_LABEL_SETS

    return tuple(BIBLE_LABEL_SETS)


def non_empty_text() -> Rule:
    return Rule("a non-empty name", lambda v: isinstance(v, str) and bool(v.strip()))


def _methods() -> tuple[str, ...]:
    from lsn_mech.pipelines.landermt_methods import ALL_METHODS

    return ALL_METHODS


def _attributions() -> tuple[str, ...]:
    import typing

    from lsn_mech.detect.layer_selection import Attribution

    return typing.get_args(Attribution)


def _reductions() -> tuple[str, ...]:
    import typing

    from lsn_mech.detect.awareness import Reduce

    return typing.get_args(Reduce)


def _setups() -> tuple[str, ...]:
    from lsn_mech.experiments.transfer import SETUPS

    return tuple(SETUPS)


def _sites() -> tuple[str, ...]:
    from lsn_mech.models.sites import SITES

    return tuple(SITES)


def one_of(allowed: Callable[[], tuple[str, ...]]) -> Rule:
    """One name of ``allowed()`` (read when checked)."""
    return Rule("one of the choices listed by --help", lambda v: v in allowed())


# ----- the table --------------------------------------------------------------------
FIELD_RULES: dict[str, Rule] = {
    # model and machine
    "model": non_empty_text(),
    "dtype": choice(*DTYPES),
    # corpus
    "languages": languages(),
    "text_files": text_files(),
    "split": choice("train", "test"),
    "nonfinite": choice("raise", "count"),
    "window": count(2),
    "batch_size": count(1),
    "eval_batch_size": count(1),
    "max_tokens": count(1),
    "stats_tokens": count(1),
    "eval_tokens": count(1),
    "ppl_tokens": count(1),
    "ppl_window": count(2),
    "checkpoint_every": count(1),
    "neurons": existing_file(".safetensors"),
    "stats": existing_file(".safetensors"),
    # detection
    "top_rate": rate(),
    "filter_rate": fraction(),
    "activation_bar_ratio": fraction(),
    "random_seed": seed(),
    "seed": seed(),
    "k": count(1),
    "attribute_to": one_of(_attributions),
    "layer_batches": count(1),
    "epsilon": fraction(),
    "awareness_source": choice("pairs", "monolingual"),
    "awareness_batches": count(1),
    "awareness_reduce": one_of(_reductions),
    "car_formula": car_formula(),
    # data sizes
    "directions": directions(),
    "train_pairs": count(1),
    "test_pairs": count(1),
    "source": language(),
    "targets": languages(),
    "detection_languages": languages(),
    "finetune_targets": languages(empty=True),
    "train_per_genre": count(1),
    "test_per_genre": count(1),
    "genres": one_of(_label_sets),
    "context_verses": count(1),
    "template": text_template(),
    # training and evaluation
    "methods": subset(_methods, empty=False),
    "steps": count(1),
    "grad_accumulation": count(1),
    "lr": positive(),
    "weight_decay": non_negative(),
    "lora_r": count(1),
    "lora_alpha": positive(),
    "max_length": count(2),
    "epochs": positive(),
    "shots": count(0),
    "max_new_tokens": count(1),
    "interventions": intervention_values(allow_none=True),
    "ppl_values": intervention_values(allow_none=False),
    "read_site": one_of(_sites),
    "setups": subset(_setups, empty=True),
    # the dashboard
    "top_k": count(1),
    "context": count(0),
    "max_neurons": count(1),
    # reporting
    "report_to": choice("none", "tensorboard", "wandb"),
    # intervals and seeds (lsn_mech.intervals)
    "seeds": seed_list(),
    "resamples": count(1),
    "confidence": level(),
    "bootstrap_seed": seed(),
}
"""Field name → what its value must be, the same in every job."""

UNCHECKED_FIELDS: dict[str, str] = {
    "output": "checked by prepare_output (created and written before the job starts)",
    "device": "checked by lsn_mech.models.check_device in validate_config",
    "detector": "checked by the LAPE job against the detector registry before it starts",
    "detectors": "checked by TransferConfig.check against the detector registry",
    "learned_car": "a bool; the config parser refuses anything else",
    "transfer": "a bool; the config parser refuses anything else",
    "resume": "a bool; the config parser refuses anything else",
}
"""Fields with no `FIELD_RULES` entry, and where they are checked instead (a test
asserts every field of every job is in one of the two tables)."""


# ----- phase 1: the settings, before anything is loaded -----------------------------
def validate_config(config: Any) -> None:
    """Raise on the first field of ``config`` its rule refuses, an absent ``device``, or
    a language the corpus does not have; all before any model or corpus is loaded."""
    from lsn_mech.models.limits import check_device

    if not dataclasses.is_dataclass(config):
        return  # a caller's own config object: nothing declared to check
    hints = field_types(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None and split_optional(hints[field.name])[1]:
            continue
        rule = FIELD_RULES.get(field.name)
        problem = rule.problem(field.name, value) if rule is not None else None
        if problem is not None:
            raise InvalidSettingError(problem)
    if getattr(config, "device", None) is not None:
        check_device(config.device, argument="--device")
    check_corpus_languages(config)
    check_reporting(config)


def check_reporting(config: Any) -> None:
    """A job that reports its training (``--report-to``) finds its package and, for W&B
    online, a login, before anything is loaded (`lsn_mech.training.tracking`)."""
    report_to = getattr(config, "report_to", "none")
    if report_to != "none":
        from lsn_mech.training.tracking import check_report_to

        check_report_to(report_to, argument=flag("report_to"))


def _wanted_languages(config: Any) -> dict[str, list[str]]:
    """Flag → the language codes it asks the corpus for."""
    wanted: dict[str, list[str]] = {}
    if not dataclasses.is_dataclass(config):
        return wanted
    fields = {field.name for field in dataclasses.fields(config)}
    for name in ("languages", "source", "targets", "detection_languages", "finetune_targets"):
        value = getattr(config, name) if name in fields else None
        if value:
            wanted[flag(name)] = [value] if isinstance(value, str) else list(value)
    if "directions" in fields and config.directions:
        wanted["--directions"] = [code for d in config.directions for code in d.split("-")]
    return wanted


def check_corpus_languages(config: Any) -> None:
    """Raise `MissingLanguageError` naming the flag when a language asked for is not in
    the job's corpus: ``--text-files`` when given, else the embedded Bible."""
    wanted = _wanted_languages(config)
    if not wanted:
        return
    files = getattr(config, "text_files", None)
    if files:
        available, where = list(files), "--text-files"
    else:
        from lsn_mech.corpora.bible import bible_languages

        available, where = bible_languages(), "the embedded Bible"
    for name, codes in wanted.items():
        missing = [c for c in dict.fromkeys(codes) if c not in available]
        if missing:
            fix = "add LANG=PATH to --text-files" if files else "use --text-files for others"
            raise MissingLanguageError(
                f"{name}: {', '.join(map(repr, missing))} not in {where} "
                f"(it has {', '.join(available)}); "
                f"drop {'it' if len(missing) == 1 else 'them'} from {name} or {fix}."
            )


# ----- phase 2: the output folder -------------------------------------------------
def prepare_output(output: str | os.PathLike[str], *, argument: str = "--output") -> Path:
    """Create ``output`` and prove it writable, or raise `OutputFolderError` naming
    ``argument`` (`lsn_mech.files.prepare_folder`); a job's results must have a home
    before the work that makes them starts."""
    return prepare_folder(output, argument=argument)


# ----- phase 3: the loaded model ----------------------------------------------------
def _fits_context(model: Any, field: str, value: Any) -> None:
    from lsn_mech.models.limits import check_window

    check_window(model, value, argument=flag(field))


def _fits_shape(model: Any, field: str, value: Any) -> None:
    from lsn_mech.models.sites import hook_sites
    from lsn_mech.neurons import load

    loaded = load(value)
    sets = list(loaded.values()) if isinstance(loaded, Mapping) else [loaded]
    sites = hook_sites(model)
    for neurons in sets[:1]:  # LanguageNeurons share one shape
        if neurons.n_layers != sites.n_layers or neurons.d_mlp != sites.d_mlp:
            raise NeuronShapeMismatchError(
                f"{flag(field)} {value} holds neurons of a {neurons.n_layers}-layer model with "
                f"d_mlp {neurons.d_mlp}, but this model has {sites.n_layers} layers with d_mlp "
                f"{sites.d_mlp}; pass neurons detected on this model."
            )


MODEL_RULES: dict[str, Callable[[Any, str, Any], None]] = {
    "window": _fits_context,
    "max_length": _fits_context,
    "ppl_window": _fits_context,
    "neurons": _fits_shape,
}
"""Field name → a check of its value against the loaded model (raises when it does not fit)."""


def check_fits_model(config: Any, model: Any) -> None:
    """Raise when a setting of ``config`` does not fit the loaded ``model`` (a window past
    its context, neurons of another shape): after loading, before any forward pass."""
    if not dataclasses.is_dataclass(config):
        return
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        check = MODEL_RULES.get(field.name)
        if check is not None and value is not None:
            check(model, field.name, value)


def fitted_window(model: Any, preferred: int = 512) -> int:
    """``preferred`` tokens, or the model's whole context when that is shorter: the
    window of a job that has no ``--window`` flag (the transfer job's statistics and
    PPL), so a short-context model runs instead of failing, and stays within the context
    it was trained on (no `ContextLengthWarning` for a job the user cannot set)."""
    from lsn_mech.models.limits import context_length, trained_context

    limit = context_length(model) or trained_context(model)
    return preferred if limit is None else min(preferred, limit)
