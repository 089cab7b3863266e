"""Compare two `lsn-mech lape` output folders: are the results of one run those of the other?

    python benchmarks/compare_lape_runs.py lsn_runs/lape_before lsn_runs/lape_after

Used to check that a change inside the package leaves the LAPE job's numbers alone (issue
11's redesign): the statistics tensors, both neuron files, the published-format file and
both PPL-change matrices (perplexities, base perplexities and token counts) must be
equal exactly. Provenance timestamps, library versions and stage times are not compared,
and neither is JSON layout (whitespace, key order). Exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from lsn_mech.evaluate import PPLChangeMatrix
from lsn_mech.neurons import LanguageNeurons, from_lape_file


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same_neurons(before: LanguageNeurons, after: LanguageNeurons) -> bool:
    return list(before.languages) == list(after.languages) and all(
        before[x] == after[x] for x in before.languages
    )


def _same_matrix(before: PPLChangeMatrix, after: PPLChangeMatrix) -> bool:
    return (
        before.rows == after.rows
        and before.columns == after.columns
        and before.base == after.base
        and before.ppl == after.ppl
        and before.tokens == after.tokens
    )


def compare(before: Path, after: Path) -> dict[str, bool]:
    """Each compared artefact → whether the two runs hold the same values."""
    stats = sorted(p.relative_to(before) for p in (before / "stats").glob("*.safetensors"))
    checks = {
        f"stats/{p.name}": _same_tensors(load_file(before / p), load_file(after / p)) for p in stats
    }
    for name in ("neurons.safetensors", "random_neurons.safetensors"):
        checks[name] = _same_neurons(
            LanguageNeurons.load(before / name), LanguageNeurons.load(after / name)
        )
    reference = LanguageNeurons.load(before / "neurons.safetensors")
    shape = {"languages": list(reference.languages), "d_mlp": reference.d_mlp}
    checks["lape_neurons.pt"] = _same_neurons(
        from_lape_file(before / "lape_neurons.pt", **shape),
        from_lape_file(after / "lape_neurons.pt", **shape),
    )
    for name in ("ppl_matrix.json", "ppl_matrix_random.json"):
        checks[name] = _same_matrix(
            PPLChangeMatrix.load(before / name), PPLChangeMatrix.load(after / name)
        )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="output folder of the first run")
    parser.add_argument("after", type=Path, help="output folder of the second run")
    args = parser.parse_args()
    checks = compare(args.before, args.after)
    for name, same in checks.items():
        print(f"{'same' if same else 'DIFFERENT':9} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
