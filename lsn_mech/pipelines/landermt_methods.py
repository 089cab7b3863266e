"""The names of the LANDeRMT job's methods and their labels in Tables 1–2.

A module of its own so that the job (`pipelines.landermt`) and its report
(`pipelines.landermt_report`) both import it, and neither imports the other back.
"""

from __future__ import annotations

__all__ = ["ALL_METHODS", "FIVE_SHOT", "METHOD_LABELS", "TRAINED_METHODS", "ZERO_SHOT"]

ZERO_SHOT, FIVE_SHOT = "0-shot", "5-shot"
TRAINED_METHODS = ("full", "lora", "layers", "lg", "ls", "landermt")
ALL_METHODS = (ZERO_SHOT, FIVE_SHOT, *TRAINED_METHODS)
METHOD_LABELS = {
    ZERO_SHOT: "0-shot",
    FIVE_SHOT: "In-context (5-shot)",
    "full": "Full finetuning",
    "lora": "LoRA",
    "layers": "Layers",
    "lg": "LANDeRMT-LG",
    "ls": "LANDeRMT-LS",
    "landermt": "LANDeRMT",
}
