"""Accuracy and macro-F1 of a task classifier, per language (Mondal et al. Tables 1, 3, 4, 7),
with bootstrap intervals over the test rows and paired tests between conditions.

Scores keep each row's prediction and gold label, so two conditions measured on the same
rows (no intervention and an intervention, two finetuning setups) can be compared by a
paired bootstrap (`classification_change`), and classifiers trained with several seeds can
be pooled (`pooled_scores`: mean ± sd over seeds, interval over the rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from jaxtyping import Int
from torch import Tensor

from lsn_mech import intervals
from lsn_mech.errors import LsnMechError
from lsn_mech.intervals import Bootstrap, Estimate, PairedTest, SeedSummary

__all__ = [
    "METRICS",
    "ClassificationInputError",
    "ClassificationScores",
    "accuracy_of",
    "classification_change",
    "classification_scores",
    "evaluate_classifier",
    "macro_f1_of",
    "pooled_scores",
]

METRICS = ("accuracy", "macro_f1")
"""The metrics a `ClassificationScores` reports, in percent."""


class ClassificationInputError(LsnMechError, ValueError):
    """Predictions that cannot be scored against the gold labels as given."""


# ----------------------------------------------------------------------------- statistics
# Each takes predictions ``[resamples, rows, runs]`` and gold ``[resamples, rows]`` (the
# rows resampled, every run of a row kept together) and returns ``[resamples]`` in percent.


def accuracy_of(predictions: Tensor, gold: Tensor) -> Tensor:
    """Accuracy in percent per resample, averaged over the runs (seeds)."""
    hits = predictions == gold.unsqueeze(-1)
    return hits.to(torch.float64).mean(dim=(1, 2)) * 100


def macro_f1_of(num_labels: int) -> Callable[[Tensor, Tensor], Tensor]:
    """The macro-F1 statistic for ``num_labels`` labels: per run, the mean over the labels
    present in the gold or the predictions of ``2 tp / (predicted + gold)`` (torchmetrics'
    ``multiclass_f1_score(average="macro")``), then the mean over the runs.

    Counts come from one ``bincount`` over all resamples and runs at once: memory grows
    with ``resamples × rows × runs``, not with the number of labels.
    """

    def statistic(predictions: Tensor, gold: Tensor) -> Tensor:
        resamples, rows, runs = predictions.shape
        gold = gold.unsqueeze(-1).expand(resamples, rows, runs)
        groups = torch.arange(resamples * runs, device=predictions.device).view(resamples, 1, runs)
        offset = groups * num_labels
        predicted_at = (offset + predictions).reshape(-1)
        gold_at = (offset + gold).reshape(-1)
        size = resamples * runs * num_labels
        hits = (predictions == gold).reshape(-1).to(torch.float64)
        true_positives = torch.bincount(gold_at, weights=hits, minlength=size)
        support = torch.bincount(predicted_at, minlength=size) + torch.bincount(
            gold_at, minlength=size
        )
        true_positives = true_positives.view(resamples, runs, num_labels)
        support = support.view(resamples, runs, num_labels).to(torch.float64)
        present = support > 0
        f1 = torch.where(present, 2 * true_positives / support.clamp(min=1), 0.0)
        per_run = f1.sum(dim=-1) / present.sum(dim=-1).clamp(min=1)
        return per_run.mean(dim=-1) * 100

    return statistic


def _statistic(metric: str, num_labels: int) -> Callable[[Tensor, Tensor], Tensor]:
    if metric == "accuracy":
        return accuracy_of
    if metric == "macro_f1":
        return macro_f1_of(num_labels)
    raise ClassificationInputError(f"Unknown metric {metric!r}; choose from {', '.join(METRICS)}.")


# ----------------------------------------------------------------------------- scores


def _estimate_dict(estimate: Estimate) -> dict[str, Any]:
    """`Estimate.to_dict` with ``None`` for a missing bound (NaN would not compare equal
    after a JSON round trip)."""
    return {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in estimate.to_dict().items()
    }


def _estimate_from(data: Mapping[str, Any] | None, value: float) -> Estimate:
    if not data:
        return Estimate.point(value)
    return Estimate(
        float(data.get("value", value)),
        math.nan if data.get("low") is None else float(data["low"]),
        math.nan if data.get("high") is None else float(data["high"]),
        float(data.get("level", 0.95)),
    )


@dataclass(frozen=True)
class ClassificationScores:
    """Accuracy and macro-F1 in percent over ``n`` rows, with their intervals.

    Macro-F1 averages the per-label F1 over the labels present in the gold or the
    predictions (torchmetrics' ``multiclass_f1_score(average="macro")``), so a
    classifier that always answers one label scores low even on skewed data.

    ``predictions`` holds one tuple of per-row predictions per run (one run, or one per
    seed in ``seeds``) and ``gold`` the rows' labels, so `classification_change` can pair
    two conditions on the same rows. Scores saved before intervals existed (or built by
    hand) have none of these: ``interval`` then gives a point estimate without bounds.
    """

    accuracy: float
    macro_f1: float
    n: int
    accuracy_interval: Estimate | None = None
    macro_f1_interval: Estimate | None = None
    predictions: tuple[tuple[int, ...], ...] = ()
    gold: tuple[int, ...] = ()
    num_labels: int = 0
    seeds: tuple[int, ...] = ()

    @property
    def has_rows(self) -> bool:
        """Whether the per-row predictions are kept (needed for paired tests)."""
        return bool(self.predictions) and bool(self.gold)

    def interval(self, metric: str = "accuracy") -> Estimate:
        """``metric`` with its interval (a point estimate when none was computed)."""
        _statistic(metric, 1)
        found = getattr(self, f"{metric}_interval")
        return found if found is not None else Estimate.point(getattr(self, metric))

    def seed_summary(self, metric: str = "accuracy") -> SeedSummary | None:
        """Mean ± sd and per-seed values of ``metric`` (``None`` unless pooled from seeds)."""
        if not self.seeds or not self.has_rows:
            return None
        statistic = _statistic(metric, self.num_labels)
        gold = torch.tensor(self.gold).unsqueeze(0)
        values = {
            seed: float(statistic(torch.tensor(run).view(1, -1, 1), gold))
            for seed, run in zip(self.seeds, self.predictions, strict=True)
        }
        return intervals.seed_summary(values)

    def format(self, metric: str = "accuracy", spec: str = ".1f") -> str:
        """``"47.2 [39.1, 55.0]"``, or ``"47.2 ± 1.3 [39.1, 55.0]"`` over seeds."""
        estimate = self.interval(metric)
        summary = self.seed_summary(metric)
        if summary is None or len(summary.values) < 2:
            return estimate.format(spec)
        bounds = (
            f" [{estimate.low:{spec}}, {estimate.high:{spec}}]" if estimate.has_interval else ""
        )
        return f"{summary.mean:{spec}} ± {summary.sd:{spec}}{bounds}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "n": self.n}
        if self.accuracy_interval is not None or self.macro_f1_interval is not None:
            data["intervals"] = {m: _estimate_dict(self.interval(m)) for m in METRICS}
        if self.has_rows:
            data["predictions"] = [list(run) for run in self.predictions]
            data["gold"] = list(self.gold)
            data["num_labels"] = self.num_labels
        if self.seeds:
            data["seeds"] = list(self.seeds)
            data["per_seed"] = {m: self.seed_summary(m).to_dict() for m in METRICS}  # type: ignore[union-attr]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationScores:
        """Inverse of `to_dict`; a dict of only ``accuracy``, ``macro_f1`` and ``n`` (a
        file written before intervals existed) loads without intervals or rows."""
        found = data.get("intervals") or {}
        accuracy, macro_f1 = float(data["accuracy"]), float(data["macro_f1"])
        return cls(
            accuracy=accuracy,
            macro_f1=macro_f1,
            n=int(data["n"]),
            accuracy_interval=_estimate_from(found["accuracy"], accuracy) if found else None,
            macro_f1_interval=_estimate_from(found["macro_f1"], macro_f1) if found else None,
            predictions=tuple(tuple(int(p) for p in run) for run in data.get("predictions", ())),
            gold=tuple(int(g) for g in data.get("gold", ())),
            num_labels=int(data.get("num_labels", 0)),
            seeds=tuple(int(s) for s in data.get("seeds", ())),
        )

    def _tensors(self) -> tuple[Tensor, Tensor]:
        """Predictions ``[rows, runs]`` and gold ``[rows]``: the units are the rows."""
        if not self.has_rows:
            raise ClassificationInputError(
                "These scores keep no per-row predictions (saved before intervals existed, "
                "or built by hand); evaluate again with evaluate_classifier to test them."
            )
        return torch.tensor(self.predictions).T.contiguous(), torch.tensor(self.gold)

    def __str__(self) -> str:
        return f"acc {self.format('accuracy')} / F1 {self.format('macro_f1')} (n={self.n})"


def _check_rows(predictions: Tensor, gold: Tensor, num_labels: int) -> None:
    if predictions.shape[-1:] != gold.shape or gold.ndim != 1:
        raise ClassificationInputError(
            f"predictions {tuple(predictions.shape)} and gold {tuple(gold.shape)} differ in "
            "shape; predict every row of the evaluated data set."
        )
    if gold.numel() == 0:
        raise ClassificationInputError("No rows to score; evaluate a non-empty test set.")
    labels = torch.cat([predictions.reshape(-1), gold])
    if int(labels.min()) < 0 or int(labels.max()) >= num_labels:
        raise ClassificationInputError(
            f"Labels must lie in 0..{num_labels - 1}, got {int(labels.min())}.."
            f"{int(labels.max())}; pass num_labels = the number of labels of the task."
        )


def _score_runs(
    runs: Tensor, gold: Tensor, num_labels: int, bootstrap: Bootstrap, seeds: tuple[int, ...]
) -> ClassificationScores:
    """Scores of ``runs`` ``[runs, rows]`` against ``gold`` ``[rows]`` (rows resampled)."""
    _check_rows(runs, gold, num_labels)
    data = [runs.T.contiguous().long(), gold.long()]
    accuracy = intervals.bootstrap(accuracy_of, data, bootstrap)
    macro_f1 = intervals.bootstrap(macro_f1_of(num_labels), data, bootstrap)
    return ClassificationScores(
        accuracy=round(accuracy.value, 4),
        macro_f1=round(macro_f1.value, 4),
        n=int(gold.numel()),
        accuracy_interval=accuracy,
        macro_f1_interval=macro_f1,
        predictions=tuple(tuple(int(p) for p in run) for run in runs.tolist()),
        gold=tuple(int(g) for g in gold.tolist()),
        num_labels=num_labels,
        seeds=seeds,
    )


def classification_scores(
    predictions: Int[Tensor, " n"],
    gold: Int[Tensor, " m"],
    num_labels: int,
    *,
    bootstrap: Bootstrap = intervals.DEFAULT,
) -> ClassificationScores:
    """Accuracy (micro) and macro-F1, in percent, of ``predictions`` against ``gold``, with
    percentile-bootstrap intervals over the rows (``bootstrap``: resamples, level, seed)."""
    if predictions.ndim != 1:
        raise ClassificationInputError(
            f"predictions {tuple(predictions.shape)} and gold {tuple(gold.shape)} differ in "
            "shape; predict every row of the evaluated data set."
        )
    gold = gold.to("cpu")
    return _score_runs(predictions.to("cpu").unsqueeze(0), gold, num_labels, bootstrap, ())


def pooled_scores(
    runs: Mapping[int, ClassificationScores], *, bootstrap: Bootstrap = intervals.DEFAULT
) -> ClassificationScores:
    """Scores of classifiers trained with different seeds on the same test rows, pooled.

    The value is the mean over seeds (`ClassificationScores.seed_summary` gives mean ±
    sd and the per-seed values); the interval resamples the rows with every seed's
    prediction of a row kept together, so it reflects the test set's size, while the sd
    reflects training's seed-to-seed spread.
    """
    if not runs:
        raise ClassificationInputError("pooled_scores needs at least one seed's scores.")
    first = next(iter(runs.values()))
    predictions = []
    for seed, scores in runs.items():
        tensor, _ = scores._tensors()
        if scores.gold != first.gold or tensor.shape[1] != 1:
            raise ClassificationInputError(
                f"The scores of seed {seed} are not one run on the same rows as the others; "
                "evaluate every seed's classifier on the same test set, once."
            )
        predictions.append(tensor[:, 0])
    return _score_runs(
        torch.stack(predictions),
        torch.tensor(first.gold),
        first.num_labels,
        bootstrap,
        tuple(int(s) for s in runs),
    )


def classification_change(
    scores: ClassificationScores,
    reference: ClassificationScores,
    metric: str = "accuracy",
    *,
    bootstrap: Bootstrap = intervals.DEFAULT,
) -> PairedTest:
    """``scores − reference`` in percentage points of ``metric`` with its interval and the
    two-sided paired-bootstrap p-value: both are resampled with the same rows, which is
    what makes "the intervention changes accuracy" decidable on a small test set."""
    predictions, gold = scores._tensors()
    reference_predictions, reference_gold = reference._tensors()
    if not torch.equal(gold, reference_gold):
        raise ClassificationInputError(
            "The two scores were measured on different rows; a paired test needs the same "
            "test rows in the same order."
        )
    statistic = _statistic(metric, max(scores.num_labels, reference.num_labels))
    test = intervals.paired_test(
        statistic, [predictions, gold], [reference_predictions, gold], bootstrap
    )
    return PairedTest(test.difference, test.p_value, f"{test.test} over {len(gold)} test rows")


def evaluate_classifier(
    classifier: Any,
    rows: Dataset,
    *,
    batch_size: int = 16,
    progress: bool = False,
    bootstrap: Bootstrap = intervals.DEFAULT,
) -> ClassificationScores:
    """Score ``classifier.predict(rows)`` against ``rows["label"]``, with intervals.

    Runs under whatever hook contexts are active on ``classifier.bridge``, e.g.
    ``with lsn_mech.set_to(clf.bridge, neurons["vi"], stats["vi"].statistic("p90")):``.
    """
    predictions = classifier.predict(rows, batch_size=batch_size, progress=progress)
    gold = torch.tensor([int(v) for v in rows["label"]])
    return classification_scores(predictions, gold, len(classifier.labels), bootstrap=bootstrap)
