"""Perplexity, the perplexity-change matrix, and machine translation (BLEU / chrF)."""

from lsn_mech.evaluate.classification import (
    ClassificationScores,
    classification_scores,
    evaluate_classifier,
)
from lsn_mech.evaluate.perplexity import (
    Perplexity,
    final_residual,
    perplexity,
    perplexity_from_windows,
    token_nll_sum,
)
from lsn_mech.evaluate.ppl_matrix import PPLChangeMatrix, evaluation_windows, ppl_change_matrix
from lsn_mech.evaluate.qa import (
    QAEvalError,
    QAResult,
    QAScores,
    answer_questions,
    evaluate_qa,
    qa_batches,
    qa_scores,
    qa_target,
    tokenize_qa,
)
from lsn_mech.evaluate.translation import (
    TranslationEvalError,
    TranslationResult,
    TranslationScores,
    TranslationTable,
    evaluate_directions,
    evaluate_translation,
    few_shot_prompt,
    icl_shots,
    translate,
    translation_scores,
)

__all__ = [
    "ClassificationScores",
    "PPLChangeMatrix",
    "Perplexity",
    "QAEvalError",
    "QAResult",
    "QAScores",
    "TranslationEvalError",
    "TranslationResult",
    "TranslationScores",
    "TranslationTable",
    "answer_questions",
    "classification_scores",
    "evaluate_classifier",
    "evaluate_directions",
    "evaluate_qa",
    "evaluate_translation",
    "evaluation_windows",
    "few_shot_prompt",
    "final_residual",
    "icl_shots",
    "perplexity",
    "perplexity_from_windows",
    "ppl_change_matrix",
    "qa_batches",
    "qa_scores",
    "qa_target",
    "token_nll_sum",
    "tokenize_qa",
    "translate",
    "translation_scores",
]
