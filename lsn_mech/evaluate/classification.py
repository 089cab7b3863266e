"""Accuracy and macro-F1 of a task classifier, per language (Mondal et al. Tables 1, 3, 4, 7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from datasets import Dataset
from jaxtyping import Int
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

__all__ = ["ClassificationScores", "classification_scores", "evaluate_classifier"]


@dataclass(frozen=True)
class ClassificationScores:
    """Accuracy and macro-F1 in percent over ``n`` rows.

    Macro-F1 averages the per-label F1 over the labels present in the gold or the
    predictions (torchmetrics' ``multiclass_f1_score(average="macro")``), so a
    classifier that always answers one label scores low even on skewed data.
    """

    accuracy: float
    macro_f1: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"acc {self.accuracy:.1f} / F1 {self.macro_f1:.1f} (n={self.n})"


def classification_scores(
    predictions: Int[Tensor, " n"], gold: Int[Tensor, " m"], num_labels: int
) -> ClassificationScores:
    """Accuracy (micro) and macro-F1, in percent, of ``predictions`` against ``gold``."""
    if predictions.shape != gold.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and gold {tuple(gold.shape)} differ in "
            "shape; predict every row of the evaluated data set."
        )
    if predictions.numel() == 0:
        raise ValueError("No rows to score; evaluate a non-empty test set.")
    gold = gold.to(predictions.device)
    accuracy = multiclass_accuracy(predictions, gold, num_classes=num_labels, average="micro")
    f1 = multiclass_f1_score(predictions, gold, num_classes=num_labels, average="macro")
    return ClassificationScores(
        accuracy=round(float(accuracy) * 100, 4),
        macro_f1=round(float(f1) * 100, 4),
        n=int(gold.numel()),
    )


def evaluate_classifier(
    classifier: Any, rows: Dataset, *, batch_size: int = 16, progress: bool = False
) -> ClassificationScores:
    """Score ``classifier.predict(rows)`` against ``rows["label"]``.

    Runs under whatever hook contexts are active on ``classifier.bridge``, e.g.
    ``with lsn_mech.set_to(clf.bridge, neurons["vi"], stats["vi"].statistic("p90")):``.
    """
    predictions = classifier.predict(rows, batch_size=batch_size, progress=progress)
    gold = torch.tensor([int(v) for v in rows["label"]])
    return classification_scores(predictions, gold, len(classifier.labels))
