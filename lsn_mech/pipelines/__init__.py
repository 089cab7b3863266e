"""End-to-end jobs that chain the library's layers and write a report folder."""

from lsn_mech.pipelines.landermt import LandermtConfig, LandermtReport, run_landermt
from lsn_mech.pipelines.lape import LapeConfig, LapeReport, run_lape
from lsn_mech.pipelines.transfer import TransferConfig, TransferReport, run_transfer

__all__ = [
    "LandermtConfig",
    "LandermtReport",
    "LapeConfig",
    "LapeReport",
    "TransferConfig",
    "TransferReport",
    "run_landermt",
    "run_lape",
    "run_transfer",
]
