"""The PPL-change matrix (Tang et al., Fig. 2): deactivate one set, evaluate every language."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.corpora.sources import (
    corpus_languages,
    corpus_provenance,
    language_windows,
)
from lsn_mech.errors import InvalidSettingError, WrongInputError
from lsn_mech.evaluate.perplexity import Perplexity, perplexity
from lsn_mech.evaluate.ppl_intervals import (
    ColumnResamples,
    WindowIntervals,
    beats_test,
    bounds_text,
    column_resamples,
    column_settings,
    dominance_test,
)
from lsn_mech.intervals import DEFAULT, Bootstrap, Estimate, PairedTest, interval_header
from lsn_mech.interventions import deactivate
from lsn_mech.models.checks import expect_hooked_model
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.neurons.checks import expect_neuron_set
from lsn_mech.provenance import Provenance
from lsn_mech.results import Result, ResultTable

KINDS = ("ppl", "delta", "ratio", "log_ratio")
_NO_SAMPLES = torch.empty(0, dtype=torch.float64)


def ppl_cell_view(ppl: float, base: float, kind: str) -> float:
    """One perplexity against its base: ``ppl``, ``delta``, ``ratio`` or ``log_ratio``."""
    if kind == "ppl":
        return ppl
    if kind == "delta":
        return ppl - base
    if kind == "ratio":
        return ppl / base
    return math.log(ppl / base)


def ppl_view(ppl: list[list[float]], base: list[float], kind: str) -> list[list[float]]:
    """Perplexities against their base, as ``ppl``, ``delta``, ``ratio`` or ``log_ratio``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; choose from {', '.join(KINDS)}.")
    return [[ppl_cell_view(p, b, kind) for p, b in zip(row, base)] for row in ppl]


