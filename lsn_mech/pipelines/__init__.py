"""End-to-end jobs that chain the library's layers and write a report folder.

Each job is a config dataclass and a ``run_*`` function; `JOBS` names them for the
command line (`lsn_mech.pipelines.jobs`).
"""

from lsn_mech.pipelines.dashboard import DashboardConfig, DashboardReport, run_dashboard
from lsn_mech.pipelines.jobs import JOBS, Job
from lsn_mech.pipelines.landermt import LandermtConfig, LandermtReport, run_landermt
from lsn_mech.pipelines.lape import LapeConfig, LapeReport, run_lape
from lsn_mech.pipelines.ppl import PplConfig, PplReport, run_ppl
from lsn_mech.pipelines.stages import StageTimer
from lsn_mech.pipelines.stats import StatsConfig, StatsReport, run_stats
from lsn_mech.pipelines.transfer import TransferConfig, TransferReport, run_transfer

__all__ = [
    "JOBS",
    "DashboardConfig",
    "DashboardReport",
    "Job",
    "LandermtConfig",
    "LandermtReport",
    "LapeConfig",
    "LapeReport",
    "PplConfig",
    "PplReport",
    "StageTimer",
    "StatsConfig",
    "StatsReport",
    "TransferConfig",
    "TransferReport",
    "run_dashboard",
    "run_landermt",
    "run_lape",
    "run_ppl",
    "run_stats",
    "run_transfer",
]
