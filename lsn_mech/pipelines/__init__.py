"""End-to-end jobs that chain the library's layers and write a report folder."""

from lsn_mech.pipelines.lape import LapeConfig, LapeReport, run_lape

__all__ = ["LapeConfig", "LapeReport", "run_lape"]
