"""The table of bad inputs and faults of issue 12, shared by ``tests/test_bad_inputs.py``
(one test per case) and ``benchmarks/bad_input_census.py`` (the counts).

Each `Case` is one user mistake at one public entry point: a library call (``run``) or a
command line (``argv``). Its outcome is one of

- ``ok``: it ran (and, where `Case.refuse` says success would be a silently wrong
  result, it did not run);
- ``refused``: a library call raised a `LsnMechError`; a command exited 2 with exactly one
  stderr line ``lsn-mech: error: ...`` and no traceback or usage text;
- ``bad``: anything else (a raw exception, a traceback, argparse's usage text, an exit code
  other than 0/2, a silent wrong result, or more than `CASE_SECONDS` without refusing).

Everything a case needs (a tiny model, a corpus, statistics, neuron files) is built once
by `make_env`, so the whole table runs in about a minute on two cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from lsn_mech.models.limits import ContextLengthWarning

PROGRESS_BAR = re.compile(r"\d+%\||\d+/\d+ \[|it/s\]|s/it\]")
"""A tqdm progress line (not a message)."""

CASE_SECONDS = 30
"""A case that neither finishes nor refuses within this time counts as ``bad``."""


@dataclasses.dataclass
class Env:
    """What the cases share: built once per run (`make_env`), never changed by a case."""

    root: Path
    model: Any  # tiny-llama, HookedModel
    other_model: Any  # tiny-gpt2: same shape, another model
    files: dict[str, str]
    corpus: Any
    stats: Any  # moments + mlp_pre quantiles of tiny-llama
    other_stats: Any  # the same of tiny-gpt2
    neurons: Any  # LanguageNeurons (LAPE) of tiny-llama
    paths: dict[str, Path]
    counter: list[int] = dataclasses.field(default_factory=lambda: [0])

    def fresh(self, name: str) -> Path:
        """A new path under the run's folder (no file there yet)."""
        self.counter[0] += 1
        return self.root / f"{self.counter[0]:04d}-{name}"

    def tokens(self) -> torch.Tensor:
        return self.model.to_tokens("In the beginning God created the heaven.")

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.tokens())


def make_env(root: Path) -> Env:
    """Build the shared tiny model, corpus, statistics and files (a few seconds)."""
    import lsn_mech as lm
    from lsn_mech import corpora, detect
    from lsn_mech.stats import MomentAccumulator, QuantileAccumulator

    root.mkdir(parents=True, exist_ok=True)
    texts = _texts()
    files = {}
    for language, lines in texts.items():
        path = root / f"{language}.txt"
        path.write_text("\n".join(f"{i}. {t}" for i, t in enumerate(lines * 5)) + "\n")
        files[language] = str(path)
    model = lm.load_model("tiny-llama")
    other = lm.load_model("tiny-gpt2")
    corpus = corpora.from_files(files)
    sites = ("mlp_pre", "mlp_post")

    def collect(m: Any) -> Any:
        accumulators = [MomentAccumulator(sites), QuantileAccumulator(("mlp_pre",))]
        return lm.collect_stats(
            m,
            corpus,
            window=32,
            max_tokens_per_language=160,
            batch_size=4,
            accumulators=accumulators,
            progress=False,
        )

    stats = collect(model)
    other_stats = collect(other)
    neurons = detect.run("lape", stats, top_rate=0.05).neurons
    paths = {
        "stats": stats.save(root / "stats.safetensors"),
        "neurons": neurons.save(root / "neurons.safetensors"),
        "set": neurons["fr"].save(root / "fr.safetensors"),
        "lape": lm.neurons.to_lape_file(neurons, root / "lape.pt"),
    }
    matrix = lm.evaluate.ppl_change_matrix(
        model,
        dict(neurons.items()),
        corpus,
        split="train",
        window=32,
        max_tokens_per_language=64,
        progress=False,
    )
    paths["matrix"] = matrix.save(root / "matrix.json")
    paths["config"] = root / "stats-config.json"
    paths["config"].write_text(
        json.dumps(
            {"model": "tiny-llama", "languages": ["en", "fr"], "window": 16, "max_tokens": 32}
        )
    )
    return Env(root, model, other, files, corpus, stats, other_stats, neurons, paths)


def _texts() -> dict[str, list[str]]:
    from conftest import TEXTS  # tests/ is on sys.path both under pytest and the census

    return {k: list(v) for k, v in TEXTS.items()}


# ----- the case and its outcome ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input at one entry point (a call ``run(env)`` or a command ``argv(env)``)."""

    area: str
    entry: str
    description: str
    run: Callable[[Env], Any] | None = None
    argv: Callable[[Env], list[str]] | None = None
    refuse: bool = False
    """Success would be a silently wrong result: only a refusal is right."""
    warns: type[Warning] | None = None
    """Success is right only with this warning (the input is doubtful, not wrong)."""

    @property
    def id(self) -> str:
        slug = "".join(c if c.isalnum() else "-" for c in self.description.lower())
        return f"{self.area}:{self.entry}:{'-'.join(filter(None, slug.split('-')))}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str  # "ok" | "refused" | "bad"
    detail: str


