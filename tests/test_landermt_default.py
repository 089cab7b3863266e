"""LANDeRMT on the embedded default (Gemma 3 270M + Bible pairs), a few steps.

What must hold whatever the budget: the neurons split as Eq. 5 says, LANDeRMT trains a
small fraction of full finetuning's parameters, only inside its masks, and the training
loss of each pair goes down. BLEU after a handful of steps is reported
(docs/landermt.md), not asserted.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_landermt_few_steps_on_the_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.pipelines import LandermtConfig, run_landermt

    config = LandermtConfig(
        directions=("en-fr", "en-zh"),
        output=tmp_path / "landermt",
        train_pairs=200,
        test_pairs=4,
        layer_batches=2,
        awareness_batches=2,
        methods=("landermt",),
        steps=6,
        max_new_tokens=16,
    )
    report = run_landermt(config, progress=False, log=lambda _: None)
    layers = report.layers.layers()
    assert len(layers) == 4 and all(0 < layer < 18 for layer in layers)
    general = report.split.general.per_layer()
    for layer in layers:  # Eq. 5: 90 % of each selected layer is general
        assert general[layer] == round(0.9 * 2048)
    assert sum(general) == 4 * round(0.9 * 2048)
    result = report.results["landermt"]
    assert result.unchanged_outside_masks is True
    # at most every neuron of 4 of 18 layers, 3 x 640 entries per Gemma neuron, + gates:
    # about 6 % of full finetuning's 268,098,176 (tied embeddings counted once)
    neurons = sum(len(report.split.pair(s, t)) for s, t in [("en", "fr"), ("en", "zh")])
    assert result.trainable_parameters <= neurons * 3 * 640 + 4 * 2 * 641
    assert result.trainable_parameters < 0.07 * 268_098_176
    from lsn_mech.training import TrainingLog

    log = TrainingLog.load(config.output / "training" / "landermt.json")
    assert len(log.losses()) == 6
    for pair in log.pairs():  # pairs alternate: compare each pair's own first and last step
        losses = log.losses(pair)
        assert len(losses) == 3 and losses[-1] < losses[0], (pair, losses)