@dataclasses.dataclass
class PPLChangeMatrix(WindowIntervals, Result):
    """Perplexities with each row's neurons deactivated, per evaluated language (columns).

    Base perplexities differ a lot between languages, so compare effects across
    columns as ``ratio`` (ppl / base) or ``log_ratio``; ``delta`` (ppl − base) is kept
    because the paper reports it.

    Confidence intervals (`estimates`, `base_estimates`) and the tested decisions
    (`dominance_tests`, `beats_tests`) resample the evaluation windows, from each
    window's NLL sum (``window_base_nll[column][window]``,
    ``window_nll[row][column][window]``) and predicted tokens
    (``window_tokens[column][window]``), with the settings in
    ``provenance.parameters["intervals"]``. A matrix without them (saved before
    intervals existed, or built by hand) gives values without intervals.
    """

    rows: list[str]
    columns: list[str]
    base: list[float]
    ppl: list[list[float]]
    tokens: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)
    window_tokens: list[list[int]] | None = None
    window_base_nll: list[list[float]] | None = None
    window_nll: list[list[list[float]]] | None = None

    def values(self, kind: str = "log_ratio") -> list[list[float]]:
        """The matrix as ``ppl``, ``delta``, ``ratio`` or ``log_ratio``."""
        return ppl_view(self.ppl, self.base, kind)

    def select_rows(self, rows: list[str]) -> PPLChangeMatrix:
        """The same matrix restricted to some rows (in the order given)."""
        missing = [r for r in rows if r not in self.rows]
        if missing:
            raise KeyError(f"Rows {missing} are not in this matrix (rows: {', '.join(self.rows)}).")
        picked = [self.ppl[self.rows.index(r)] for r in rows]
        windows = None
        if self.window_nll is not None:
            windows = [self.window_nll[self.rows.index(r)] for r in rows]
        return dataclasses.replace(
            self, rows=list(rows), ppl=[list(p) for p in picked], window_nll=windows
        )

    # ----- intervals --------------------------------------------------------------------
    @property
    def windows(self) -> list[int]:
        """Evaluation windows per column (0 where the result does not hold them)."""
        if self.window_tokens is None:
            return [0] * len(self.columns)
        return [len(w) for w in self.window_tokens]

    @property
    def has_intervals(self) -> bool:
        """Whether every column has at least two windows to resample."""
        return self.window_nll is not None and all(n >= 2 for n in self.windows)

    def base_estimates(self) -> list[Estimate]:
        """Each column's base perplexity with its interval (bootstrap over its windows)."""
        level = self.bootstrap.level
        if self._resamples is None:
            return [Estimate.point(b, level) for b in self.base]
        return [column.base_estimate() for column in self._resamples]

    def estimates(self, kind: str = "ratio") -> list[list[Estimate]]:
        """The matrix as `values` with each cell's interval: ``ratio`` (and ``log_ratio``,
        ``delta``) paired with the base over the same windows; ``ppl`` on its own."""
        values = self.values(kind)
        if self._resamples is None:
            level = self.bootstrap.level
            return [[Estimate.point(v, level) for v in row] for row in values]
        return [
            [column.estimate(i, kind) for column in self._resamples]  # type: ignore[misc]
            for i in range(len(self.rows))
        ]

    def dominance_tests(self) -> dict[str, PairedTest]:
        """For each row named like a column: its own log PPL ratio minus the largest other
        column's, with the interval and p-value of `ppl_intervals.DOMINANCE_TEST`
        (`ppl_intervals.decision` turns one into yes / no / undecided / untested)."""
        columns = self._resamples or self._point_columns()
        tests = {}
        for i, name in enumerate(self.rows):
            if name in self.columns:
                j = self.columns.index(name)
                others = [c for k, c in enumerate(columns) if k != j]
                tests[name] = dominance_test(columns[j], others, i)
        return tests

    def beats_tests(
        self, baseline: PPLChangeMatrix, pairs: Mapping[str, str] | None = None
    ) -> dict[str, PairedTest]:
        """For each row named like a column, against its ``baseline`` row (``pairs``: row →
        baseline row; default: the rows in order, as `select_rows` split one matrix): the
        log PPL of the row minus the baseline's on the row's own language, paired over its
        windows (`ppl_intervals.PAIRED_TEST`); above 0 means the row hurts more."""
        pairs = dict(pairs) if pairs is not None else dict(zip(self.rows, baseline.rows))
        paired = self._shares_windows(baseline)
        tests = {}
        for name, other in pairs.items():
            if name not in self.columns:
                continue
            j = self.columns.index(name)
            i, k = self.rows.index(name), baseline.rows.index(other)
            if j >= len(baseline.columns) or baseline.columns[j] != name:
                raise WrongInputError(
                    f"The baseline matrix does not evaluate {name!r} in the same column; "
                    "compare matrices with the same columns (one run, split by select_rows)."
                )
            if paired:
                column = column_resamples(
                    self.window_base_nll[j],  # type: ignore[index]
                    [self.window_nll[i][j], baseline.window_nll[k][j]],  # type: ignore[index]
                    self.window_tokens[j],  # type: ignore[index]
                    column_settings(self.bootstrap, j),
                )
            else:
                column = ColumnResamples(
                    math.log(self.base[j]),
                    _NO_SAMPLES,
                    (math.log(self.ppl[i][j]), math.log(baseline.ppl[k][j])),
                    (_NO_SAMPLES, _NO_SAMPLES),
                    windows=0,
                    level=self.bootstrap.level,
                )
            tests[name] = beats_test(column, 0, 1)
        return tests

    def _shares_windows(self, other: PPLChangeMatrix) -> bool:
        """Whether both hold per-window data of the very same windows (so they pair)."""
        return (
            self.window_nll is not None
            and other.window_nll is not None
            and self.window_tokens == other.window_tokens
            and self.window_base_nll == other.window_base_nll
        )

    def _point_columns(self) -> list[ColumnResamples]:
        """Columns without resamples (no window data): point values, untested decisions."""
        level = self.bootstrap.level
        return [
            ColumnResamples(
                math.log(b),
                _NO_SAMPLES,
                tuple(math.log(row[j]) for row in self.ppl),
                tuple(_NO_SAMPLES for _ in self.ppl),
                windows=0,
                level=level,
            )
            for j, b in enumerate(self.base)
        ]

    def diagonal_dominance(self, kind: str = "log_ratio") -> dict[str, bool]:
        """For each row named like a column: is its own language the most affected one?
        (Point values only; `dominance_tests` says whether the intervals decide it.)"""
        matrix = self.values(kind)
        result = {}
        for i, row_name in enumerate(self.rows):
            if row_name in self.columns:
                j = self.columns.index(row_name)
                result[row_name] = matrix[i][j] == max(matrix[i])
        return result

    table_forms = ("wide", "long")

    def tabulate(
        self, kind: str = "ppl", *, form: str = "wide", intervals: bool = False
    ) -> ResultTable:
        """The matrix as a table.

        ``form="wide"``: one row per deactivated set, one column per evaluated language,
        the values in ``kind``; the base perplexities are the first row (``"none
        (base)"``). ``form="long"``: one row per (deactivated, evaluated) cell with every
        view: ``ppl``, ``base_ppl``, ``delta``, ``ratio``, ``log_ratio`` and the evaluated
        ``tokens`` (``kind`` is not needed there).

        ``intervals=True`` follows every value with its bounds (``ratio, ratio_low,
        ratio_high``; NaN without an interval), and the long form ends with ``windows``.
        """
        if intervals:
            return self._interval_table(kind, form)
        if form == "long":
            views = [self.values(k) for k in ("delta", "ratio", "log_ratio")]
            header = ["deactivated", "evaluated", "ppl", "base_ppl", "delta", "ratio"]
            long_rows = [
                [name, column, self.ppl[i][j], self.base[j], *(v[i][j] for v in views), tokens]
                for i, name in enumerate(self.rows)
                for j, (column, tokens) in enumerate(zip(self.columns, self.tokens))
            ]
            return ResultTable([*header, "log_ratio", "tokens"], long_rows)
        rows = [["none (base)", *self.base]]
        rows += [[name, *row] for name, row in zip(self.rows, self.values(kind))]
        return ResultTable(["deactivated", *self.columns], rows)

    def _interval_table(self, kind: str, form: str) -> ResultTable:
        base = self.base_estimates()
        if form == "long":
            views = {k: self.estimates(k) for k in ("ppl", "delta", "ratio", "log_ratio")}
            header = ["deactivated", "evaluated", *interval_header("ppl")]
            header += interval_header("base_ppl")
            for k in ("delta", "ratio", "log_ratio"):
                header += interval_header(k)
            rows = [
                [
                    name,
                    column,
                    *views["ppl"][i][j].cells(),
                    *base[j].cells(),
                    *(
                        cell
                        for k in ("delta", "ratio", "log_ratio")
                        for cell in views[k][i][j].cells()
                    ),
                    tokens,
                    windows,
                ]
                for i, name in enumerate(self.rows)
                for j, (column, tokens, windows) in enumerate(
                    zip(self.columns, self.tokens, self.windows)
                )
            ]
            return ResultTable([*header, "tokens", "windows"], rows)
        header = ["deactivated", *(h for c in self.columns for h in interval_header(c))]
        wide = [["none (base)", *(cell for b in base for cell in b.cells())]]
        if kind != "ppl":
            wide = []
        for name, row in zip(self.rows, self.estimates(kind)):
            wide.append([name, *(cell for e in row for cell in e.cells())])
        return ResultTable(header, wide)

    def _display_summary(self) -> str:
        base = ", ".join(f"{c} {b:.2f}" for c, b in zip(self.columns, self.base))
        intervals = "; no intervals (fewer than 2 windows per language, or no window data)"
        if self.has_intervals:
            intervals = (
                f"; {self.bootstrap.level:.0%} intervals: estimates(kind), "
                "to_pandas(form='long', intervals=True)"
            )
        return (
            f"{len(self.rows)} deactivated sets × {len(self.columns)} evaluated languages; "
            f"base PPL {base}{intervals}"
        )

    def _display_table(self) -> display.Table:
        """PPL per cell, coloured by log(PPL / base): red where deactivating hurts."""
        header, rows = self.tabulate("ppl")
        log = self.values("log_ratio")
        heat = [[None] * len(rows[0]), *([None, *row] for row in log)]
        return display.Table(
            header,
            rows,
            heat=heat,
            diverging=True,
            legend="cells: PPL; colour: log(PPL / base PPL), blue < 0 < red (first row: base)",
        )

    def plot(self, kind: str = "log_ratio") -> Any:
        """A plotly heatmap (rows: deactivated, columns: evaluated)."""
        from lsn_mech.plots import heatmap

        label = {"ppl": "PPL", "delta": "ΔPPL", "ratio": "PPL ratio", "log_ratio": "log PPL ratio"}
        return heatmap(
            self.values(kind),
            self.rows,
            self.columns,
            title=f"Perplexity change when deactivating neurons ({label[kind]})",
            row_title="deactivated",
            column_title="evaluated",
            colorbar=label[kind],
            diverging=kind in ("delta", "log_ratio"),
            hover=self._hover(),
        )

    def _hover(self) -> list[list[str]]:
        """Hover lines of the heatmap: each cell's PPL and ratio with their intervals."""
        level = f"{self.bootstrap.level:.0%}"
        ppl, ratio = self.estimates("ppl"), self.estimates("ratio")
        lines = []
        for row_ppl, row_ratio in zip(ppl, ratio):
            cells = []
            for p, r in zip(row_ppl, row_ratio):
                note = f" ({level} interval)" if r.has_interval else " (no interval)"
                cells.append(f"PPL {p.format('.2f')}<br>ratio {r.format('.3f', '×')}{note}")
            lines.append(cells)
        return lines

    def __str__(self) -> str:
        """Base PPL and each cell's PPL and ratio, with intervals where there are windows
        to resample."""
        width = max([12, *(len(r) + 2 for r in self.rows)])
        ratios = self.estimates("ratio")
        base = [b.format(".2f") for b in self.base_estimates()]
        cells = [
            [f"{p:.2f} (x{r.value:.2f}){bounds_text(r)}" for p, r in zip(row, ratio_row)]
            for row, ratio_row in zip(self.ppl, ratios)
        ]
        cell = max([18, *(len(c) + 2 for c in base), *(len(c) + 2 for r in cells for c in r)])
        header = "deactivated".ljust(width) + "".join(c.rjust(cell) for c in self.columns)
        lines = [header, "base PPL".ljust(width) + "".join(b.rjust(cell) for b in base)]
        for name, row in zip(self.rows, cells):
            lines.append(name.ljust(width) + "".join(c.rjust(cell) for c in row))
        if self.has_intervals:
            lines.append(
                f"[low, high]: {self.bootstrap.level:.0%} interval (bootstrap over each "
                "language's evaluation windows; ratios paired with the base)"
            )
        return "\n".join(lines)


