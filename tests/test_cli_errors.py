"""What ``lsn-mech`` prints when something goes wrong: a user's mistake is one line
``lsn-mech: error: ...`` and exit 2, Ctrl-C / SIGTERM one line naming the checkpoint and
exit 130, and only a genuine bug a traceback (with a line asking to report it) and exit 1."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lsn_mech import cli
from lsn_mech.cli import BUG_REPORT, main
from lsn_mech.errors import (
    DeviceUnavailableError,
    HubUnavailableError,
    InvalidSettingError,
    MissingDependencyError,
    OutputFolderError,
    UnknownModelError,
)
from lsn_mech.models import build_tiny, loading
from lsn_mech.pipelines.jobs import JOBS

PREFIX = "lsn-mech: error: "
EVERY_COMMAND = [*JOBS, "info"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(PREFIX)]


def assert_one_error_line(stderr: str, *needles: str) -> str:
    """Exactly one ``lsn-mech: error:`` line, the last one, no traceback; returns it."""
    assert "Traceback" not in stderr, stderr
    assert "usage:" not in stderr, stderr
    found = error_lines(stderr)
    assert len(found) == 1, stderr
    assert stderr.rstrip("\n").splitlines()[-1] == found[0]
    for needle in needles:
        assert needle in found[0], found[0]
    return found[0]


def with_run(monkeypatch: pytest.MonkeyPatch, name: str, run: Callable[..., object]) -> None:
    """Replace job ``name``'s run function (the job table holds frozen dataclasses)."""
    monkeypatch.setitem(JOBS, name, dataclasses.replace(JOBS[name], run=run))


def raising(error: BaseException) -> Callable[..., object]:
    def run(config: object, log: Callable[[str], None] = print) -> object:
        raise error

    return run


# ----- bad flags: argparse's errors, one line ------------------------------------------
BAD_FLAGS = [
    (["stats", "--window", "abc"], "--window", "lsn-mech stats --help"),
    (["stats", "--bogus"], "--bogus", "lsn-mech stats --help"),
    (["ppl", "--dtype", "float13"], "--dtype", "lsn-mech ppl --help"),
    (["ppl", "--max-tokens", "many"], "--max-tokens", "lsn-mech ppl --help"),
    (["lape", "--top-rate", "x"], "--top-rate", "lsn-mech lape --help"),
    (["lape", "--text-files", "en"], "--text-files", "lsn-mech lape --help"),
    (["landermt", "--methods", "magic"], "--methods", "lsn-mech landermt --help"),
    (["landermt", "--epochs"], "--epochs", "lsn-mech landermt --help"),
    (["transfer", "--read-site", "resid"], "--read-site", "lsn-mech transfer --help"),
    (["transfer", "--setups", "none,all"], "--setups", "lsn-mech transfer --help"),
    (["dashboard", "--top-k", "many"], "--top-k", "lsn-mech dashboard --help"),
    (["info", "--verbose"], "--verbose", "lsn-mech info --help"),
    (["nosuch"], "nosuch", "lsn-mech --help"),
    ([], "COMMAND", "lsn-mech --help"),
]


@pytest.mark.parametrize(("argv", "flag", "hint"), BAD_FLAGS)
def test_a_bad_flag_is_one_line_and_exit_2(argv, flag, hint, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, flag, hint)


def test_every_command_has_a_bad_flag_case() -> None:
    assert {argv[0] for argv, _, _ in BAD_FLAGS if argv} >= set(EVERY_COMMAND)


# ----- LsnMechError and wrong paths, from every job --------------------------------------
@pytest.mark.parametrize("name", list(JOBS))
def test_a_missing_config_file_is_one_line(name: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([name, "--config", str(tmp_path / "nowhere" / "config.json")]) == 2
    assert_one_error_line(capsys.readouterr().err, "No config file", "nowhere")


MULTI_LINE = MissingDependencyError(
    "LoRA needs the optional package 'peft'. Install it with:\n    pip install 'lsn-mech[peft]'"
)


@pytest.mark.parametrize("name", list(JOBS))
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DeviceUnavailableError("device 'cuda:7': this machine has no CUDA GPU; pass cpu"), "cpu"),
        (InvalidSettingError("window 512 does not fit; pass --window 256 or less"), "--window"),
        (MULTI_LINE, "Install it with: pip install 'lsn-mech[peft]'"),
        (OutputFolderError("cannot write /x; pass --output a writable folder"), "--output"),
    ],
    ids=["device", "setting", "multi-line", "output"],
)
def test_a_library_error_in_any_job_is_one_line(  # type: ignore[no-untyped-def]
    name, error, expected, monkeypatch, tmp_path, capsys
) -> None:
    with_run(monkeypatch, name, raising(error))
    assert main([name, "--output", str(tmp_path / "out")]) == 2
    assert_one_error_line(capsys.readouterr().err, expected)


