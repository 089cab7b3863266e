"""Perplexity and the perplexity-change matrix."""

from lsn_mech.evaluate.perplexity import Perplexity, final_residual, perplexity, token_nll_sum
from lsn_mech.evaluate.ppl_matrix import PPLChangeMatrix, ppl_change_matrix

__all__ = [
    "PPLChangeMatrix",
    "Perplexity",
    "final_residual",
    "perplexity",
    "ppl_change_matrix",
    "token_nll_sum",
]