def evaluation_windows(
    model: HookedModel,
    corpus: Any,
    languages: Sequence[str],
    *,
    split: str | None,
    window: int,
    max_tokens: int | None,
) -> dict[str, Any]:
    """Token windows of each language, tokenised once and reused for every evaluation.

    Shared by the perplexity experiments (`ppl_change_matrix`,
    `lsn_mech.experiments.deactivation_value_ppl`) so that the base and every
    intervened perplexity of a language are measured on the same tokens.
    """
    return {
        language: language_windows(
            corpus, language, model.tokenizer, split=split, window=window, max_tokens=max_tokens
        )
        for language in languages
    }


def window_perplexities(
    model: HookedModel,
    windows: Mapping[str, Any],
    languages: Sequence[str],
    *,
    batch_size: int,
    bar: Any = None,
) -> list[Perplexity]:
    """`perplexity` of each of ``languages`` on its ``windows``, one ``bar`` step each.

    The inner loop of every perplexity experiment (matrix, selection sweep, deactivation
    values): under whatever intervention is active, each language measured on the same
    windows as its base perplexity.
    """
    results = []
    for language in languages:
        results.append(perplexity(model, windows[language], batch_size=batch_size))
        if bar is not None:
            bar.update(1)
    return results


def _check_rows(model: HookedModel, neuron_sets: Mapping[str, Any]) -> None:
    """Refuse a model that is not hooked and rows that are not neuron sets, before the
    first forward pass (a single `NeuronSet` would otherwise iterate as pairs)."""
    caller = "lsn_mech.evaluate.ppl_change_matrix"
    expect_hooked_model(model, caller=caller)
    if not isinstance(neuron_sets, Mapping):
        raise WrongInputError(
            f"{caller}: neuron_sets must be a LanguageNeurons or a mapping of row names to "
            f"NeuronSets, got a {type(neuron_sets).__name__}; e.g. {{'fr': neurons['fr']}}."
        )
    for name, neuron_set in neuron_sets.items():
        expect_neuron_set(neuron_set, f"neuron_sets[{name!r}]", caller=caller)


