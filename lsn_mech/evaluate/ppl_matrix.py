"""The PPL-change matrix (Tang et al., Fig. 2): deactivate one set, evaluate every language."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.corpora.sources import (
    corpus_languages,
    corpus_provenance,
    language_windows,
)
from lsn_mech.errors import InvalidSettingError, WrongInputError
from lsn_mech.evaluate.perplexity import Perplexity, perplexity
from lsn_mech.interventions import deactivate
from lsn_mech.models.checks import expect_hooked_model
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.neurons.checks import expect_neuron_set
from lsn_mech.provenance import Provenance
from lsn_mech.results import Result, ResultTable

KINDS = ("ppl", "delta", "ratio", "log_ratio")


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
class PPLChangeMatrix(Result):
    """Perplexities with each row's neurons deactivated, per evaluated language (columns).

    Base perplexities differ a lot between languages, so compare effects across
    columns as ``ratio`` (ppl / base) or ``log_ratio``; ``delta`` (ppl − base) is kept
    because the paper reports it.
    """

    rows: list[str]
    columns: list[str]
    base: list[float]
    ppl: list[list[float]]
    tokens: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def values(self, kind: str = "log_ratio") -> list[list[float]]:
        """The matrix as ``ppl``, ``delta``, ``ratio`` or ``log_ratio``."""
        return ppl_view(self.ppl, self.base, kind)

    def select_rows(self, rows: list[str]) -> PPLChangeMatrix:
        """The same matrix restricted to some rows (in the order given)."""
        missing = [r for r in rows if r not in self.rows]
        if missing:
            raise KeyError(f"Rows {missing} are not in this matrix (rows: {', '.join(self.rows)}).")
        picked = [self.ppl[self.rows.index(r)] for r in rows]
        return dataclasses.replace(self, rows=list(rows), ppl=[list(p) for p in picked])

    def diagonal_dominance(self, kind: str = "log_ratio") -> dict[str, bool]:
        """For each row named like a column: is its own language the most affected one?"""
        matrix = self.values(kind)
        result = {}
        for i, row_name in enumerate(self.rows):
            if row_name in self.columns:
                j = self.columns.index(row_name)
                result[row_name] = matrix[i][j] == max(matrix[i])
        return result

    table_forms = ("wide", "long")

    def tabulate(self, kind: str = "ppl", *, form: str = "wide") -> ResultTable:
        """The matrix as a table.

        ``form="wide"``: one row per deactivated set, one column per evaluated language,
        the values in ``kind``; the base perplexities are the first row (``"none
        (base)"``). ``form="long"``: one row per (deactivated, evaluated) cell with every
        view: ``ppl``, ``base_ppl``, ``delta``, ``ratio``, ``log_ratio`` and the evaluated
        ``tokens`` (``kind`` is not needed there).
        """
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

    def _display_summary(self) -> str:
        base = ", ".join(f"{c} {b:.2f}" for c, b in zip(self.columns, self.base))
        return (
            f"{len(self.rows)} deactivated sets × {len(self.columns)} evaluated languages; "
            f"base PPL {base}"
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
        )

    def __str__(self) -> str:
        width = max([12, *(len(r) + 2 for r in self.rows)])
        cell = 18
        header = "deactivated".ljust(width) + "".join(c.rjust(cell) for c in self.columns)
        lines = [header, "base PPL".ljust(width) + "".join(f"{b:{cell}.2f}" for b in self.base)]
        for name, row, ratios in zip(self.rows, self.ppl, self.values("ratio")):
            cells = "".join(f"{p:.2f} (x{r:.2f})".rjust(cell) for p, r in zip(row, ratios))
            lines.append(name.ljust(width) + cells)
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
) -> PPLChangeMatrix:
    """Perplexity of every evaluated language with each neuron set deactivated in turn.

    ``neuron_sets`` is a ``LanguageNeurons`` or any mapping of row names to
    ``NeuronSet`` (add random baselines as extra rows). Columns default to the languages
    the corpus and the neuron sets share.
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

    def evaluate_all() -> list[float]:
        found = window_perplexities(model, windows, columns, batch_size=batch_size, bar=bar)
        return [result.value for result in found]

    base = evaluate_all()
    ppl = []
    for name in rows:
        bar.set_description(f"ppl matrix [-{name}]")
        with deactivate(model, neuron_sets[name]):
            ppl.append(evaluate_all())
    bar.close()
    return PPLChangeMatrix(
        rows=rows,
        columns=columns,
        base=base,
        ppl=ppl,
        tokens=[int(windows[c].n_tokens) for c in columns],
        provenance=corpus_provenance(
            corpus,
            model_id=model_id(model),
            method="ppl_change_matrix",
            parameters={
                "split": split,
                "max_tokens_per_language": max_tokens_per_language,
                "window": window,
                "neuron_counts": {name: len(neuron_sets[name]) for name in rows},
            },
        ),
    )
