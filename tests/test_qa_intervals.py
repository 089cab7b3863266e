"""QA scores with intervals over questions: exact values, files, coverage of a known F1, and
the paired test between two runs on the same questions."""

from __future__ import annotations

import json
import random

import pytest

from lsn_mech.evaluate import QAResult, QAScores, compare_qa
from lsn_mech.evaluate.qa import QAEvalError
from lsn_mech.intervals import Bootstrap
from lsn_mech.provenance import Provenance

FAST = Bootstrap(resamples=400, seed=0)


def result(exact: list[float], f1: list[float], ids: list[str] | None = None) -> QAResult:
    n = len(exact)
    return QAResult(
        language="vi",
        scores=QAScores(exact_match=sum(exact) / n, f1=sum(f1) / n, n=n),
        ids=ids or [str(i) for i in range(n)],
        predictions=["p"] * n,
        references=[["r"]] * n,
        exact_match=exact,
        f1=f1,
        provenance=Provenance(method="qa"),
    )


def synthetic(p: float, n: int, seed: int) -> QAResult:
    """Each question is answered exactly with probability ``p`` (F1 100), else half right
    (F1 50) or wrong (F1 0) with equal odds: true EM is ``100 p``, true F1 ``25 + 75 p``."""
    rng = random.Random(seed)
    hits = [100.0 if rng.random() < p else 0.0 for _ in range(n)]
    return result(hits, [h or rng.choice([0.0, 50.0]) for h in hits])


def test_scores_carry_intervals_into_text_tables_and_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    qa = synthetic(0.4, 50, seed=1)
    e = qa.estimates(FAST)
    assert e["exact_match"].value == qa.scores.exact_match and e["f1"].value == qa.scores.f1
    assert e["exact_match"].low < qa.scores.exact_match < e["exact_match"].high
    assert "EM 40.00 [" in str(qa) and "intervals over questions" in str(qa)
    scores = qa.to_pandas(view="scores")
    assert list(scores.columns) == ["metric", "n", "score", "score_low", "score_high"]
    assert scores["metric"].tolist() == ["exact_match", "f1"] and scores["n"].tolist() == [50, 50]
    assert len(qa.to_pandas()) == 50  # the default table is still one row per question
    with pytest.raises(QAEvalError, match="'questions' or 'scores'"):
        qa.to_pandas(view="cells")
    path = qa.save(tmp_path / "qa.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["intervals"]["f1"] == qa.estimates()["f1"].to_dict()
    assert QAResult.load(path) == qa
    del data["intervals"]  # as written before intervals existed
    path.write_text(json.dumps(data), encoding="utf-8")
    assert QAResult.load(path) == qa


def test_interval_covers_the_true_scores_and_shrinks() -> None:
    """150 experiments of 77 questions (a size whose scores never hit the truth exactly):
    the 95 % intervals of EM (true 60) and F1 (true 70) hold the truth in about 95 % of
    them; 16× the questions → about ¼ the width."""
    covered = 0
    for seed in range(150):
        e = synthetic(0.6, 77, seed).estimates(FAST)
        covered += e["exact_match"].low <= 60.0 <= e["exact_match"].high
        covered += e["f1"].low <= 70.0 <= e["f1"].high
    assert 0.90 <= covered / 300 <= 0.985
    small = synthetic(0.6, 50, seed=2).estimates(FAST)["f1"]
    large = synthetic(0.6, 800, seed=2).estimates(FAST)["f1"]
    assert 2.8 < small.half_width / large.half_width < 5.5


def test_compare_qa_pairs_questions_by_id() -> None:
    base = result([0.0] * 20 + [100.0] * 20, [0.0] * 20 + [100.0] * 20)
    # The same questions in another order; 8 of the first 20 now right.
    better_exact = [100.0] * 20 + [100.0] * 8 + [0.0] * 12
    ids = [str(i) for i in range(20, 40)] + [str(i) for i in range(20)]
    better = result(better_exact, better_exact, ids)
    test = compare_qa(better, base, "exact_match", bootstrap=FAST)
    assert test.difference.value == pytest.approx(20.0)
    assert test.significant and test.p_value < 0.01
    assert test.test == "paired bootstrap over questions, two-sided"
    same = compare_qa(base, base, bootstrap=FAST)
    assert same.difference.value == 0.0 and not same.significant and same.p_value == 1.0
    with pytest.raises(QAEvalError, match="share no question"):
        compare_qa(base, result([0.0], [0.0], ["x"]))
    with pytest.raises(QAEvalError, match="'f1' or 'exact_match'"):
        compare_qa(base, base, "bleu")