def ppl_change_matrix(
    model: HookedModel,
    neuron_sets: Mapping[str, Any],
    corpus: Any,
    *,
    languages: Sequence[str] | None = None,
    split: str | None = "test",
    max_tokens_per_language: int | None = 20_000,
    window: int = 512,
    batch_size: int = 4,
    progress: bool = True,
    bootstrap: Bootstrap = DEFAULT,
) -> PPLChangeMatrix:
    """Perplexity of every evaluated language with each neuron set deactivated in turn.

    ``neuron_sets`` is a ``LanguageNeurons`` or any mapping of row names to
    ``NeuronSet`` (add random baselines as extra rows). Columns default to the languages
    the corpus and the neuron sets share. Each window's NLL sum is kept, so the result
    gives intervals resampled with ``bootstrap`` (at least two windows per language:
    ``max_tokens_per_language > window``).
    """
    _check_rows(model, neuron_sets)
    check_window(model, window, texts=corpus)
    check_count("batch_size", batch_size)
    if not neuron_sets:
        raise InvalidSettingError(
            "neuron_sets is empty: pass {name: NeuronSet} rows to deactivate (a "
            "LanguageNeurons works), or use lsn_mech.evaluate.perplexity for the base PPL alone."
        )
    available = corpus_languages(corpus)
    columns = (
        list(languages) if languages is not None else [x for x in neuron_sets if x in available]
    )
    if not columns:
        columns = available
    windows = evaluation_windows(
        model, corpus, columns, split=split, window=window, max_tokens=max_tokens_per_language
    )
    rows = list(neuron_sets)
    bar = tqdm(total=(len(rows) + 1) * len(columns), desc="ppl matrix", disable=not progress)

    def evaluate_all() -> list[Perplexity]:
        return window_perplexities(model, windows, columns, batch_size=batch_size, bar=bar)

    base = evaluate_all()
    found = []
    for name in rows:
        bar.set_description(f"ppl matrix [-{name}]")
        with deactivate(model, neuron_sets[name]):
            found.append(evaluate_all())
    bar.close()
    return PPLChangeMatrix(
        rows=rows,
        columns=columns,
        base=[result.value for result in base],
        ppl=[[result.value for result in row] for row in found],
        tokens=[int(windows[c].n_tokens) for c in columns],
        window_tokens=[list(result.window_tokens) for result in base],
        window_base_nll=[list(result.window_nll) for result in base],
        window_nll=[[list(result.window_nll) for result in row] for row in found],
        provenance=corpus_provenance(
            corpus,
            model_id=model_id(model),
            method="ppl_change_matrix",
            parameters={
                "split": split,
                "max_tokens_per_language": max_tokens_per_language,
                "window": window,
                "neuron_counts": {name: len(neuron_sets[name]) for name in rows},
                "intervals": bootstrap.to_dict(),
            },
        ),
    )
