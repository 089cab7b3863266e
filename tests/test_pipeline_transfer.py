"""The transfer job end to end on a tiny model: every stage writes its result."""

from __future__ import annotations

import pytest

from lsn_mech.cli import build_parser
from lsn_mech.experiments import TransferTable
from lsn_mech.pipelines import TransferConfig, run_transfer
from lsn_mech.pipelines.transfer import TransferConfigError


def test_transfer_job_writes_every_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = TransferConfig(
        model="tiny-llama",
        targets=("vi",),
        detection_languages=("en", "vi", "zh"),
        output=tmp_path / "run",
        stats_tokens=1500,
        train_per_genre=4,
        test_per_genre=3,
        interventions=("none", "zero", "p90"),
        setups=("none", "target"),
        ppl_values=("zero", "p10"),
        ppl_tokens=128,
        epochs=1,
        max_length=48,
    )
    report = run_transfer(config, progress=False, log=lambda line: None)
    text = report.report_path.read_text()
    for heading in ("## Task: bible-genre", "## Neurons", "Fig. 1", "Tables 1/4", "Tables 3/7/8"):
        assert heading in text
    table = TransferTable.load(tmp_path / "run" / "interventions.json")
    assert [r["detector"] for r in table.rows] == ["lape", "act-prob-90p"]
    assert table.cells[0]["none"]["n"] == 18  # 6 genres x 3 test verses
    finetuning = TransferTable.load(tmp_path / "run" / "finetuning.json")
    assert [r["setup"] for r in finetuning.rows] == ["none", "target"]
    for name in ("interventions.html", "finetuning.html", "method_overlap.html", "config.json"):
        assert (tmp_path / "run" / name).exists()


def test_transfer_config_errors_name_the_fix() -> None:
    with pytest.raises(TransferConfigError, match=r"add \['hi'\]"):
        TransferConfig(targets=("hi",), detection_languages=("en", "vi")).check()
    with pytest.raises(TransferConfigError, match="not among targets"):
        TransferConfig(targets=("vi",), finetune_targets=("zh",)).check()


def test_cli_transfer_flags() -> None:
    args = build_parser().parse_args(
        ["transfer", "--targets", "vi", "zh", "--setups", "none", "--epochs", "1"]
    )
    assert args.targets == ["vi", "zh"] and args.setups == ["none"] and args.epochs == 1.0