class CaseTimeout(BaseException):
    """Raised by the alarm inside a case that runs past `CASE_SECONDS`."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _type_checker_errors() -> tuple[type[BaseException], ...]:
    """The test-only run-time type checker's errors (conftest installs jaxtyping+beartype):
    they pre-empt the library's own checks under pytest, so there they count as a refusal;
    the census, run without the checker, reports what a user sees."""
    kinds: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        from beartype.roar import BeartypeException

        kinds.append(BeartypeException)
    with contextlib.suppress(ImportError):
        from jaxtyping import TypeCheckError

        kinds.append(TypeCheckError)
    return tuple(kinds)


def run_case(case: Case, env: Env, *, type_checked: bool = False) -> Outcome:
    """Run one case and say how it ended (never raises, except KeyboardInterrupt)."""
    import warnings

    from lsn_mech.errors import LsnMechError

    checker = _type_checker_errors() if type_checked else ()
    try:
        with _time_limit(CASE_SECONDS), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if case.argv is not None:
                return _run_command(case.argv(env))
            result = case.run(env) if case.run else None
    except CaseTimeout:
        return Outcome("bad", f"still running after {CASE_SECONDS} s")
    except LsnMechError as error:
        return Outcome("refused", f"{type(error).__name__}: {_one_line(error)}")
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        if checker and isinstance(error, checker):
            return Outcome("refused", f"type checker: {type(error).__name__}")
        return Outcome(
            "bad", f"raw {type(error).__module__}.{type(error).__name__}: {_one_line(error)}"
        )
    try:
        shown = _one_line(result)
    except Exception as error:
        return Outcome("bad", f"returned a result whose str() raises {type(error).__name__}")
    if case.refuse:
        return Outcome("bad", f"silently returned {shown}")
    if case.warns is not None and not any(issubclass(w.category, case.warns) for w in caught):
        return Outcome("bad", f"returned without a {case.warns.__name__}: {shown}")
    return Outcome("ok", shown)


def _run_command(argv: list[str]) -> Outcome:
    from lsn_mech.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code: Any = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    except CaseTimeout:
        raise
    except BaseException as error:
        tb = traceback.format_exception_only(type(error), error)[-1].strip()
        return Outcome("bad", f"traceback: {tb[:200]}")
    # a progress bar redraws itself after "\r"; keep what each line ends showing
    lines = [line.split("\r")[-1] for line in err.getvalue().split("\n")]
    lines = [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]
    errors = [line for line in lines if line.startswith("lsn-mech: error:")]
    noise = [line for line in lines if line.startswith(("usage:", "Traceback"))]
    if code == 0:
        return Outcome("ok", "exit 0")
    if code == 2 and len(errors) == 1 and not noise:
        return Outcome("refused", errors[0][:200])
    last = lines[-1][:200] if lines else "(no stderr)"
    return Outcome("bad", f"exit {code}, {len(lines)} stderr lines, last: {last}")


def _one_line(value: Any) -> str:
    text = " ".join(str(value).split())
    return text[:200]


# ----- corrupted files ------------------------------------------------------------------
def damaged(env: Env, kind: str, how: str) -> Path:
    """A damaged copy of one of the env's files (``kind`` is a key of ``env.paths``)."""
    source = env.paths[kind]
    data = source.read_bytes()
    target = env.fresh(f"{how}-{source.name}")
    if how == "missing":
        return target
    if how == "folder":
        target.mkdir()
        return target
    changed = {
        "empty": b"",
        "half": data[: len(data) // 2],
        "eight-bytes": data[:8],
        "no-tail": data[:-5],
        "garbage": bytes(range(256)) * 4,
        "text": b"hello, I am not a file lsn_mech wrote\n",
        "json-list": b"[1, 2, 3]",
        "header-flip": _flip(data, 20),
        "body-flip": _flip(data, len(data) - 40),
    }[how]
    target.write_bytes(changed)
    return target


def _flip(data: bytes, at: int) -> bytes:
    at = max(0, min(at, len(data) - 1))
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


DAMAGES = ("missing", "folder", "empty", "half", "eight-bytes", "garbage", "header-flip")


# ----- the table ------------------------------------------------------------------------
def _lm() -> Any:
    import lsn_mech

    return lsn_mech


def _under(make: Callable[[Env], Any]) -> Callable[[Env], Any]:
    """Enter the intervention ``make(env)`` returns and run a forward pass under it."""

    def run(env: Env) -> Any:
        with make(env):
            return env.forward().shape

    return run


def _set(*layers: list[int], d_mlp: int = 128, **kw: Any) -> Any:
    return _lm().NeuronSet(list(layers), d_mlp=d_mlp, **kw)


FR = lambda e: e.neurons["fr"]  # noqa: E731 - short table entries
OTHER_SHAPE = lambda e: _set([1], [2], d_mlp=64)  # noqa: E731


def facade_cases() -> list[Case]:
    lm = _lm()
    a = "facade"
    return [
        Case(
            a,
            "deactivate",
            "LanguageNeurons where one NeuronSet is meant",
            _under(lambda e: lm.deactivate(e.model, e.neurons)),
            refuse=True,
        ),
        Case(
            a,
            "deactivate",
            "NeuronSet of d_mlp 64 on a d_mlp 128 model",
            _under(lambda e: lm.deactivate(e.model, OTHER_SHAPE(e))),
        ),
        Case(
            a,
            "deactivate",
            "NeuronSet of 5 layers on a 3-layer model",
            _under(lambda e: lm.deactivate(e.model, _set([1], [], [], [], [4]))),
        ),
        Case(
            a, "deactivate", "None for the neurons", _under(lambda e: lm.deactivate(e.model, None))
        ),
        Case(
            a,
            "deactivate",
            "plain list of indices for the neurons",
            _under(lambda e: lm.deactivate(e.model, [[1, 2], [3], []])),
        ),
        Case(
            a,
            "deactivate",
            "a string for the model",
            _under(lambda e: lm.deactivate("tiny-llama", FR(e))),
        ),
        Case(
            a,
            "deactivate",
            "raw HF module for the model",
            _under(lambda e: lm.deactivate(lm.models.build_tiny("tiny-llama").model, FR(e))),
        ),
        Case(
            a,
            "deactivate",
            "empty NeuronSet is a no-op",
            _under(lambda e: lm.deactivate(e.model, lm.NeuronSet.empty(3, 128))),
        ),
        Case(
            a,
            "set_to",
            "the string mean as value",
            _under(lambda e: lm.set_to(e.model, FR(e), "mean")),
            refuse=True,
        ),
        Case(a, "set_to", "None as value", _under(lambda e: lm.set_to(e.model, FR(e), None))),
        Case(
            a,
            "set_to",
            "per-neuron tensor of the wrong length",
            _under(lambda e: lm.set_to(e.model, FR(e), torch.ones(5))),
        ),
        Case(
            a,
            "set_to",
            "value tensor of shape layer x d_mlp of another model",
            _under(lambda e: lm.set_to(e.model, FR(e), torch.ones(2, 64))),
        ),
        Case(
            a,
            "set_to",
            "a dict of strings as value",
            _under(lambda e: lm.set_to(e.model, FR(e), {"mlp_post": "x"})),
        ),
        Case(
            a,
            "set_to",
            "LanguageNeurons with a scalar",
            _under(lambda e: lm.set_to(e.model, e.neurons, 0.0)),
            refuse=True,
        ),
        Case(
            a,
            "activate",
            "statistics of another model (tiny-gpt2) on tiny-llama",
            _under(lambda e: lm.activate(e.model, FR(e), e.other_stats["fr"])),
            refuse=True,
        ),
        Case(
            a,
            "activate",
            "whole ActivationStats instead of stats[language]",
            _under(lambda e: lm.activate(e.model, FR(e), e.stats)),
        ),
        Case(
            a,
            "activate",
            "statistics of a language not collected",
            _under(lambda e: lm.activate(e.model, FR(e), e.stats["xx"])),
        ),
        Case(
            a,
            "activate",
            "a language name instead of statistics",
            _under(lambda e: lm.activate(e.model, FR(e), "fr")),
        ),
        Case(
            a, "scale", "the string x2 as factor", _under(lambda e: lm.scale(e.model, FR(e), "x2"))
        ),
        Case(
            a,
            "scale",
            "factor tensor of the wrong shape",
            _under(lambda e: lm.scale(e.model, FR(e), torch.ones(3, 3))),
        ),
        Case(
            a,
            "scale",
            "NeuronSet of another d_mlp",
            _under(lambda e: lm.scale(e.model, OTHER_SHAPE(e), 2.0)),
        ),
        Case(
            a,
            "add",
            "delta tensor of the wrong shape",
            _under(lambda e: lm.add(e.model, FR(e), torch.ones(7))),
        ),
        Case(
            a,
            "add",
            "LanguageNeurons where one NeuronSet is meant",
            _under(lambda e: lm.add(e.model, e.neurons, 1.0)),
            refuse=True,
        ),
        Case(
            a,
            "compose",
            "a NeuronSet among the interventions",
            _under(lambda e: lm.compose(lm.deactivate(e.model, FR(e)), FR(e))),
        ),
        Case(a, "compose", "nothing to compose is a no-op", _under(lambda e: lm.compose())),
        Case(
            a,
            "parse_intervention",
            "unknown spec text",
            lambda e: lm.interventions.parse_intervention("bogus", FR(e)),
        ),
        Case(
            a,
            "parse_intervention",
            "percentile above 100",
            lambda e: lm.interventions.parse_intervention("p200", FR(e)),
        ),
        Case(
            a,
            "parse_intervention",
            "empty spec text",
            lambda e: lm.interventions.parse_intervention("", FR(e), allow_none=False),
        ),
        Case(
            a,
            "apply",
            "a statistic spec without statistics",
            _under(
                lambda e: lm.interventions.apply(
                    e.model, lm.interventions.parse_intervention("p50", FR(e), language="fr")
                )
            ),
        ),
        Case(
            a,
            "load_model",
            "unknown model name",
            lambda e: lm.load_model("no-such-org/no-such-model-xyz"),
        ),
        Case(a, "load_model", "a folder that holds no model", lambda e: lm.load_model(str(e.root))),
        Case(
            a,
            "load_model",
            "device that does not exist",
            lambda e: lm.load_model("tiny-llama", device="cuda:7"),
        ),
        Case(a, "load_model", "an integer as source", lambda e: lm.load_model(42)),
    ]


def collect_cases() -> list[Case]:
    lm = _lm()
    a = "collect_stats"

    def collect(**kw: Any) -> Callable[[Env], Any]:
        def run(e: Env) -> Any:
            kwargs = {
                "window": 32,
                "max_tokens_per_language": 32,
                "progress": False,
                "languages": ["en"],
                **kw,
            }
            corpus = kwargs.pop("corpus", e.corpus)
            make_model = kwargs.pop("make_model", lambda e: e.model)
            return lm.collect_stats(make_model(e), corpus, **kwargs)

        return run

    def nan_model(e: Env) -> Any:
        tiny = lm.models.build_tiny("tiny-llama")
        with torch.no_grad():
            tiny.model.model.layers[1].mlp.up_proj.weight.fill_(math.nan)
        return lm.load_model(tiny.model, tokenizer=tiny.tokenizer, model_id="tiny-llama-nan")

    return [
        Case(a, "collect_stats", "window 0", collect(window=0)),
        Case(a, "collect_stats", "window -4", collect(window=-4)),
        Case(
            a,
            "collect_stats",
            "window 4096 beyond the 256-token context of tiny-gpt2",
            collect(window=4096, make_model=lambda e: e.other_model),
        ),
        Case(
            a,
            "collect_stats",
            "window 300 past the 256 tokens tiny-llama was trained on (rotary: runs, warns)",
            collect(window=300, max_tokens_per_language=300),
            warns=ContextLengthWarning,
        ),
        Case(a, "collect_stats", "batch_size 0", collect(batch_size=0)),
        Case(a, "collect_stats", "batch_size -2", collect(batch_size=-2)),
        Case(a, "collect_stats", "max_tokens_per_language 0", collect(max_tokens_per_language=0)),
        Case(
            a, "collect_stats", "max_tokens_per_language -10", collect(max_tokens_per_language=-10)
        ),
        Case(a, "collect_stats", "language not in the corpus", collect(languages=["xx"])),
        Case(a, "collect_stats", "empty language list", collect(languages=[])),
        Case(
            a, "collect_stats", "a string of languages instead of a list", collect(languages="en")
        ),
        Case(a, "collect_stats", "unknown site", collect(sites=("mlp_mid",))),
        Case(a, "collect_stats", "split that does not exist", collect(split="validation")),
        Case(a, "collect_stats", "None as corpus", collect(corpus=None)),
        Case(a, "collect_stats", "a list of strings as corpus", collect(corpus=["a b c", "d e"])),
        Case(a, "collect_stats", "an empty dict as corpus", collect(corpus={})),
        Case(
            a,
            "collect_stats",
            "a language with only empty texts",
            collect(corpus={"en": ["", "  "]}, split=None),
        ),
        Case(
            a, "collect_stats", "accumulators given as strings", collect(accumulators=["moments"])
        ),
        Case(
            a,
            "collect_stats",
            "output_dir is an existing file",
            lambda e: collect(output_dir=e.paths["stats"])(e),
        ),
        Case(
            a,
            "collect_stats",
            "output_dir under an unwritable folder",
            collect(output_dir="/proc/lsn-mech-out"),
        ),
        Case(
            a,
            "collect_stats",
            "checkpoint_every 0",
            lambda e: collect(output_dir=e.fresh("ck0"), checkpoint_every=0)(e),
        ),
        Case(
            a,
            "collect_stats",
            "checkpoint_seconds -1",
            lambda e: collect(output_dir=e.fresh("cks"), checkpoint_seconds=-1.0)(e),
        ),
        Case(
            a,
            "collect_stats",
            "raw HF module as model",
            collect(make_model=lambda e: lm.models.build_tiny("tiny-llama").model),
        ),
        Case(a, "collect_stats", "None as model", collect(make_model=lambda e: None)),
        Case(
            a, "collect_stats", "NaN in the activations", collect(make_model=nan_model), refuse=True
        ),
        Case(
            a,
            "collect_stats",
            "resume into a folder of another corpus",
            lambda e: _resume_other_corpus(e, collect),
        ),
    ]


def _resume_other_corpus(e: Env, collect: Callable[..., Callable[[Env], Any]]) -> Any:
    folder = e.fresh("resume")
    collect(output_dir=folder)(e)
    return collect(output_dir=folder, corpus={"en": ["other text entirely"] * 30}, split=None)(e)


def _spec_fields(name: str) -> list[str]:
    from lsn_mech import detect

    return [f.name for f in dataclasses.fields(detect.get(name))]


def _zero_stats(e: Env) -> Any:
    state = {key: torch.zeros_like(value) for key, value in e.stats.state.items()}
    return dataclasses.replace(e.stats, state=state)


def detect_cases() -> list[Case]:
    from lsn_mech import detect

    a = "detect"
    cases = [
        Case(a, "get", "unknown detector name", lambda e: detect.get("no-such-detector")),
        Case(a, "run", "unknown detector name", lambda e: detect.run("nope", e.stats)),
        Case(a, "run", "a NeuronSet as detector", lambda e: detect.run(FR(e), e.stats)),
    ]
    for name in detect.available():
        spec = detect.get(name)
        fields = _spec_fields(name)
        cases += [
            Case(a, name, "unknown keyword", lambda e, n=name: detect.run(n, e.stats, bogus=1)),
            Case(a, name, "a string as source", lambda e, n=name: detect.run(n, "stats.pt")),
            Case(
                a,
                name,
                "a tensor of the wrong rank as source",
                lambda e, n=name: detect.run(n, torch.rand(4, 4), languages=["en", "fr"]),
            ),
        ]
        if spec.reads_statistics:
            cases += [
                Case(
                    a,
                    name,
                    "language not in the statistics",
                    lambda e, n=name: detect.run(n, e.stats, languages=["xx"]),
                ),
                Case(
                    a,
                    name,
                    "all-zero statistics (nothing to select)",
                    lambda e, n=name: _selection(detect.run(n, _zero_stats(e))),
                    refuse=name not in ("random",),
                ),
            ]
        for field in fields:
            if "rate" in field or field in ("ratio", "threshold", "quantile", "percentile"):
                scale = 100.0 if field == "percentile" else 1.0
                for value in (1.5 * scale, -0.25 * scale, math.nan):
                    cases.append(
                        Case(
                            a,
                            name,
                            f"{field}={value}",
                            lambda e, n=name, f=field, v=value: (
                                _selection(detect.run(n, e.stats, **{f: v}))
                                if detect.get(n).reads_statistics
                                else detect.get(n)(**{f: v})
                            ),
                            refuse=True,
                        )
                    )
    return cases


def _selection(result: Any) -> str:
    neurons = result.neurons
    return f"{sum(sum(s.per_layer()) for s in neurons.values())} neurons"


def evaluate_cases() -> list[Case]:
    lm = _lm()
    ev = lm.evaluate
    a = "evaluate"
    en = _texts()["en"]

    def ppl(texts: Any = None, **kw: Any) -> Callable[[Env], Any]:
        return lambda e: ev.perplexity(
            e.model, en if texts is None else texts, **{"window": 32, **kw}
        )

    def matrix(**kw: Any) -> Callable[[Env], Any]:
        def run(e: Env) -> Any:
            sets = kw.pop("sets", None)
            args = {
                "split": "train",
                "window": 32,
                "max_tokens_per_language": 32,
                "languages": ["en"],
                "progress": False,
                **kw,
            }
            return ev.ppl_change_matrix(
                e.model, sets(e) if sets else dict(e.neurons.items()), e.corpus, **args
            )

        return run

    return [
        Case(a, "perplexity", "window 0", ppl(window=0)),
        Case(
            a,
            "perplexity",
            "window 4096 beyond the context of tiny-gpt2",
            lambda e: ev.perplexity(e.other_model, en, window=4096),
        ),
        Case(
            a,
            "perplexity",
            "window 300 past the context tiny-llama was trained on (rotary: runs, warns)",
            ppl(window=300, max_tokens=300),
            warns=ContextLengthWarning,
        ),
        Case(a, "perplexity", "batch_size 0", ppl(batch_size=0)),
        Case(a, "perplexity", "no texts", ppl([])),
        Case(a, "perplexity", "only empty texts", ppl(["", ""])),
        Case(
            a,
            "perplexity",
            "None as texts",
            ppl(None) if False else (lambda e: ev.perplexity(e.model, None, window=32)),
        ),
        Case(a, "perplexity", "an integer as texts", ppl(5)),
        Case(a, "perplexity", "max_tokens -1", ppl(max_tokens=-1)),
        Case(a, "perplexity", "logits_chunk 0", ppl(logits_chunk=0)),
        Case(
            a,
            "perplexity",
            "Dataset without the text column",
            lambda e: ev.perplexity(e.model, _dataset({"sentence": en}), window=32),
        ),
        Case(
            a,
            "ppl_change_matrix",
            "LanguageNeurons as a value of the mapping",
            matrix(sets=lambda e: {"fr": e.neurons}),
            refuse=True,
        ),
        Case(
            a,
            "ppl_change_matrix",
            "neuron set of another shape",
            matrix(sets=lambda e: {"fr": OTHER_SHAPE(e)}),
        ),
        Case(a, "ppl_change_matrix", "language not in the corpus", matrix(languages=["xx"])),
        Case(a, "ppl_change_matrix", "unknown split", matrix(split="validation")),
        Case(
            a,
            "ppl_change_matrix",
            "window past the context tiny-llama was trained on (rotary: runs, warns)",
            matrix(window=300, max_tokens_per_language=64, sets=lambda e: {"fr": FR(e)}),
            warns=ContextLengthWarning,
        ),
        Case(a, "ppl_change_matrix", "empty mapping of neuron sets", matrix(sets=lambda e: {})),
        Case(
            a,
            "translate",
            "no prompts",
            lambda e: ev.translate(e.model, e.model.tokenizer, [], progress=False),
        ),
        Case(
            a,
            "translate",
            "max_new_tokens -1",
            lambda e: ev.translate(
                e.model, e.model.tokenizer, ["Hello"], max_new_tokens=-1, progress=False
            ),
        ),
        Case(
            a,
            "evaluate_translation",
            "examples without src/tgt columns",
            lambda e: ev.evaluate_translation(
                e.model, e.model.tokenizer, _dataset({"text": ["a"]}), progress=False
            ),
        ),
        Case(
            a,
            "evaluate_translation",
            "shots without train examples",
            lambda e: ev.evaluate_translation(
                e.model, e.model.tokenizer, _pairs(), shots=2, progress=False, max_new_tokens=2
            ),
        ),
        Case(
            a,
            "answer_questions",
            "records without question or context",
            lambda e: ev.answer_questions(e.model, [{"text": "x"}], progress=False),
        ),
        Case(
            a,
            "answer_questions",
            "no records",
            lambda e: ev.answer_questions(e.model, [], progress=False),
        ),
        Case(
            a,
            "evaluate_qa",
            "a dataset without QA columns",
            lambda e: ev.evaluate_qa(e.model, _dataset({"text": ["x"]}), progress=False),
        ),
    ]


def _dataset(columns: dict[str, list[Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(columns)


def _pairs() -> Any:
    return _dataset({"src": ["Hello"], "tgt": ["Bonjour"], "src_lang": ["en"], "tgt_lang": ["fr"]})


def neuron_cases() -> list[Case]:
    lm = _lm()
    NeuronSet, LanguageNeurons = lm.NeuronSet, lm.LanguageNeurons
    a = "neurons"
    cases = [
        Case(a, "NeuronSet", "d_mlp 0", lambda e: _set([1], d_mlp=0)),
        Case(a, "NeuronSet", "d_mlp -1", lambda e: _set([1], d_mlp=-1)),
        Case(a, "NeuronSet", "index equal to d_mlp", lambda e: _set([128], [], [])),
        Case(a, "NeuronSet", "negative index", lambda e: _set([-1], [], [])),
        Case(a, "NeuronSet", "an integer for the layers", lambda e: NeuronSet(5, d_mlp=128)),
        Case(a, "NeuronSet", "strings as indices", lambda e: _set(["a"], [], [])),
        Case(a, "NeuronSet", "float indices", lambda e: _set([1.5], [], [])),
        Case(a, "NeuronSet", "zero layers", lambda e: NeuronSet([], d_mlp=128)),
        Case(a, "NeuronSet", "unknown site", lambda e: _set([1], [], [], site="bogus")),
        Case(
            a,
            "NeuronSet",
            "2-D tensor for one layer",
            lambda e: NeuronSet([torch.ones(2, 2, dtype=torch.long)], d_mlp=128),
        ),
        Case(a, "from_mask", "1-D mask", lambda e: NeuronSet.from_mask(torch.ones(5) > 0)),
        Case(a, "from_mask", "float mask", lambda e: NeuronSet.from_mask(torch.rand(3, 8))),
        Case(
            a,
            "from_pairs",
            "neuron out of range",
            lambda e: NeuronSet.from_pairs([(0, 500)], n_layers=3, d_mlp=128),
        ),
        Case(
            a,
            "from_pairs",
            "layer out of range",
            lambda e: NeuronSet.from_pairs([(9, 5)], n_layers=3, d_mlp=128),
        ),
        Case(a, "restrict_layers", "layer 7 of 3", lambda e: FR(e).restrict_layers([7])),
        Case(
            a,
            "random_like",
            "exclude of another shape",
            lambda e: FR(e).random_like(0, exclude=OTHER_SHAPE(e)),
        ),
        Case(
            a,
            "random_like",
            "excluding every neuron",
            lambda e: FR(e).random_like(0, exclude=NeuronSet.full(3, 128)),
        ),
        Case(a, "overlap", "with a set of another shape", lambda e: FR(e).overlap(OTHER_SHAPE(e))),
        Case(
            a, "issubset", "with a set of another shape", lambda e: FR(e).issubset(OTHER_SHAPE(e))
        ),
        Case(a, "overlap", "with LanguageNeurons", lambda e: FR(e).overlap(e.neurons)),
        Case(
            a, "set algebra", "union with a set of another shape", lambda e: FR(e) | OTHER_SHAPE(e)
        ),
        Case(
            a,
            "set algebra",
            "intersection with a set of another site",
            lambda e: FR(e) & FR(e).relabel(site="mlp_pre"),
            refuse=True,
        ),
        Case(a, "set algebra", "difference with a list", lambda e: FR(e) - [1, 2]),
        Case(a, "set algebra", "union with LanguageNeurons", lambda e: FR(e) | e.neurons),
        Case(a, "LanguageNeurons", "no languages", lambda e: LanguageNeurons({})),
        Case(
            a,
            "LanguageNeurons",
            "sets of different shapes",
            lambda e: LanguageNeurons({"en": FR(e), "fr": OTHER_SHAPE(e)}),
        ),
        Case(
            a,
            "LanguageNeurons",
            "a string where a NeuronSet is meant",
            lambda e: LanguageNeurons({"fr": "x"}),
        ),
        Case(
            a, "LanguageNeurons", "a list instead of a mapping", lambda e: LanguageNeurons([FR(e)])
        ),
        Case(a, "LanguageNeurons", "unknown language by index", lambda e: e.neurons["xx"]),
        Case(
            a,
            "LanguageNeurons",
            "exclusive of an unknown language",
            lambda e: e.neurons.exclusive("xx"),
        ),
        Case(
            a,
            "LanguageNeurons",
            "subset of an unknown language",
            lambda e: e.neurons.subset(["xx"]),
        ),
        Case(
            a,
            "LanguageNeurons",
            "shared with min_languages 0",
            lambda e: e.neurons.shared(min_languages=0),
        ),
        Case(
            a,
            "LanguageNeurons",
            "overlap_matrix of an unknown kind",
            lambda e: e.neurons.overlap_matrix("bogus"),
        ),
        Case(
            a,
            "LanguageNeurons.from_mask",
            "fewer languages than masks",
            lambda e: LanguageNeurons.from_mask(torch.zeros(3, 3, 128, dtype=torch.bool), ["en"]),
        ),
        Case(
            a,
            "save",
            "into a folder that is a file",
            lambda e: FR(e).save(e.paths["stats"] / "x.safetensors"),
        ),
        Case(
            a,
            "save",
            "into an unwritable folder",
            lambda e: FR(e).save("/proc/lsn-mech/x.safetensors"),
        ),
        Case(
            a,
            "NeuronSet.load",
            "a LanguageNeurons file",
            lambda e: NeuronSet.load(e.paths["neurons"]),
        ),
        Case(
            a,
            "LanguageNeurons.load",
            "a NeuronSet file",
            lambda e: LanguageNeurons.load(e.paths["set"]),
        ),
        Case(a, "load", "a statistics file", lambda e: lm.neurons.load(e.paths["stats"])),
        Case(a, "load", "a JSON file", lambda e: lm.neurons.load(e.paths["matrix"])),
        Case(
            a,
            "from_lape_file",
            "wrong number of languages",
            lambda e: lm.neurons.from_lape_file(e.paths["lape"], ["en"], d_mlp=128),
        ),
        Case(
            a,
            "from_lape_file",
            "d_mlp smaller than the indices",
            lambda e: lm.neurons.from_lape_file(e.paths["lape"], ["en", "fr", "zh"], d_mlp=2),
        ),
        Case(
            a,
            "from_lape_file",
            "a safetensors file",
            lambda e: lm.neurons.from_lape_file(e.paths["set"], ["en", "fr", "zh"], d_mlp=128),
        ),
    ]
    for how in DAMAGES:
        cases.append(
            Case(
                a,
                "load",
                f"neuron file {how}",
                lambda e, h=how: lm.neurons.load(damaged(e, "neurons", h)),
            )
        )
    for how in ("half", "garbage"):
        cases.append(
            Case(
                a,
                "from_lape_file",
                f"LAPE file {how}",
                lambda e, h=how: lm.neurons.from_lape_file(
                    damaged(e, "lape", h), ["en", "fr", "zh"], d_mlp=128
                ),
            )
        )
    return cases


def stats_cases() -> list[Case]:
    lm = _lm()
    S = lm.ActivationStats
    a = "stats"
    cases = [
        Case(
            a,
            "merge",
            "statistics of another model",
            lambda e: e.stats.merge(e.other_stats),
            refuse=True,
        ),
        Case(a, "merge", "a NeuronSet", lambda e: e.stats.merge(FR(e))),
        Case(
            a,
            "merge",
            "statistics of a language subset",
            lambda e: e.stats.merge(e.stats.subset(["en"])),
        ),
        Case(a, "subset", "unknown language", lambda e: e.stats.subset(["xx"])),
        Case(a, "subset", "no languages", lambda e: e.stats.subset([])),
        Case(a, "quantile", "q 1.5", lambda e: e.stats.quantile(1.5, "mlp_pre")),
        Case(a, "quantile", "q -0.1", lambda e: e.stats.quantile(-0.1, "mlp_pre")),
        Case(a, "quantile", "q nan", lambda e: e.stats.quantile(math.nan, "mlp_pre")),
        Case(a, "quantile", "site without histograms", lambda e: e.stats.quantile(0.5, "mlp_post")),
        Case(
            a,
            "quantile",
            "unknown estimate",
            lambda e: e.stats.quantile(0.5, "mlp_pre", estimate="bogus"),
        ),
        Case(a, "statistic", "unknown statistic name", lambda e: e.stats.statistic("bogus")),
        Case(a, "mean", "unknown site", lambda e: e.stats.mean("mlp_mid")),
        Case(
            a,
            "activation_probability",
            "unknown site",
            lambda e: e.stats.activation_probability("mlp_mid"),
        ),
        Case(a, "language_index", "unknown language", lambda e: e.stats.language_index("xx")),
        Case(a, "getitem", "unknown language", lambda e: e.stats["xx"]),
        Case(a, "to", "a device that does not exist", lambda e: e.stats.to("cuda:7")),
        Case(
            a,
            "save",
            "into a folder that is a file",
            lambda e: e.stats.save(e.paths["stats"] / "x.safetensors"),
        ),
        Case(
            a,
            "statistic_value",
            "unknown language",
            lambda e: lm.stats.statistic_value(e.stats, "xx", "mean"),
        ),
        Case(
            a,
            "statistic_value",
            "unknown statistic",
            lambda e: lm.stats.statistic_value(e.stats, "fr", "p250"),
        ),
        Case(a, "load", "a neuron file", lambda e: S.load(e.paths["set"])),
        Case(a, "load", "a JSON file", lambda e: S.load(e.paths["matrix"])),
    ]
    for how in DAMAGES:
        cases.append(
            Case(
                a, "load", f"statistics file {how}", lambda e, h=how: S.load(damaged(e, "stats", h))
            )
        )
    cases.append(
        Case(
            a,
            "load",
            "statistics file with a flipped byte in a tensor",
            lambda e: S.load(damaged(e, "stats", "body-flip")),
            refuse=True,
        )
    )
    return cases


def peft_cases() -> list[Case]:
    lm = _lm()
    peft = lm.peft
    a = "peft"

    def hf() -> Any:
        return lm.models.build_tiny("tiny-llama").model

    def saved_adapter(e: Env) -> Path:
        path = e.paths.get("adapter")
        if path is None:
            path = peft.save_masked_lora(peft.masked_lora(hf(), FR(e)), e.root / "adapter")
            e.paths["adapter"] = path
        return path

    def damaged_adapter(e: Env) -> Any:
        folder = saved_adapter(e)
        copy = e.fresh("adapter")
        copy.mkdir()
        for file in folder.iterdir():
            data = file.read_bytes()
            (copy / file.name).write_bytes(data[: len(data) // 2])
        return peft.load_masked_lora(hf(), copy)

    return [
        Case(
            a,
            "masked_lora",
            "empty neuron set",
            lambda e: peft.masked_lora(hf(), lm.NeuronSet.empty(3, 128)),
            refuse=True,
        ),
        Case(
            a,
            "masked_lora",
            "neuron set of another shape",
            lambda e: peft.masked_lora(hf(), OTHER_SHAPE(e)),
        ),
        Case(
            a,
            "masked_lora",
            "LanguageNeurons where one NeuronSet is meant",
            lambda e: peft.masked_lora(hf(), e.neurons),
            refuse=True,
        ),
        Case(a, "masked_lora", "r 0", lambda e: peft.masked_lora(hf(), FR(e), r=0)),
        Case(a, "masked_lora", "r -1", lambda e: peft.masked_lora(hf(), FR(e), r=-1)),
        Case(
            a,
            "masked_lora",
            "unknown MLP target",
            lambda e: peft.masked_lora(hf(), FR(e), targets=("bogus",)),
        ),
        Case(
            a,
            "masked_lora",
            "unknown attention role",
            lambda e: peft.masked_lora(hf(), FR(e), attention=("zz",)),
        ),
        Case(a, "masked_lora", "dropout 1.5", lambda e: peft.masked_lora(hf(), FR(e), dropout=1.5)),
        Case(
            a,
            "masked_lora",
            "the TransformerBridge instead of the HF model",
            lambda e: peft.masked_lora(e.model, FR(e)),
        ),
        Case(
            a,
            "load_masked_lora",
            "missing folder",
            lambda e: peft.load_masked_lora(hf(), e.fresh("none")),
        ),
        Case(a, "load_masked_lora", "truncated adapter files", damaged_adapter),
        Case(
            a,
            "load_masked_lora",
            "adapter onto another architecture",
            lambda e: peft.load_masked_lora(
                lm.models.build_tiny("tiny-gpt2").model, saved_adapter(e)
            ),
        ),
        Case(
            a,
            "load_masked_lora",
            "a neuron file instead of an adapter folder",
            lambda e: peft.load_masked_lora(hf(), e.paths["set"]),
        ),
        Case(
            a,
            "mlp_lora_masks",
            "neuron set of another shape",
            lambda e: peft.mlp_lora_masks(hf(), OTHER_SHAPE(e)),
        ),
        Case(
            a,
            "neuron_module_masks",
            "LanguageNeurons",
            lambda e: peft.neuron_module_masks(hf(), e.neurons),
            refuse=True,
        ),
        Case(
            a,
            "save_masked_lora",
            "a model without adapters",
            lambda e: peft.save_masked_lora(hf(), e.fresh("plain")),
        ),
        Case(
            a, "masked_lora_spec", "a model without adapters", lambda e: peft.masked_lora_spec(hf())
        ),
    ]


def training_cases() -> list[Case]:
    lm = _lm()
    tr = lm.training
    a = "training"

    def hf() -> Any:
        return lm.models.build_tiny("tiny-llama").model

    def finetune(**kw: Any) -> Callable[[Env], Any]:
        def run(e: Env) -> Any:
            ids = e.tokens()
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
            model = hf()
            trainable = {
                ("en", "fr"): {
                    n: torch.ones_like(p, dtype=torch.bool)
                    for n, p in model.named_parameters()
                    if "mlp" in n
                }
            }
            args = {"steps": 1, "progress": False, "grad_accumulation": 1, **kw}
            batches = args.pop("batches", {("en", "fr"): [batch]})
            trainable = args.pop("trainable", trainable)
            return tr.selective_finetune(model, batches, trainable, **args)

        return run

    def routing(**kw: Any) -> Callable[[Env], Any]:
        def run(e: Env) -> Any:
            args = {
                "layers": [0, 1],
                "general": FR(e),
                "specific": {"en": e.neurons["en"], "fr": FR(e)},
                **kw,
            }
            return tr.ConditionalAwarenessRouting(**args)

        return run

    return [
        Case(a, "selective_finetune", "steps -1", finetune(steps=-1)),
        Case(a, "selective_finetune", "learning rate nan", finetune(lr=math.nan), refuse=True),
        Case(a, "selective_finetune", "no batches", finetune(batches={})),
        Case(a, "selective_finetune", "grad_accumulation 0", finetune(grad_accumulation=0)),
        Case(
            a,
            "selective_finetune",
            "masks for parameters the model lacks",
            finetune(trainable={("en", "fr"): {"no.such.weight": torch.ones(3) > 0}}),
        ),
        Case(a, "ConditionalAwarenessRouting", "layer 9 of 3", routing(layers=[9])),
        Case(a, "ConditionalAwarenessRouting", "no specific sets", routing(specific={})),
        Case(
            a,
            "ConditionalAwarenessRouting",
            "general set of another shape",
            routing(general=_set([1], d_mlp=64)),
        ),
        Case(a, "ConditionalAwarenessRouting", "unknown CAR formula", routing(car_formula="bogus")),
        Case(
            a,
            "static_car",
            "masks of different shapes",
            lambda e: tr.static_car(
                torch.rand(3, 128),
                torch.zeros(3, 64, dtype=torch.bool),
                torch.zeros(3, 128, dtype=torch.bool),
                [0],
            ),
        ),
        Case(a, "load_routed", "missing folder", lambda e: tr.load_routed(e.fresh("none"))),
        Case(
            a,
            "load_routed",
            "a folder with a statistics file only",
            lambda e: tr.load_routed(e.root),
        ),
        Case(a, "ClassifierConfig", "epochs -1", lambda e: tr.ClassifierConfig(epochs=-1)),
        Case(a, "ClassifierConfig", "learning rate 0", lambda e: tr.ClassifierConfig(lr=0.0)),
    ]


def corpus_cases() -> list[Case]:
    lm = _lm()
    c = lm.corpora
    a = "corpora"

    def files(e: Env, **paths: Any) -> Any:
        return c.from_files({k: str(v(e)) if callable(v) else v for k, v in paths.items()})

    def written(content: bytes) -> Callable[[Env], Path]:
        def make(e: Env) -> Path:
            path = e.fresh("corpus.txt")
            path.write_bytes(content)
            return path

        return make

    return [
        Case(a, "bible", "unknown language", lambda e: c.bible(["en", "xx"])),
        Case(a, "bible", "no languages", lambda e: c.bible([])),
        Case(a, "bible", "a string instead of a list of languages", lambda e: c.bible("en")),
        Case(a, "bible", "test_fraction 1.5", lambda e: c.bible(["en"], test_fraction=1.5)),
        Case(a, "bible", "test_fraction -0.1", lambda e: c.bible(["en"], test_fraction=-0.1)),
        Case(
            a,
            "bible",
            "max_verses_per_language 0",
            lambda e: c.bible(["en"], max_verses_per_language=0),
        ),
        Case(a, "bible", "book 999", lambda e: c.bible(["en"], books=[999])),
        Case(a, "bible", "unknown edition", lambda e: c.bible(["en"], editions={"en": "nope"})),
        Case(a, "from_files", "missing file", lambda e: files(e, en="/no/such/file.txt")),
        Case(a, "from_files", "empty file", lambda e: files(e, en=written(b""))),
        Case(
            a,
            "from_files",
            "binary garbage file",
            lambda e: files(e, en=written(bytes(range(256)) * 8)),
        ),
        Case(a, "from_files", "no files", lambda e: c.from_files({})),
        Case(a, "from_files", "a folder as file", lambda e: files(e, en=e.root)),
        Case(a, "from_files", "unknown format", lambda e: c.from_files(e.files, format="bogus")),
        Case(
            a, "from_files", "unknown sample_by", lambda e: c.from_files(e.files, sample_by="bogus")
        ),
        Case(a, "from_files", "test_fraction 2", lambda e: c.from_files(e.files, test_fraction=2)),
        Case(
            a,
            "from_files",
            "JSON lines without the text column",
            lambda e: files(e, en=written(b'{"sentence": "a"}\n')),
        ),
        Case(a, "corpus", "test split of an unknown language", lambda e: e.corpus.test("xx")),
        Case(a, "corpus", "unknown split", lambda e: e.corpus.split("validation")),
        Case(
            a, "corpus", "select an unknown language", lambda e: e.corpus.select_languages(["xx"])
        ),
        Case(a, "bible_pairs", "unknown target language", lambda e: c.bible_pairs("en", "xx")),
        Case(a, "bible_pairs", "the same language twice", lambda e: c.bible_pairs("en", "en")),
        Case(a, "bible_genre_task", "unknown target", lambda e: c.bible_genre_task("en", ["xx"])),
        Case(
            a,
            "parallel_dataset",
            "missing columns",
            lambda e: c.parallel_dataset(_dataset({"a": ["x"]}), src_lang="en", tgt_lang="fr"),
        ),
        Case(a, "concat_windows", "no windows", lambda e: c.concat_windows([])),
    ]


def results_cases() -> list[Case]:
    lm = _lm()
    M = lm.evaluate.PPLChangeMatrix
    a = "results"
    cases = [
        Case(a, "PPLChangeMatrix.load", "a statistics file", lambda e: M.load(e.paths["stats"])),
        Case(
            a, "PPLChangeMatrix.load", "JSON of another result", lambda e: M.load(_other_result(e))
        ),
        Case(
            a,
            "PPLChangeMatrix.load",
            "JSON without its format tag",
            lambda e: M.load(_edited_json(e, drop="format")),
        ),
        Case(
            a,
            "read_result_json",
            "expected another kind",
            lambda e: lm.results.read_result_json(e.paths["matrix"], "ActivationStats"),
        ),
        Case(
            a,
            "read_result_json",
            "a JSON list",
            lambda e: lm.results.read_result_json(damaged(e, "matrix", "json-list")),
        ),
    ]
    for how in ("missing", "folder", "empty", "half", "text"):
        cases.append(
            Case(
                a,
                "PPLChangeMatrix.load",
                f"result JSON {how}",
                lambda e, h=how: M.load(damaged(e, "matrix", h)),
            )
        )
    return cases


def _other_result(e: Env) -> Path:
    path = e.fresh("other.json")
    path.write_text(json.dumps({"format": "lsn_mech.LayerCounts/1", "counts": {}}))
    return path


def _edited_json(e: Env, *, drop: str) -> Path:
    data = json.loads(e.paths["matrix"].read_text())
    data = {k: v for k, v in data.items() if not k.startswith(drop)}
    path = e.fresh("edited.json")
    path.write_text(json.dumps(data))
    return path


def experiment_cases() -> list[Case]:
    lm = _lm()
    x = lm.experiments
    a = "experiments"
    return [
        Case(
            a,
            "compare_language_sets",
            "sets of different shapes",
            lambda e: x.compare_language_sets(
                e.neurons, lm.LanguageNeurons({"fr": OTHER_SHAPE(e)})
            ),
        ),
        Case(
            a,
            "compare_language_sets",
            "no common languages",
            lambda e: x.compare_language_sets(e.neurons.subset(["en"]), e.neurons.subset(["fr"])),
        ),
        Case(
            a,
            "identify_language",
            "unknown language list",
            lambda e: x.identify_language("bonjour", ["xx"]),
        ),
        Case(a, "greedy_generate", "no prompts", lambda e: x.greedy_generate(e.model, [])),
        Case(
            a,
            "greedy_generate",
            "max_new_tokens -1",
            lambda e: x.greedy_generate(e.model, ["Hello"], max_new_tokens=-1),
        ),
        Case(
            a,
            "deactivation_value_ppl",
            "unknown value name",
            lambda e: x.deactivation_value_ppl(
                e.model,
                e.neurons,
                e.stats,
                e.corpus,
                values=["bogus"],
                split="train",
                window=32,
                max_tokens_per_language=32,
                progress=False,
            ),
        ),
        Case(
            a,
            "deactivation_value_ppl",
            "statistics of another model",
            lambda e: x.deactivation_value_ppl(
                e.model,
                e.neurons,
                e.other_stats,
                e.corpus,
                values=["mean"],
                split="train",
                window=32,
                max_tokens_per_language=32,
                progress=False,
            ),
            refuse=True,
        ),
        Case(
            a,
            "language_dominance",
            "no aligned texts",
            lambda e: x.language_dominance(e.model, {}, progress=False),
        ),
        Case(
            a,
            "layer_distribution",
            "a NeuronSet instead of LanguageNeurons",
            lambda e: x.layer_distribution(FR(e)),
        ),
        Case(
            a,
            "dashboard",
            "a NeuronSet instead of LanguageNeurons",
            lambda e: x.dashboard(e.model, FR(e), e.stats, e.corpus, e.fresh("dash")),
        ),
        Case(
            a,
            "dashboard",
            "top_k 0",
            lambda e: x.dashboard(e.model, e.neurons, e.stats, e.corpus, e.fresh("dash"), top_k=0),
        ),
        Case(
            a,
            "dashboard",
            "neurons of another model shape",
            lambda e: x.dashboard(
                e.model, lm.LanguageNeurons({"fr": OTHER_SHAPE(e)}), None, e.corpus, e.fresh("d")
            ),
        ),
    ]


# ----- the command line -----------------------------------------------------------------
def cli_cases() -> list[Case]:
    a = "cli"

    def cmd(*argv: Any) -> Callable[[Env], list[str]]:
        return lambda e: [str(v(e)) if callable(v) else str(v) for v in argv]

    def out(e: Env) -> Path:
        return e.fresh("out")

    def tf(e: Env) -> str:
        return ",".join(f"{k}={v}" for k, v in e.files.items() if k in ("en", "fr"))

    def small(job: str) -> tuple[Any, ...]:
        """Flags that keep a job tiny if the bad flag were not refused."""
        common = ("--model", "tiny-llama", "--output", out)
        if job in ("stats", "ppl"):
            return (*common, "--text-files", tf, "--window", "16", "--max-tokens", "32")
        if job == "lape":
            return (
                *common,
                "--text-files",
                tf,
                "--window",
                "16",
                "--stats-tokens",
                "32",
                "--eval-tokens",
                "32",
            )
        if job == "landermt":
            return (
                *common,
                "--directions",
                "en-fr",
                "--train-pairs",
                "4",
                "--test-pairs",
                "2",
                "--steps",
                "1",
                "--layer-batches",
                "1",
                "--awareness-batches",
                "1",
                "--max-new-tokens",
                "2",
                "--methods",
                "0-shot",
            )
        return (
            *common,
            "--targets",
            "fr",
            "--stats-tokens",
            "32",
            "--train-per-genre",
            "2",
            "--test-per-genre",
            "1",
            "--epochs",
            "1",
            "--ppl-tokens",
            "16",
            "--setups",
            "none",
            "--detectors",
            "lape",
            "--interventions",
            "none",
        )

    def job(name: str, description: str, *bad: Any) -> Case:
        return Case(a, f"lsn-mech {name}", description, argv=cmd(name, *small(name), *bad))

    cases = [
        Case(a, "lsn-mech", "no command", argv=cmd()),
        Case(a, "lsn-mech", "unknown command", argv=cmd("bogus")),
        Case(a, "lsn-mech info", "unexpected argument", argv=cmd("info", "--bogus")),
    ]
    for name in ("stats", "ppl", "lape", "landermt", "transfer"):
        cases += [
            job(name, "unknown flag", "--bogus", "1"),
            job(name, "batch size not a number", "--batch-size", "abc"),
            job(name, "batch size 0", "--batch-size", "0"),
            job(name, "unknown dtype", "--dtype", "float8"),
            job(name, "device that does not exist", "--device", "cuda:7"),
            job(name, "output is an existing file", "--output", lambda e: e.paths["stats"]),
            job(name, "output under an unwritable folder", "--output", "/proc/lsn-mech/out"),
            Case(
                a,
                f"lsn-mech {name}",
                "config file missing",
                argv=cmd(name, "--config", lambda e: e.root / "none.json"),
            ),
            Case(
                a,
                f"lsn-mech {name}",
                "config file not JSON",
                argv=cmd(name, "--config", lambda e: e.paths["stats"]),
            ),
            Case(
                a,
                f"lsn-mech {name}",
                "config file truncated",
                argv=cmd(name, "--config", lambda e: damaged(e, "config", "half")),
            ),
            Case(
                a,
                f"lsn-mech {name}",
                "config file is a JSON list",
                argv=cmd(name, "--config", lambda e: damaged(e, "config", "json-list")),
            ),
        ]
    for name in ("stats", "ppl", "lape"):
        cases += [
            job(
                name,
                "window beyond the 256-token context of tiny-gpt2",
                "--model",
                "tiny-gpt2",
                "--window",
                "4096",
            ),
            job(name, "window 0", "--window", "0"),
            job(name, "language not in the text files", "--languages", "xx"),
            job(name, "text file missing", "--text-files", "en=/no/such/file.txt"),
            job(name, "text files without LANG=", "--text-files", "just-a-path.txt"),
        ]
    for name in ("stats", "ppl"):
        cases += [
            job(name, "max tokens -1", "--max-tokens", "-1"),
            job(name, "unknown split", "--split", "validation"),
        ]
    cases += [
        # one command is enough: the others load models the same way, and offline each
        # attempt still costs ~25 s of hub retries until the command line's part lands
        job("stats", "unknown model offline", "--model", "no-such-org/no-such-model-xyz"),
        job("stats", "checkpoint every 0", "--checkpoint-every", "0"),
        job("ppl", "neuron file missing", "--neurons", "/no/such/neurons.safetensors"),
        job("ppl", "neuron file truncated", "--neurons", lambda e: damaged(e, "neurons", "half")),
        job("ppl", "statistics file as neuron file", "--neurons", lambda e: e.paths["stats"]),
        job(
            "ppl", "neuron file of another model shape", "--neurons", lambda e: _other_shape_file(e)
        ),
        job("lape", "top rate 2", "--top-rate", "2"),
        job("lape", "filter rate -1", "--filter-rate", "-1"),
        job("lape", "unknown detector", "--detector", "bogus"),
        job("lape", "activation bar ratio nan", "--activation-bar-ratio", "nan"),
        job("landermt", "malformed direction", "--directions", "en_fr"),
        job("landermt", "direction with an unknown language", "--directions", "en-xx"),
        job("landermt", "k 0", "--k", "0"),
        job("landermt", "steps -1", "--steps", "-1"),
        job("landermt", "unknown method", "--methods", "bogus"),
        job("landermt", "learning rate -1", "--lr", "-1"),
        job("transfer", "unknown source language", "--source", "xx"),
        job("transfer", "unknown target language", "--targets", "xx"),
        job("transfer", "unknown setup", "--setups", "bogus"),
        job("transfer", "unknown read site", "--read-site", "bogus"),
        job("transfer", "epochs -1", "--epochs", "-1"),
        job("transfer", "unknown intervention", "--interventions", "bogus"),
        job("landermt", "unknown reporter", "--report-to", "bogus"),
        job("transfer", "unknown reporter", "--report-to", "mlflow"),
        Case(
            a,
            "lsn-mech stats",
            "config of another job",
            argv=cmd("stats", "--config", lambda e: _lape_config(e)),
        ),
    ]
    cases += _dashboard_cases(cmd, out, tf)
    return cases


def _dashboard_cases(cmd: Callable[..., Any], out: Any, tf: Any) -> list[Case]:
    """``lsn-mech dashboard`` with one bad flag after flags that keep it tiny."""
    small = ("--model", "tiny-llama", "--output", out, "--text-files", tf, "--languages",
             "en,fr", "--window", "16", "--max-tokens", "32")  # fmt: skip
    files = ("--neurons", lambda e: e.paths["neurons"], "--stats", lambda e: e.paths["stats"])

    def dash(description: str, *bad: Any) -> Case:
        argv = cmd("dashboard", *small, *files, *bad)
        return Case("cli", "lsn-mech dashboard", description, argv=argv)

    return [
        Case("cli", "lsn-mech dashboard", "no neuron file", argv=cmd("dashboard", *small)),
        dash("neuron file missing", "--neurons", "/no/such/neurons.safetensors"),
        dash("neuron file truncated", "--neurons", lambda e: damaged(e, "neurons", "half")),
        dash("statistics file as neuron file", "--neurons", lambda e: e.paths["stats"]),
        dash("neuron file as statistics file", "--stats", lambda e: e.paths["neurons"]),
        dash("statistics file missing", "--stats", "/no/such/stats.safetensors"),
        dash("neuron file of another model shape", "--neurons", lambda e: _other_shape_file(e)),
        dash("language not in the neuron file", "--languages", "de"),
        dash("top k 0", "--top-k", "0"),
        dash("context -1", "--context", "-1"),
        dash("max neurons 0", "--max-neurons", "0"),
        dash("window 0", "--window", "0"),
        dash("unknown flag", "--bogus", "1"),
        dash("output is an existing file", "--output", lambda e: e.paths["stats"]),
    ]


def _other_shape_file(e: Env) -> Path:
    lm = _lm()
    neurons = lm.LanguageNeurons({"en": _set([1], [2], d_mlp=64), "fr": _set([3], [], d_mlp=64)})
    return neurons.save(e.fresh("other-shape.safetensors"))


def _lape_config(e: Env) -> Path:
    path = e.fresh("lape-config.json")
    path.write_text(json.dumps({"model": "tiny-llama", "top_rate": 0.01, "detector": "lape"}))
    return path


def all_cases() -> list[Case]:
    """Every case, in a stable order; ids are unique."""
    cases = [
        *facade_cases(),
        *collect_cases(),
        *detect_cases(),
        *evaluate_cases(),
        *neuron_cases(),
        *stats_cases(),
        *peft_cases(),
        *training_cases(),
        *corpus_cases(),
        *results_cases(),
        *experiment_cases(),
        *cli_cases(),
    ]
    ids = [case.id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, duplicates
    return cases
