"""Plotly figures for lsn_mech results."""

from lsn_mech.plots.heatmap import heatmap

__all__ = ["heatmap"]
