"""The tutorials' stored outputs are what GitHub and the docs site show: every figure has a
static image (``image/png``), nothing loads from a CDN, and no output carries a local path
or a warning that is about the environment rather than the tutorial.

nbmake executes the notebooks in CI but does not store outputs; these checks read the
committed files, so they fail when a notebook is committed without re-executing it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))

#: A cell whose last statement is ``something.plot(...)`` displays a figure.
PLOT_CELL = re.compile(r"\.plot(_matrix)?\([^\n]*\)\s*(#[^\n]*)?$")
LOCAL_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/Users/|site-packages|ipykernel_\d+)")
ENVIRONMENT_WARNINGS = ("FutureWarning", "DeprecationWarning", "IProgress")


def _cells(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _outputs(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return [
        (index, output)
        for index, cell in enumerate(_cells(path))
        for output in cell.get("outputs", [])
    ]


def test_there_are_three_tutorials() -> None:
    assert len(TUTORIALS) == 3


@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.stem)
def test_every_figure_has_a_png(notebook: Path) -> None:
    plot_cells = [
        (index, cell)
        for index, cell in enumerate(_cells(notebook))
        if cell["cell_type"] == "code" and PLOT_CELL.search(_text(cell["source"]).rstrip())
    ]
    assert plot_cells, f"{notebook.name} has no figure cell: the pattern is out of date"
    missing = [
        index
        for index, cell in plot_cells
        if not any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))
    ]
    assert not missing, f"{notebook.name}: figure cells {missing} store no image/png output"


@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.stem)
def test_no_figure_loads_from_a_cdn(notebook: Path) -> None:
    for index, output in _outputs(notebook):
        html = _text(output.get("data", {}).get("text/html", ""))
        assert "cdn.plot.ly" not in html and "https://cdn" not in html, (
            f"{notebook.name} cell {index}: a figure loads plotly.js from a CDN"
        )


@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.stem)
def test_no_local_paths_or_environment_warnings(notebook: Path) -> None:
    for index, output in _outputs(notebook):
        texts = [_text(output.get("text", ""))]
        texts += [_text(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
        texts += [_text(output.get("evalue", ""))]
        for text in texts:
            found = LOCAL_PATH.search(text)
            assert found is None, (
                f"{notebook.name} cell {index} shows a local path ({found.group(0)!r}): "
                f"{text[max(0, found.start() - 80) : found.end() + 80]!r}"
            )
            noise = [w for w in ENVIRONMENT_WARNINGS if w in text]
            assert not noise, f"{notebook.name} cell {index} stores {noise}: {text[:300]!r}"
