"""Jobs drive the command line: every flag comes from a config field, ``--help`` shows its
default, ``--config`` replays a run, and ``stats``/``ppl`` are jobs like the others."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import typing
from pathlib import Path
from typing import Literal

import pytest

from lsn_mech._version import __version__
from lsn_mech.cli import build_parser, main, parse_job
from lsn_mech.pipelines import (
    JOBS,
    LapeConfig,
    PplConfig,
    StageTimer,
    StatsConfig,
    TransferConfig,
    run_ppl,
    run_stats,
)
from lsn_mech.pipelines.configs import (
    JobConfigError,
    config_from_dict,
    config_to_dict,
    write_config,
)
from lsn_mech.pipelines.flags import add_config_flags, flag_values, format_default
from lsn_mech.stats import ActivationStats


def subparser(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


@pytest.fixture
def text_files(tmp_path: Path, texts) -> dict[str, str]:  # type: ignore[no-untyped-def]
    files = {}
    for language in ("en", "fr"):
        path = tmp_path / f"{language}.txt"
        path.write_text("\n".join(f"{i}. {t}" for i, t in enumerate(texts[language] * 5)) + "\n")
        files[language] = str(path)
    return files


# ----- flags and help ----------------------------------------------------------------
@pytest.mark.parametrize("name", list(JOBS))
def test_help_lists_every_field_with_its_default(name: str) -> None:
    job = JOBS[name]
    parser = subparser(name)
    text = "".join(parser.format_help().split())
    defaults = job.config()
    by_dest = {a.dest: a for a in parser._actions}
    for field in dataclasses.fields(job.config):
        flag = "--" + field.name.replace("_", "-")
        assert flag in text, flag
        assert field.name in job.help, f"{name}: {field.name} has no help text"
        shown = f"default: {format_default(getattr(defaults, field.name))}"
        assert shown in by_dest[field.name].help, (field.name, by_dest[field.name].help)
        assert "".join(shown.split()) in text
    for field, allowed in job.choices.items():
        if field in by_dest:
            assert "choices: " + ", ".join(map(str, allowed)) in by_dest[field].help


def test_help_shows_lists_comma_separated() -> None:
    action = next(a for a in subparser("transfer")._actions if a.dest == "targets")
    assert "(comma-separated; default: vi,hi,zh)" in action.help
    assert format_default(()) == "(empty)" and format_default(None) == "None"


@pytest.mark.parametrize("name", list(JOBS))
def test_every_model_job_has_dtype_and_device(name: str) -> None:
    fields = {f.name for f in dataclasses.fields(JOBS[name].config)}
    assert {"model", "device", "dtype"} <= fields
    options = subparser(name)._option_string_actions
    assert "--dtype" in options and "--device" in options and "--config" in options
    assert options["--dtype"].choices == ("float32", "bfloat16", "float16")


def test_a_flag_overrides_the_config_default() -> None:
    _, config = parse_job(["lape", "--top-rate", "0.05", "--seed", "3", "--dtype", "float16"])
    expected = LapeConfig(top_rate=0.05, random_seed=3, dtype="float16")
    assert config == expected
    _, config = parse_job(["stats", "--max-tokens", "7", "--output", "x"])
    assert config == StatsConfig(max_tokens=7, output=Path("x"))
    assert config.output == Path("x") and isinstance(config.output, Path)


def test_no_flags_give_the_config_defaults() -> None:
    for name, job in JOBS.items():
        assert parse_job([name])[1] == job.config(), name


def test_language_lists_take_commas_spaces_and_both() -> None:
    comma = parse_job(["transfer", "--targets", "vi,zh", "--setups", "none,target"])[1]
    space = parse_job(["transfer", "--targets", "vi", "zh", "--setups", "none", "target"])[1]
    mixed = parse_job(["transfer", "--targets", "vi,", "zh", "--setups", "none", "target"])[1]
    assert comma == space == mixed
    assert comma.targets == ("vi", "zh") and comma.setups == ("none", "target")
    landermt = parse_job(["landermt", "--directions", "en-fr,en-de", "--methods", "0-shot"])[1]
    assert landermt.directions == ("en-fr", "en-de") and landermt.methods == ("0-shot",)
    lape = parse_job(["lape", "--languages", "en", "fr,zh"])[1]
    assert lape.languages == ("en", "fr", "zh")


def test_an_empty_list_flag_gives_an_empty_tuple() -> None:
    assert parse_job(["transfer", "--setups", ""])[1].setups == ()
    assert parse_job(["transfer", "--finetune-targets"])[1].finetune_targets == ()


def test_text_files_take_spaces_or_commas_and_set_the_languages() -> None:
    spaced = parse_job(["lape", "--text-files", "en=a.txt", "fr=b.txt"])[1]
    commas = parse_job(["lape", "--text-files", "en=a.txt,fr=b.txt"])[1]
    assert spaced == commas
    assert spaced.text_files == {"en": "a.txt", "fr": "b.txt"}
    assert spaced.languages == ("en", "fr")  # every language of the files
    chosen = parse_job(["ppl", "--text-files", "en=a.txt", "fr=b.txt", "--languages", "fr"])[1]
    assert chosen.languages == ("fr",) and chosen.text_files == {"en": "a.txt", "fr": "b.txt"}


@pytest.mark.parametrize(
    "argv",
    [
        ["lape", "--dtype", "float64"],
        ["landermt", "--methods", "0-shot,qlora"],
        ["landermt", "--awareness-reduce", "sentence"],
        ["transfer", "--read-site", "resid"],
        ["transfer", "--setups", "none,all"],
        ["lape", "--text-files", "en"],
        ["stats", "--max-tokens", "many"],
    ],
)
def test_bad_flag_values_are_refused(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        parse_job(argv)
    assert exit_.value.code == 2
    assert "lsn-mech" in capsys.readouterr().err


def test_the_old_flag_spellings_still_parse() -> None:
    args = build_parser().parse_args(
        ["lape", "--seed", "4", "--split", "test", "--languages", "en,fr"]
    )
    assert args.random_seed == 4 and args.languages == ["en", "fr"]
    args = build_parser().parse_args(["landermt", "--no-learned-car", "--transfer"])
    assert args.learned_car is False and args.transfer is True
    args = build_parser().parse_args(["transfer", "--epochs", "1"])
    assert args.epochs == 1.0 and isinstance(args.epochs, float)


def test_an_ignored_old_flag_says_so(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["lape", "--split", "train", "--config", str(tmp_path / "none.json")]) == 2
    error = capsys.readouterr().err
    assert "lsn-mech lape: --split is ignored" in error and "No config file" in error


@dataclasses.dataclass
class Toy:
    mode: Literal["a", "b"] = "a"
    kinds: tuple[Literal["x", "y"], ...] = ("x",)
    sizes: tuple[int, ...] = (1, 2)
    ratio: float | int = 2.0
    flag: bool = False
    path: Path | None = None


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_config_flags(parser, Toy, defaults=False)
    return parser


def test_the_generator_reads_every_annotation_kind() -> None:
    argv = ["--mode", "b", "--kinds", "x,y", "--sizes", "3", "4,5", "--ratio", "1", "--flag"]
    values = flag_values(toy_parser().parse_args([*argv, "--path", "p"]), Toy)
    assert Toy(**values) == Toy("b", ("x", "y"), (3, 4, 5), 1.0, True, Path("p"))
    assert flag_values(toy_parser().parse_args([]), Toy) == {}  # nothing given, nothing set
    help_text = " ".join(toy_parser().format_help().split())
    assert "(default: a; choices: a, b)" in help_text
    assert "(comma-separated; default: x; choices: x, y)" in help_text


@pytest.mark.parametrize("argv", [["--mode", "c"], ["--kinds", "x,z"], ["--sizes", "1,two"]])
def test_the_generator_refuses_values_outside_the_annotation(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        toy_parser().parse_args(argv)


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"lsn-mech {__version__}\n"


# ----- config.json -------------------------------------------------------------------
CHANGED = {
    "stats": StatsConfig(languages=("en", "zh"), text_files={"en": "e.txt"}, max_tokens=9),
    "ppl": PplConfig(neurons=Path("n.safetensors"), split="train", dtype="float32"),
    "lape": LapeConfig(languages=("fr",), top_rate=0.02, random_seed=5, device="cpu"),
    "landermt": JOBS["landermt"].config(directions=("en-fr",), learned_car=False, epsilon=0.8),
    "transfer": TransferConfig(targets=("vi",), setups=(), epochs=1, lr=0.01),
    "dashboard": JOBS["dashboard"].config(
        neurons=Path("n.safetensors"), languages=("fr", "zh"), top_k=3, context=0
    ),
}


@pytest.mark.parametrize("name", list(JOBS))
def test_config_replays_exactly(name: str, tmp_path: Path) -> None:
    saved = dataclasses.replace(CHANGED[name], output=tmp_path / "run")
    path = write_config(saved, tmp_path)
    _, replayed = parse_job([name, "--config", str(path)])
    assert replayed == saved
    assert json.loads(path.read_text()) == replayed.to_dict()
    assert parse_job([name, "--config", str(tmp_path)])[1] == saved  # a folder: its config.json


def test_a_flag_overrides_a_config_value(tmp_path: Path) -> None:
    saved = LapeConfig(languages=("fr", "zh"), top_rate=0.02, random_seed=5)
    path = write_config(saved, tmp_path)
    _, config = parse_job(["lape", "--top-rate", "0.1", "--config", str(path), "--languages", "en"])
    assert config == dataclasses.replace(saved, top_rate=0.1, languages=("en",))


def test_config_file_errors_name_the_fix(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["stats", "--config", str(tmp_path / "missing.json")]) == 2
    assert "pass the config.json a job wrote" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"max_tokens": 5, "top_k": 3}))
    assert main(["stats", "--config", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no field top_k" in error and "max_tokens" in error
    with pytest.raises(JobConfigError, match="must be a list"):
        config_from_dict(TransferConfig, {"targets": "vi"})


@pytest.mark.parametrize("name", list(JOBS))
def test_config_dicts_round_trip_through_json(name: str) -> None:
    config = CHANGED[name]
    data = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(JOBS[name].config, data) == config
    assert data == json.loads(json.dumps(config.to_dict()))  # the job's own to_dict agrees


# ----- the stage timer ---------------------------------------------------------------
def test_stage_timer_records_stages_in_order(tmp_path: Path) -> None:
    lines: list[str] = []
    timer = StageTimer("demo", lines.append)
    with timer("first"):
        pass
    with timer("second"):
        pass
    with pytest.raises(RuntimeError), timer("broken"):
        raise RuntimeError
    assert list(timer.seconds) == ["first", "second"]  # a failed stage records no time
    assert all(v >= 0 for v in timer.seconds.values())
    assert lines[:2] == ["[demo] first ...", f"[demo] first: {timer.seconds['first']:.1f} s"]
    assert json.loads(timer.save(tmp_path).read_text()) == timer.seconds

    from lsn_mech.pipelines._timing import timed_stage  # the old spelling

    seconds: dict[str, float] = {}
    with timed_stage(seconds, "old", lines.append, "demo"):
        pass
    assert list(seconds) == ["old"]


# ----- stats and ppl as jobs ---------------------------------------------------------
def test_stats_job_writes_its_folder_and_replays(tmp_path, text_files) -> None:  # type: ignore[no-untyped-def]
    config = StatsConfig(
        model="tiny-llama",
        languages=("en", "fr"),
        text_files=text_files,
        max_tokens=96,
        window=32,
        output=tmp_path / "a",
    )
    report = run_stats(config, progress=False, log=lambda _: None)
    for name in ("config.json", "stats.safetensors", "summary.json", "timings.json"):
        assert (tmp_path / "a" / name).exists(), name
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config_from_dict(StatsConfig, saved) == config
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["tokens"] == {
        "en": 96,
        "fr": 96,
    }
    assert "collect statistics" in report.seconds and "Statistics written to" in report.text()
    # replay into another folder: same config but the output, same statistics
    argv = ["stats", "--config", str(tmp_path / "a"), "--output", str(tmp_path / "b")]
    assert main(argv) == 0
    again = json.loads((tmp_path / "b" / "config.json").read_text())
    assert {**again, "output": saved["output"]} == saved
    assert ActivationStats.load(tmp_path / "b" / "stats.safetensors").equal(report.stats)


def test_ppl_job_equals_the_direct_computation(tmp_path, text_files, llama) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.corpora import from_files
    from lsn_mech.corpora.sources import language_windows
    from lsn_mech.evaluate import perplexity
    from lsn_mech.neurons import LanguageNeurons, NeuronSet

    config = PplConfig(
        model="tiny-llama",
        languages=("en", "fr"),
        text_files=text_files,
        split="train",
        max_tokens=64,
        window=32,
        output=tmp_path / "plain",
    )
    report = run_ppl(config, progress=False, log=lambda _: None)
    table = json.loads((tmp_path / "plain" / "perplexity.json").read_text())
    corpus = from_files(text_files)
    for language in ("en", "fr"):
        windows = language_windows(
            corpus, language, llama.tokenizer, split="train", window=32, max_tokens=64
        )
        direct = perplexity(llama, windows, batch_size=8)
        assert table[language]["tokens"] == direct.tokens
        assert table[language]["ppl"] == pytest.approx(direct.value, rel=1e-5)
    assert report.text().startswith("en: ")
    assert (
        config_from_dict(PplConfig, json.loads((tmp_path / "plain" / "config.json").read_text()))
        == config
    )

    neurons = LanguageNeurons(
        {"en": NeuronSet([[1], [2], [3]], d_mlp=128), "fr": NeuronSet([[4], [], []], d_mlp=128)}
    )
    with_neurons = dataclasses.replace(
        config, neurons=neurons.save(tmp_path / "neurons"), output=tmp_path / "matrix"
    )
    report = run_ppl(with_neurons, progress=False, log=lambda _: None)
    for name in ("config.json", "ppl_matrix.json", "ppl_matrix.csv", "ppl_matrix.html"):
        assert (tmp_path / "matrix" / name).exists(), name
    assert report.matrix.base == pytest.approx([table["en"]["ppl"], table["fr"]["ppl"]], rel=1e-5)


# ----- tables that must match the library --------------------------------------------
def test_written_out_choices_match_the_library() -> None:
    from lsn_mech.detect.awareness import Reduce
    from lsn_mech.detect.layer_selection import Attribution
    from lsn_mech.experiments.transfer import SETUPS
    from lsn_mech.models.sites import SITES
    from lsn_mech.pipelines import jobs

    assert jobs.SETUPS == SETUPS and jobs.SITES == SITES
    assert typing.get_args(Reduce) == jobs.AWARENESS_REDUCTIONS
    assert typing.get_args(Attribution) == jobs.ATTRIBUTIONS


def test_no_import_circle_inside_pipelines() -> None:
    """Module-level and in-function imports between pipelines modules form no cycle."""
    root = Path(__file__).resolve().parents[1] / "lsn_mech" / "pipelines"
    names = {p.stem for p in root.glob("*.py")} - {"__init__"}
    edges: dict[str, set[str]] = {name: set() for name in names}
    for name in names:
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "lsn_mech.pipelines."
            ):
                edges[name].add(node.module.split(".")[2])

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert "landermt_methods" in edges["landermt_report"]
    assert [name for name in sorted(names) if reaches(name, name, set())] == []
