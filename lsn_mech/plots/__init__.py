"""Plotly figures for lsn_mech results, and the files and notebook outputs they become."""

from lsn_mech.plots.export import (
    SavedFigure,
    StaticImagesSkippedWarning,
    notebook_figures,
    save_figure,
    save_figures,
    static_images_available,
)
from lsn_mech.plots.heatmap import heatmap

__all__ = [
    "SavedFigure",
    "StaticImagesSkippedWarning",
    "heatmap",
    "notebook_figures",
    "save_figure",
    "save_figures",
    "static_images_available",
]