@pytest.mark.parametrize(
    ("make_error", "expected"),
    [
        (
            lambda out: FileNotFoundError(errno.ENOENT, "No such file or directory", out / "n"),
            "check the path",
        ),
        (
            lambda out: PermissionError(errno.EACCES, "Permission denied", out),
            "choose a folder you can write (--output)",
        ),
        (
            lambda out: IsADirectoryError(errno.EISDIR, "Is a directory", out),
            "pass a file, not a folder",
        ),
        (
            lambda out: OSError(errno.ENOSPC, "No space left on device", "/somewhere/else"),
            "the disk is full",
        ),
        (lambda out: FileNotFoundError("No neuron file at 'n.safetensors'"), "No neuron file"),
    ],
    ids=["missing", "permission", "directory", "disk-full", "message"],
)
def test_a_wrong_path_the_user_gave_is_one_line(  # type: ignore[no-untyped-def]
    make_error, expected, monkeypatch, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    with_run(monkeypatch, "stats", raising(make_error(out)))
    assert main(["stats", "--output", str(out)]) == 2
    assert_one_error_line(capsys.readouterr().err, expected)


def test_the_default_output_folder_counts_as_a_user_path(monkeypatch, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    default = Path(os.path.abspath(JOBS["ppl"].config().output))
    with_run(monkeypatch, "ppl", raising(PermissionError(13, "Permission denied", default)))
    assert main(["ppl"]) == 2
    assert_one_error_line(capsys.readouterr().err, str(default), "Permission denied")


def test_an_output_folder_under_a_file_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["stats", "--model", "tiny-gpt2", "--output", str(blocker / "run")]) == 2
    assert_one_error_line(capsys.readouterr().err, str(blocker))


def test_a_missing_corpus_file_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["stats", "--model", "tiny-gpt2", "--text-files", f"en={tmp_path / 'no.txt'}"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    assert_one_error_line(capsys.readouterr().err, "no.txt")


# ----- genuine bugs: a traceback and a request to report -------------------------------
@pytest.mark.parametrize(
    "error",
    [
        ZeroDivisionError("division by zero"),
        KeyError("layer"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/usr/lib/lsn_mech/x"),
    ],
    ids=["zero-division", "key-error", "file-nobody-named"],
)
def test_a_genuine_bug_prints_its_traceback_and_asks_for_a_report(  # type: ignore[no-untyped-def]
    error, monkeypatch, tmp_path, capsys
) -> None:
    with_run(monkeypatch, "lape", raising(error))
    assert main(["lape", "--output", str(tmp_path / "out")]) == 1
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr
    assert type(error).__name__ in stderr
    assert stderr.rstrip("\n").splitlines()[-1] == BUG_REPORT
    assert "lsn-mech info" in BUG_REPORT and "issue tracker" in BUG_REPORT
    assert error_lines(stderr) == []


def test_info_survives_a_broken_install(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def broken() -> Path:
        raise PermissionError(13, "Permission denied", "/root/.cache/lsn_mech")

    monkeypatch.setattr("lsn_mech.models.cache_dir", broken)
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    assert "cache folder" in shown and "unavailable (PermissionError" in shown
    assert "tiny-gpt2" in shown  # the other lines are still there


def test_info_works_when_the_jobs_cannot_be_imported(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "lsn_mech.pipelines.jobs", None)  # import raises
    assert main(["info"]) == 0
    assert "transformer-lens" in capsys.readouterr().out


# ----- Ctrl-C: one line naming the checkpoint ------------------------------------------
@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("stats", "the checkpoint is in {out}: rerun the same command to resume."),
        ("lape", "the checkpoint is in {out}/stats: rerun the same command to resume"),
        ("transfer", "the checkpoint is in {out}/stats: rerun the same command to resume"),
        ("ppl", "ppl keeps no checkpoint, so rerunning the command starts over"),
        ("landermt", "landermt keeps no checkpoint, so rerunning the command starts over"),
    ],
)
def test_an_interrupt_names_the_checkpoint_and_exits_130(  # type: ignore[no-untyped-def]
    name, where, monkeypatch, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    with_run(monkeypatch, name, raising(KeyboardInterrupt("signal 2")))
    assert main([name, "--output", str(out)]) == 130
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and error_lines(stderr) == []
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsn-mech: interrupted; ")
    assert where.format(out=out) in lines[0]


def test_an_interrupt_before_any_job_says_nothing_was_written(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_job_and_config", interrupted)
    assert main(["stats"]) == 130
    assert capsys.readouterr().err == (
        "lsn-mech: interrupted before any job started; nothing was written.\n"
    )


# ----- offline: an unknown model fails at once -----------------------------------------
UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port: the connection is refused at once


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in loading.PROXY_VARIABLES}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    return {**env, "HF_ENDPOINT": UNREACHABLE_HUB}


def test_offline_an_unknown_model_fails_within_a_second(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for variable in (*loading.PROXY_VARIABLES, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)
    assert loading.hub_reachable() is False
    start = time.perf_counter()
    with pytest.raises(UnknownModelError, match="cannot be reached") as error:
        loading.load_model("no-such/model")
    assert time.perf_counter() - start < 2.0
    assert "tiny-llama" in str(error.value) and "local model directory" in str(error.value)


def test_offline_a_tokenizer_hub_id_fails_within_a_second(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for variable in (*loading.PROXY_VARIABLES, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)
    model = build_tiny("tiny-gpt2").model
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="no-such/tokenizer"):
        loading.load_model(model, tokenizer="no-such/tokenizer")
    assert time.perf_counter() - start < 2.0


def test_offline_mode_is_read_from_the_environment_now(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert loading.hub_offline() is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert loading.hub_offline() is False


def test_behind_a_proxy_the_hub_client_decides(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE_HUB)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert loading.hub_reachable() is True


# ----- the real command, in a subprocess -----------------------------------------------
def test_the_command_offline_with_an_unknown_model(tmp_path: Path) -> None:
    # Imports first (they take seconds on a busy machine), then time the command itself.
    script = (
        "import sys, time; import lsn_mech.models.loading, lsn_mech.pipelines.jobs; "
        "from lsn_mech.cli import main; start = time.perf_counter(); code = main(sys.argv[1:]); "
        "print(f'{time.perf_counter() - start:.3f}'); sys.exit(code)"
    )
    argv = ["stats", "--model", "no-such/model", "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=offline_env(),
    )
    assert done.returncode == 2
    assert_one_error_line(done.stderr, "'no-such/model'", "cannot be reached")
    assert float(done.stdout.strip()) < 5.0  # was ~30 s of hub retries


def test_a_real_ctrl_c_during_statistics_names_the_checkpoint(tmp_path: Path) -> None:
    """SIGINT only: SIGTERM becomes the same ``KeyboardInterrupt`` in `collect_stats`."""
    text = tmp_path / "en.txt"
    text.write_text("In the beginning God created the heaven and the earth.\n" * 40_000)
    out = tmp_path / "run"
    argv = ["stats", "--model", "tiny-llama", "--text-files", f"en={text}", "--split", "train"]
    argv += ["--window", "32", "--checkpoint-every", "1", "--output", str(out)]
    # Python leaves SIGINT ignored when its parent ignored it (a background shell job).
    script = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from lsn_mech.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv], stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # wait until the statistics are being collected
        seen.append(line)
        if "[stats] collect" in line:
            break
    deadline = time.monotonic() + 120  # a loaded machine may take long to reach the loop
    while not (out / "checkpoint.safetensors").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # the batch loop is running: its first batch is saved
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, "".join(seen) + rest
    lines = ("".join(seen) + rest).strip().splitlines()
    assert "Traceback" not in rest
    assert lines[-1] == (
        f"lsn-mech: interrupted; the checkpoint is in {out}: rerun the same command to resume."
    )
