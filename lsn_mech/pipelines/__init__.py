"""End-to-end jobs that chain the library's layers and write a report folder."""

from lsn_mech.pipelines.landermt import LandermtConfig, LandermtReport, run_landermt
from lsn_mech.pipelines.lape import LapeConfig, LapeReport, run_lape

__all__ = [
    "LandermtConfig",
    "LandermtReport",
    "LapeConfig",
    "LapeReport",
    "run_landermt",
    "run_lape",
]
