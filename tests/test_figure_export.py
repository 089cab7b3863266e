"""Figure files open offline and as images: `lsn_mech.plots.export`, the reports that embed
the images, and ``report.html``. Tiny plotly figures, no model."""

from __future__ import annotations

import base64
import os
import re
import types
import warnings
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch
from plotly.offline import get_plotlyjs

from lsn_mech.evaluate import PPLChangeMatrix
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.pipelines.report import figure_markdown, save_figure, write_lape_report
from lsn_mech.pipelines.report_html import markdown_to_html
from lsn_mech.plots import (
    StaticImagesSkippedWarning,
    export,
    notebook_figures,
    save_figures,
    static_images_available,
)
from lsn_mech.plots.export import remote_scripts
from lsn_mech.provenance import Provenance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def heatmap() -> go.Figure:
    figure = go.Figure(go.Heatmap(z=[[1.0, 2.0], [3.0, 4.0]], x=["en", "fr"], y=["en", "fr"]))
    return figure.update_layout(width=320, height=240, title="tiny")


def bars() -> go.Figure:
    return go.Figure(go.Bar(x=["a", "b", "c"], y=[3, 1, 2]))


@pytest.fixture(autouse=True)
def fresh_exporter_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no cached answer and no message given; plotly's renderer is
    restored afterwards."""
    export._reset_for_tests()
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    yield
    export._reset_for_tests()


def no_exporter(monkeypatch: pytest.MonkeyPatch, problem: str = "kaleido is not installed") -> None:
    monkeypatch.setattr(export, "_kaleido_problem", lambda: problem)


def require_static_images() -> None:
    """Skip where no exporter works; CI installs kaleido and Chromium, so there it fails."""
    if not static_images_available():
        problem = export.static_images_problem()
        if os.environ.get("CI"):
            pytest.fail(f"CI must write PNG figures ({problem}); .ci/run installs them")
        pytest.skip(problem)


# ----------------------------------------------------------------------------- HTML


def test_html_loads_plotly_js_from_one_shared_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_exporter(monkeypatch)
    with pytest.warns(StaticImagesSkippedWarning):
        saved = save_figures({"a": heatmap(), "b": bars()}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", "plotly.min.js"]
    for figure in saved.values():
        page = figure.html.read_text()
        assert remote_scripts(page) == []
        assert re.findall(r'<script[^>]*src="([^"]+)"', page) == ["plotly.min.js"]
        assert "cdn.plot.ly" not in page
    assert (tmp_path / "plotly.min.js").read_text() == get_plotlyjs()


def test_a_stale_plotly_js_is_replaced_and_a_current_one_kept(tmp_path: Path) -> None:
    (tmp_path / "plotly.min.js").write_text("/* plotly.js from another version */")
    save_figures({"a": heatmap()}, tmp_path, png=False)
    bundle = tmp_path / "plotly.min.js"
    assert bundle.read_text() == get_plotlyjs()
    before = bundle.stat().st_mtime_ns
    save_figures({"b": bars()}, tmp_path, png=False)
    assert bundle.stat().st_mtime_ns == before  # same bundle: not rewritten


def test_self_contained_html_embeds_plotly_js(tmp_path: Path) -> None:
    saved = save_figures({"alone": heatmap()}, tmp_path, png=False, self_contained=True)
    page = saved["alone"].html.read_text()
    assert remote_scripts(page) == [] and "<script src" not in page
    assert get_plotlyjs()[:2000] in page
    assert not (tmp_path / "plotly.min.js").exists()


def test_remote_scripts_finds_cdn_sources() -> None:
    page = '<script src="https://cdn.plot.ly/plotly.js"></script><script src="plotly.min.js">'
    assert remote_scripts(page) == ["https://cdn.plot.ly/plotly.js"]
    assert remote_scripts("<script src='//cdn.x/y.js'></script>") == ["//cdn.x/y.js"]


# ---------------------------------------------------------------------- static images


def test_png_and_svg_are_real_images_of_the_figure_size(tmp_path: Path) -> None:
    require_static_images()
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", StaticImagesSkippedWarning)
        saved = save_figures({"a": heatmap(), "b": bars()}, tmp_path, svg=True)
    assert saved["a"].png is not None and saved["a"].svg is not None
    assert saved["a"].png.read_bytes().startswith(PNG_MAGIC)
    with Image.open(saved["a"].png) as image:
        assert image.size == (320, 240)  # the figure's layout size
    with Image.open(saved["b"].png) as image:
        assert image.size == (700, 500)  # plotly's default where the layout has none
    assert "<svg" in saved["b"].svg.read_text()[:500]
    assert saved["a"].paths == [tmp_path / "a.html", tmp_path / "a.png", tmp_path / "a.svg"]


def test_missing_exporter_is_said_once_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_exporter(monkeypatch)
    assert not static_images_available()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = save_figure(heatmap(), tmp_path / "one")
        second = save_figures({"two": bars(), "three": bars()}, tmp_path)
        notebook_figures()
    skipped = [w for w in caught if issubclass(w.category, StaticImagesSkippedWarning)]
    assert len(skipped) == 1
    message = str(skipped[0].message)
    assert "kaleido is not installed" in message
    assert "pip install 'lsn-mech[images]'" in message and "apt-get install chromium" in message
    assert first == ["one.html"]
    assert all(figure.png is None and figure.svg is None for figure in second.values())
    assert not list(tmp_path.glob("*.png"))


def test_no_browser_on_path_means_no_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "_kaleido_problem", lambda: None)
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    assert export.static_images_problem() == "no Chrome or Chromium was found for kaleido to drive"
    export._reset_for_tests()
    monkeypatch.setenv("BROWSER_PATH", "/nowhere/chrome")
    assert "BROWSER_PATH=/nowhere/chrome does not exist" in export.static_images_problem()


def test_browser_path_prefers_browser_path_then_the_first_name_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = {"google-chrome": "/usr/bin/google-chrome", "msedge": "/usr/bin/msedge"}
    monkeypatch.setattr(export.shutil, "which", found.get)
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    assert export.browser_path() == "/usr/bin/google-chrome"  # before msedge in BROWSER_NAMES
    own = tmp_path / "my-chrome"
    own.write_text("")
    monkeypatch.setenv("BROWSER_PATH", str(own))
    assert export.browser_path() == str(own)
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing"))
    assert export.browser_path() is None


def test_a_browser_that_fails_turns_images_off_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "static_images_problem", lambda: export._problem)
    calls = []

    def broken(jobs: list) -> list:
        calls.append(len(jobs))
        raise OSError("chromium:   cannot execute\n binary file")

    monkeypatch.setattr(export, "_render", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_figures({"a": heatmap()}, tmp_path)
        save_figures({"b": heatmap()}, tmp_path)  # the cached answer: no second try
    assert calls == [1, 1]  # tried twice, then the cached answer: no more tries
    assert [str(w.message) for w in caught if w.category is StaticImagesSkippedWarning] == [
        export.skipped_images_message(
            "kaleido failed twice (OSError: chromium: cannot execute binary file)"
        )
        + " The interactive .html figures open offline."
    ]


def test_a_failed_render_is_retried_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "static_images_problem", lambda: None)
    attempts = []

    class JavascriptError(RuntimeError):  # kaleido's, when its page was not ready in time
        pass

    def flaky(jobs: list) -> list:
        attempts.append(len(jobs))
        if len(attempts) == 1:
            raise JavascriptError("ReferenceError: kaleido_scopes is not defined")
        return [PNG_MAGIC + b"rest"] * len(jobs)

    monkeypatch.setattr(export, "_render", flaky)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaticImagesSkippedWarning)
        saved = save_figures({"a": heatmap()}, tmp_path)
    assert attempts == [1, 1]
    assert saved["a"].png.read_bytes() == PNG_MAGIC + b"rest"


def test_an_unrelated_bug_is_raised_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "static_images_problem", lambda: None)
    monkeypatch.setattr(export, "_render", lambda jobs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_figures({"a": heatmap()}, tmp_path)


# ----------------------------------------------------------------------------- notebooks


def test_notebook_figures_picks_image_renderers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "static_images_problem", lambda: None)
    assert notebook_figures() == "lsn_mech_png" == pio.renderers.default
    interactive = notebook_figures(interactive=True)
    assert interactive == "lsn_mech_notebook+lsn_mech_png" == pio.renderers.default
    assert "connected" not in pio.renderers.default  # never plotly.js from a CDN


def test_the_notebook_renderer_gives_image_png(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "static_images_problem", lambda: None)
    monkeypatch.setattr(export, "_render", lambda jobs: [PNG_MAGIC + b"x"])
    notebook_figures()
    bundle = pio.renderers[export.PNG_RENDERER].to_mimebundle(heatmap().to_dict())
    assert base64.b64decode(bundle["image/png"]) == PNG_MAGIC + b"x"


def test_notebook_figures_without_exporter_embeds_plotly_js(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_exporter(monkeypatch)
    with pytest.warns(StaticImagesSkippedWarning, match="lsn-mech\\[images\\]"):
        assert notebook_figures(interactive=True) == "lsn_mech_notebook" == pio.renderers.default
    page = pio.renderers["lsn_mech_notebook"].to_mimebundle(heatmap().to_dict())["text/html"]
    assert remote_scripts(page) == [] and "mathjax" not in page.lower()


# ----------------------------------------------------------------------------- reports


def tiny_lape_inputs() -> dict:
    sets = {
        "en": NeuronSet.from_pairs([(0, 1), (1, 3)], n_layers=2, d_mlp=4),
        "fr": NeuronSet.from_pairs([(0, 1), (1, 0)], n_layers=2, d_mlp=4),
    }
    provenance = Provenance(model_id="tiny", method="lape", parameters={"top_rate": 0.01})
    neurons = LanguageNeurons(sets, provenance=provenance)
    random = LanguageNeurons(
        {k: NeuronSet.from_pairs([(0, 2), (1, 2)], n_layers=2, d_mlp=4) for k in sets}
    )
    names = ["en", "fr"]
    return {
        "config": {"model": "tiny", "eval_tokens": 64},
        "stats": types.SimpleNamespace(tokens=torch.tensor([300, 300])),
        "neurons": neurons,
        "random_neurons": random,
        "matrix": PPLChangeMatrix(names, names, [10.0, 12.0], [[20.0, 12.5], [11.0, 30.0]], [1, 1]),
        "random_matrix": PPLChangeMatrix(
            names, names, [10.0, 12.0], [[10.5, 12.0], [10.0, 12.5]], [1, 1]
        ),
        "seconds": {"everything": 1.0},
    }


def image_references(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_without_images_says_so_once_and_links_the_html(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_exporter(monkeypatch)
    with pytest.warns(StaticImagesSkippedWarning):
        write_lape_report(tmp_path, **tiny_lape_inputs())
    text = (tmp_path / "report.md").read_text()
    assert image_references(text) == []
    skipped = [line for line in text.splitlines() if "were skipped" in line]
    assert len(skipped) == 1 and "pip install 'lsn-mech[images]'" in skipped[0]
    links = re.findall(r"\]\(([^)]+\.html)\)", text)
    assert sorted(links) == sorted(
        f"{stem}.html"
        for stem in ("ppl_matrix", "ppl_matrix_random", "layer_distribution", "overlap")
    )
    assert all((tmp_path / link).exists() for link in links)
    page = (tmp_path / "report.html").read_text()
    assert "were skipped" in page and remote_scripts(page) == [] and "<img" not in page


def test_report_embeds_every_png_it_wrote(tmp_path: Path) -> None:
    require_static_images()
    write_lape_report(tmp_path, **tiny_lape_inputs())
    text = (tmp_path / "report.md").read_text()
    images = image_references(text)
    assert sorted(images) == sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(images) == 4 and "were skipped" not in text
    for name in images:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    page = (tmp_path / "report.html").read_text()
    assert sorted(re.findall(r'<img[^>]* src="([^"]+)"', page)) == sorted(images)


def test_figure_markdown_shows_the_image_and_links_the_interactive_figure() -> None:
    with_png = export.SavedFigure(Path("out/m.html"), Path("out/m.png"))
    assert (
        figure_markdown(with_png, "Matrix") == "![Matrix](m.png)\n\n[Matrix (interactive)](m.html)"
    )
    assert figure_markdown(export.SavedFigure(Path("m.html")), "M") == "[M (interactive)](m.html)"


def test_markdown_to_html_renders_the_report_subset_and_escapes_the_rest() -> None:
    text = "\n".join(
        [
            "# Title",
            "",
            "Some **bold** `code <b>` and <script>alert(1)</script> [link](a.html).",
            "",
            "| lang | n |",
            "|---|---|",
            "| en | 3 |",
            "",
            "- item `x`",
            "    - nested",
            "- second",
            "",
            "```text",
            "a < b",
            "```",
            "",
            "> note",
            "",
            "![cap](f.png)",
        ]
    )
    page = " ".join(markdown_to_html(text, title="T").split())
    assert "<h1>Title</h1>" in page and "<strong>bold</strong>" in page
    assert "<code>code &lt;b&gt;</code>" in page and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<a href="a.html">link</a>' in page
    assert "<th>lang</th> <th>n</th>" in page and "<td>en</td> <td>3</td>" in page
    assert "<li>item <code>x</code><ul> <li>nested</li> </ul> </li> <li>second</li>" in page
    assert '<pre><code class="language-text">a &lt; b </code></pre>' in page
    assert "<blockquote> <p>note</p> </blockquote>" in page
    assert '<img alt="cap" src="f.png" />' in page


# ------------------------------------------------------------------- in a real browser


@pytest.mark.slow
def test_figure_and_report_render_offline_in_chromium(tmp_path: Path) -> None:
    """plotly.js loads from disk (the DOM has plotly's drawn svg) and report.html shows its
    PNG figures: screenshots of both are not blank."""
    from browser import assert_not_blank, rendered_dom, screenshot

    write_lape_report(tmp_path, **tiny_lape_inputs())
    figure = tmp_path / "ppl_matrix.html"
    assert 'class="main-svg"' in rendered_dom(figure)
    assert_not_blank(screenshot(figure, tmp_path / "figure.png", width=600, height=500))
    report = tmp_path / "report.html"
    dom = rendered_dom(report)
    if static_images_available():
        assert dom.count("<img") == 4
    assert_not_blank(screenshot(report, tmp_path / "report-shot.png", width=1000, height=1400))
