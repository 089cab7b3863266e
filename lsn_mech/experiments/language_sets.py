"""LAPE depends on the language set (Mondal et al. 2025, App. A.3): the same language gets
different neurons when it is detected together with other languages.

LAPE normalises activation probabilities over the languages of the set, takes its
filter and activation bars as quantiles over all of them, and shares one budget of
``top_rate · layers · d_mlp`` neurons among them; change the other languages and every
one of these changes. `lape_set_dependency` runs LAPE on two language sets of the same
statistics and reports, for each language in both, how far its two neuron sets agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from lsn_mech._version import __version__
from lsn_mech.errors import MissingLanguageError
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.experiments.method_overlap import pair_counts
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats

SET1: tuple[str, ...] = ("en", "fr", "es", "vi", "id", "ja", "zh")
"""Mondal et al.'s Set1 ("core languages"): the languages of Tang et al.'s LAPE study."""

SET6: tuple[str, ...] = ("en", "bn", "hi", "ta", "te", "mr", "ur", "kn", "ml", "pa")
"""Mondal et al.'s Set6 ("Indian language-dominant"): English and nine Indo-Aryan and
Dravidian languages. It shares only ``en`` with `SET1`."""

BIBLE_SET1: tuple[str, ...] = SET1
"""Set1 as served by the embedded Bible corpus (it has all seven languages)."""

BIBLE_SET6: tuple[str, ...] = ("en", "bn", "hi", "fa", "ar")
"""An offline stand-in for `SET6` from the embedded Bible: English, the two Indic
languages the Bible has (``bn``, ``hi``), and the two Perso-Arabic-script languages
``fa`` and ``ar`` in place of Urdu (Set6's ``ur`` is written in that script). Like the
paper's pair, it shares only ``en`` with `BIBLE_SET1`, and it is dominated by languages
that Set1 does not contain."""

SET_NAMES: dict[tuple[str, ...], str] = {
    SET1: "Set1",
    SET6: "Set6",
    BIBLE_SET6: "Bible-Set6",
}
"""Default labels of the named sets (any other set is labelled ``A`` or ``B``)."""

Detector = Callable[..., LanguageNeurons]
"""``detector(stats, **kwargs) -> LanguageNeurons`` (default `lsn_mech.detect.lape`)."""


@dataclasses.dataclass
class LanguageSetDependency(Result):
    """The neurons of each shared language when detected in set ``A`` and in set ``B``.

    Attributes:
        names: labels of the two sets (``["Set1", "Bible-Set6"]``).
        set_a, set_b: the languages of each set, in detection order.
        languages: the languages in both sets (in ``set_a`` order): the rows.
        size_a, size_b, intersection: per shared language, its neurons when detected
            in ``A``, in ``B``, and in both.
        totals_a, totals_b: neurons of every language of ``set_a`` / ``set_b``.
        provenance: this comparison; ``parameters["runs"]`` holds each run's detector
            parameters (for LAPE: both bars and the number of selected neurons).
    """

    names: list[str]
    set_a: list[str]
    set_b: list[str]
    languages: list[str]
    size_a: list[int]
    size_b: list[int]
    intersection: list[int]
    totals_a: list[int]
    totals_b: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def union(self) -> list[int]:
        """``|A ∪ B|`` per shared language."""
        return [a + b - i for a, b, i in zip(self.size_a, self.size_b, self.intersection)]

    def jaccard(self) -> list[float]:
        """``|A ∩ B| / |A ∪ B|`` per shared language (0 when both sets are empty); 1 would
        mean the language's neurons do not depend on the other languages."""
        return [i / u if u else 0.0 for i, u in zip(self.intersection, self.union())]

    def _rows(self) -> list[list[Any]]:
        return [
            [lang, a, b, i, j]
            for lang, a, b, i, j in zip(
                self.languages, self.size_a, self.size_b, self.intersection, self.jaccard()
            )
        ]

    def tabulate(self) -> ResultTable:
        """One row per shared language: sizes, intersection, Jaccard."""
        return ResultTable(
            ["language", "size_a", "size_b", "intersection", "jaccard"], self._rows()
        )

    def _display_summary(self) -> str:
        a, b = self.names
        return (
            f"A = {a} ({len(self.set_a)} languages), B = {b} ({len(self.set_b)} languages), "
            f"{len(self.languages)} shared"
        )

    def plot(self) -> Any:
        """Plotly figure: neurons per language in each set (Mondal et al., Figs. 2–7), and
        for the shared languages how many are kept, lost and gained between the sets."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        a, b = self.names
        everyone = self.set_a + [x for x in self.set_b if x not in self.set_a]
        count_a = dict(zip(self.set_a, self.totals_a))
        count_b = dict(zip(self.set_b, self.totals_b))
        figure = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=["neurons per language", "shared languages: A vs B"],
            column_widths=[0.6, 0.4],
        )
        for name, counts in ((a, count_a), (b, count_b)):
            figure.add_trace(
                go.Bar(x=everyone, y=[counts.get(x) for x in everyone], name=name),
                row=1,
                col=1,
            )
        only_a = [s - i for s, i in zip(self.size_a, self.intersection)]
        only_b = [s - i for s, i in zip(self.size_b, self.intersection)]
        # drawn stacked by hand (same offset group, explicit bases) so that the left
        # panel can stay grouped: barmode applies to the whole figure
        jaccard = self.jaccard()
        bottom = [0] * len(self.languages)
        for name, counts, color in (
            (f"only in {a}", only_a, "#1f77b4"),
            ("in both", self.intersection, "#2ca02c"),
            (f"only in {b}", only_b, "#ff7f0e"),
        ):
            figure.add_trace(
                go.Bar(
                    x=self.languages,
                    y=counts,
                    base=list(bottom),
                    name=name,
                    marker_color=color,
                    offsetgroup="shared",
                    text=[f"J={j:.2f}" for j in jaccard] if name == "in both" else None,
                ),
                row=1,
                col=2,
            )
            bottom = [x + c for x, c in zip(bottom, counts)]
        figure.update_layout(barmode="group", title=f"Neurons detected in {a} and in {b}")
        figure.update_yaxes(title_text="neurons", row=1, col=1)
        return figure

    def __str__(self) -> str:
        a, b = self.names
        header = ["language", f"|{a}|", f"|{b}|", "|A∩B|", "Jaccard"]
        lines = [f"Neurons of the shared languages, detected with set {a} (A) and set {b} (B)"]
        lines.append(table(header, self._rows(), digits=3))
        for name, langs, totals in ((a, self.set_a, self.totals_a), (b, self.set_b, self.totals_b)):
            lines.append(f"{name}: " + ", ".join(f"{x}={n:,}" for x, n in zip(langs, totals)))
        runs = self.provenance.parameters.get("runs", {})
        bars = [
            f"{name}: filter bar {runs[name]['filter_bar']:.4g}, "
            f"activation bar {runs[name]['activation_bar']:.4g}"
            for name in self.names
            if isinstance(runs.get(name), dict) and "filter_bar" in runs[name]
        ]
        lines.extend(bars)
        return "\n".join(lines)


def compare_language_sets(
    a: LanguageNeurons,
    b: LanguageNeurons,
    *,
    names: Sequence[str] = ("A", "B"),
) -> LanguageSetDependency:
    """Compare two detections of overlapping language sets, language by language.

    ``a`` and ``b`` are the same detector's neurons for two language sets (as
    `lape_set_dependency` produces them); the rows are the languages in both.

    Raises:
        MissingLanguageError: the two sets share no language.
        NeuronShapeMismatchError: the neurons belong to different models or sites.
    """
    names = [str(n) for n in names]
    if len(names) != 2:
        raise ValueError(f"names must hold two labels (A, B), got {names!r}.")
    shared = [x for x in a.languages if x in b]
    if not shared:
        raise MissingLanguageError(
            f"The sets {names[0]} ({', '.join(a.languages)}) and {names[1]} "
            f"({', '.join(b.languages)}) share no language, so nothing can be compared; add "
            "a common language to both (the paper's Set1 and Set6 share en)."
        )
    counts = [pair_counts(a[x], b[x]) for x in shared]
    return LanguageSetDependency(
        names=names,
        set_a=list(a.languages),
        set_b=list(b.languages),
        languages=shared,
        size_a=[c[0] for c in counts],
        size_b=[c[1] for c in counts],
        intersection=[c[2] for c in counts],
        totals_a=[len(a[x]) for x in a.languages],
        totals_b=[len(b[x]) for x in b.languages],
        provenance=Provenance(
            model_id=a.model_id or b.model_id,
            corpus=a.provenance.corpus if a.provenance else None,
            corpus_hash=a.provenance.corpus_hash if a.provenance else None,
            method="compare_language_sets",
            parameters=canonical(
                {
                    "names": names,
                    "site": a.site,
                    "runs": {
                        names[0]: dict(a.provenance.parameters) if a.provenance else {},
                        names[1]: dict(b.provenance.parameters) if b.provenance else {},
                    },
                }
            ),
            library_version=__version__,
        ),
    )


def set_name(languages: Sequence[str], default: str) -> str:
    """``"Set1"``, ``"Set6"`` or ``"Bible-Set6"`` for those exact sets, else ``default``."""
    return SET_NAMES.get(tuple(languages), default)


def lape_set_dependency(
    stats: ActivationStats,
    set_a: Sequence[str],
    set_b: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    detector: Detector | None = None,
    **lape_kwargs: Any,
) -> LanguageSetDependency:
    """Run LAPE on ``stats.subset(set_a)`` and on ``stats.subset(set_b)``; compare the
    neurons each shared language gets (Mondal et al., App. A.3, Set1 vs Set6).

    Args:
        stats: statistics that cover every language of both sets.
        set_a: the first language set (e.g. `BIBLE_SET1`; the paper's `SET1`).
        set_b: the second language set (e.g. `BIBLE_SET6`; the paper's `SET6` needs a
            corpus with the Indic languages).
        names: labels of the two sets (default: ``Set1`` / ``Set6`` / ``Bible-Set6`` for
            those constants, else ``A`` / ``B``).
        detector: ``detector(stats, **lape_kwargs) -> LanguageNeurons``; default
            `lsn_mech.detect.lape`. Any set-dependent detector works (e.g.
            ``functools.partial(act_prob_90p, threshold="pooled")``).
        **lape_kwargs: passed to the detector for both runs (``top_rate=...`` etc.).

    Raises:
        MissingLanguageError: a language is not in ``stats``, or the sets share none.
        ValueError: a set repeats a language or has fewer than two languages.

    Example:
        ```python
        stats = lm.collect_stats(model, lm.corpora.bible(BIBLE_SET1 + BIBLE_SET6[1:]))
        print(lape_set_dependency(stats, BIBLE_SET1, BIBLE_SET6))  # en: |Set1|, |Bible-Set6|, ...
        ```
    """
    if detector is None:
        from lsn_mech.detect import lape as detector  # lazy, as in selection_sweep
    for label, chosen in (("set_a", set_a), ("set_b", set_b)):
        if isinstance(chosen, str) or len(chosen) < 2 or len(set(chosen)) != len(chosen):
            raise ValueError(
                f"{label} must list at least two different language codes, got {chosen!r}."
            )
    names = [str(n) for n in (names or (set_name(set_a, "A"), set_name(set_b, "B")))]
    if names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    a = detector(stats.subset(set_a), **lape_kwargs)
    b = detector(stats.subset(set_b), **lape_kwargs)
    result = compare_language_sets(a, b, names=names)
    source = stats.provenance
    detector_name = getattr(detector, "__qualname__", None) or getattr(
        getattr(detector, "func", None), "__qualname__", repr(detector)
    )
    result.provenance = Provenance(
        model_id=result.provenance.model_id or source.model_id,
        corpus=source.corpus,
        corpus_hash=source.corpus_hash,
        method="lape_set_dependency",
        parameters=canonical(
            {
                **result.provenance.parameters,
                "set_a": list(set_a),
                "set_b": list(set_b),
                "detector": detector_name,
                "detector_kwargs": lape_kwargs,
            }
        ),
        library_version=__version__,
    )
    return result
