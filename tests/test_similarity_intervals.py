"""The mean SES curve's interval over aligned texts: exact per-text similarities, coverage
of a known mean cosine, shrinkage, files with and without bounds."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lsn_mech.experiments as ex
from lsn_mech.experiments.similarity import text_similarity
from lsn_mech.intervals import Bootstrap

FAST = Bootstrap(resamples=400, seed=0)


def rotated_pairs(angles: torch.Tensor) -> torch.Tensor:
    """Two languages × 1 layer: text ``t`` of ``a`` is (1, 0), of ``b`` at ``angles[t]``,
    so its cosine is ``cos(angles[t])``."""
    a = torch.stack([torch.ones_like(angles), torch.zeros_like(angles)], dim=-1)
    b = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    return torch.stack([a, b]).unsqueeze(1)  # [lang 2, layer 1, text, 2]


def test_text_similarity_averages_the_pairs_of_each_text() -> None:
    angles = torch.tensor([0.0, math.pi / 2, math.pi / 3], dtype=torch.float64)
    per_text = text_similarity(rotated_pairs(angles))
    assert per_text[:, 0].tolist() == pytest.approx([1.0, 0.0, 0.5], abs=1e-12)
    result = ex.similarity_from_embeddings(rotated_pairs(angles), ["a", "b"], bootstrap=FAST)
    assert result.mean[0] == pytest.approx(per_text.mean().item(), abs=1e-12)
    (e,) = result.mean_estimates()
    assert e.low < e.value < e.high
    assert result.provenance.parameters["intervals"]["resamples"] == 400
    three = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(0))  # 3 languages
    curve = ex.mean_over_pairs(ex.pair_similarity(three))
    assert text_similarity(three).mean(0).tolist() == pytest.approx(curve.tolist(), abs=1e-12)


def test_mean_interval_covers_the_true_mean_cosine_and_shrinks() -> None:
    """Angles uniform on [0, π/2]: the true mean cosine is 2/π. 100 draws of 60 texts hold
    it in about 95 % of the intervals; 16× the texts give about ¼ the width."""
    truth = 2 / math.pi
    generator = torch.Generator().manual_seed(0)
    covered = 0
    for _ in range(100):
        angles = torch.rand(60, generator=generator) * math.pi / 2
        (e,) = ex.similarity_from_embeddings(
            rotated_pairs(angles), ["a", "b"], bootstrap=FAST
        ).mean_estimates()
        covered += e.low <= truth <= e.high
    assert 0.88 <= covered / 100 <= 1.0
    widths = []
    for n in (50, 800):
        angles = torch.rand(n, generator=generator) * math.pi / 2
        (e,) = ex.similarity_from_embeddings(
            rotated_pairs(angles), ["a", "b"], bootstrap=FAST
        ).mean_estimates()
        widths.append(e.half_width)
    assert 2.8 < widths[0] / widths[1] < 5.5


def test_tables_plot_and_files_hold_the_bounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    angles = torch.rand(30, generator=torch.Generator().manual_seed(1))
    result = ex.similarity_from_embeddings(rotated_pairs(angles), ["a", "b"], bootstrap=FAST)
    wide = result.to_pandas()
    assert list(wide.columns) == ["layer", "mean", "mean_low", "mean_high", "a-b"]
    assert wide["mean_low"][0] == result.mean_low[0] and "[" in str(result)
    trace = result.plot(pairs=False).data[0]
    assert trace.error_y.array[0] == result.mean_high[0] - result.mean[0]
    path = result.save(tmp_path / "ses.json")
    assert ex.SentenceSimilarity.load(path) == result
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["mean_low"], data["mean_high"]  # a file from before intervals
    path.write_text(json.dumps(data), encoding="utf-8")
    old = ex.SentenceSimilarity.load(path)
    assert old.mean == result.mean and not old.mean_estimates()[0].has_interval
    assert list(old.to_pandas().columns)[:4] == ["layer", "mean", "mean_low", "mean_high"]
