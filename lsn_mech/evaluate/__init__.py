"""Perplexity, the perplexity-change matrix, and machine translation (BLEU / chrF)."""

from lsn_mech.evaluate.perplexity import Perplexity, final_residual, perplexity, token_nll_sum
from lsn_mech.evaluate.ppl_matrix import PPLChangeMatrix, ppl_change_matrix
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
    "PPLChangeMatrix",
    "Perplexity",
    "TranslationEvalError",
    "TranslationResult",
    "TranslationScores",
    "TranslationTable",
    "evaluate_directions",
    "evaluate_translation",
    "few_shot_prompt",
    "final_residual",
    "icl_shots",
    "perplexity",
    "ppl_change_matrix",
    "token_nll_sum",
    "translate",
    "translation_scores",
]
