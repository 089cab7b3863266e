"""Deprecated home of `timed_stage`; the stage timer lives in `lsn_mech.pipelines.stages`."""

from lsn_mech.pipelines.stages import StageTimer, timed_stage

__all__ = ["StageTimer", "timed_stage"]
