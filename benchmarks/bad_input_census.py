"""Census of issue 12: run every bad input and fault of ``tests/bad_input_cases.py`` and
count how each ends, by area.

    python benchmarks/bad_input_census.py                 # table + every bad ending
    python benchmarks/bad_input_census.py --markdown      # the table of docs/reliability.md
    python benchmarks/bad_input_census.py --json out.json # every case's outcome

An ending is ``ok`` (it ran; never counted for cases where success would be silently
wrong), ``refused`` (a ``LsnMechError``; on the command line exit 2 with one line
``lsn-mech: error: ...``) or ``bad`` (raw exception, traceback, usage text, silent wrong
result, or still running after 30 s). It runs as a user would: without the run-time type
checker the test suite installs (``--type-checked`` adds it, as under pytest).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs table only")
    parser.add_argument("--json", type=Path, help="write every case's outcome here")
    parser.add_argument("--area", help="run only the cases of this area")
    parser.add_argument("--type-checked", action="store_true", help="as under pytest")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # tests/conftest.py (read for its texts) installs the checker unless this says no
    os.environ["LSN_MECH_TYPECHECK"] = "1" if args.type_checked else "0"
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import bad_input_cases as table
    import conftest  # noqa: F401 - installs the type checker first, when asked for

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        env = table.make_env(Path(folder))
        cases = [c for c in table.all_cases() if args.area in (None, c.area)]
        outcomes, by_area, durations = count(cases, env, type_checked=args.type_checked)
        seconds = time.perf_counter() - start

    print(markdown(by_area))
    if not args.markdown:
        print(f"\n{len(cases)} cases in {seconds:.0f} s\n\nEnded badly:")
        for case in cases:
            outcome = outcomes[case.id]
            if outcome.kind == "bad":
                print(f"- {case.id}: {outcome.detail}")
        slow = sorted(durations.items(), key=lambda item: -item[1])[:8]
        print("\nSlowest: " + ", ".join(f"{i} {s:.1f} s" for i, s in slow))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    c.id: {
                        "area": c.area,
                        "seconds": round(durations[c.id], 2),
                        **vars(outcomes[c.id]),
                    }
                    for c in cases
                },
                indent=1,
            )
        )
    return 0


def count(
    cases: list[Any], env: Any, *, type_checked: bool = False
) -> tuple[dict[str, Any], dict[str, Counter[str]], dict[str, float]]:
    """Run ``cases``: each one's outcome, the counts by area and ending, and the seconds."""
    import bad_input_cases as table

    outcomes, durations = {}, {}
    by_area: dict[str, Counter[str]] = defaultdict(Counter)
    for case in cases:
        began = time.perf_counter()
        outcomes[case.id] = table.run_case(case, env, type_checked=type_checked)
        durations[case.id] = time.perf_counter() - began
        by_area[case.area][outcomes[case.id].kind] += 1
    return outcomes, by_area, durations


def markdown(by_area: dict[str, Counter[str]]) -> str:
    lines = [
        "| area | cases | run | refused with LsnMechError | ended badly |",
        "|---|---:|---:|---:|---:|",
    ]
    total: Counter[str] = Counter()
    for area, counts in by_area.items():
        total.update(counts)
        lines.append(_row(area, counts))
    lines.append(_row("**all**", total))
    return "\n".join(lines)


def _row(area: str, counts: Counter[str]) -> str:
    n = sum(counts.values())
    return f"| {area} | {n} | {counts['ok']} | {counts['refused']} | {counts['bad']} |"


if __name__ == "__main__":
    raise SystemExit(main())
