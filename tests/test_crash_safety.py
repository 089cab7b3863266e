"""Nothing lost, nothing counted twice: statistics runs killed at any moment, faults between
every pair of writes, and broken files refused by name (issue 12).

The SIGKILL test runs this file as a script (``python tests/test_crash_safety.py ...``):
that process imports torch once and builds the tiny model, then forks one child per
attempt and kills it with SIGKILL after a random delay, so dozens of real kills cost one
interpreter start-up.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from lsn_mech.errors import CorruptFileError, StatisticsMismatchError
from lsn_mech.models import build_tiny, load_model
from lsn_mech.models.fingerprint import weights_fingerprint, word_sums_numpy, word_sums_torch
from lsn_mech.stats import ActivationStats, QuantileAccumulator, collect_stats
from lsn_mech.stats.checkpoint import RECORD_KEY
from lsn_mech.stats.container import read_stats, write_stats

CORPUS = {
    "en": ["In the beginning God created the heaven and the earth."] * 6,
    "fr": ["Au commencement, Dieu créa les cieux et la terre."] * 6,
}
RUN: dict[str, Any] = {
    "window": 16,
    "batch_size": 2,
    "max_tokens_per_language": 150,
    "checkpoint_every": 1,
    "progress": False,
}
"""Five batches a language, a checkpoint after each: most of a run is spent writing."""

FAULT_RUN = {**RUN, "max_tokens_per_language": 60}
"""Two batches a language: a few dozen file-system steps, each one a fault site."""

SEEDS = (1, 2, 3)
KILLS_PER_SEED = 12


def stats_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------ real SIGKILLs


def kill_loop_worker(root: Path, seeds: list[int], kills_per_seed: int) -> dict[str, Any]:
    """In a fresh interpreter: an uninterrupted reference run, then per seed a run killed
    with SIGKILL at random moments and restarted until it finishes."""
    torch.set_num_threads(1)  # no OpenMP pool before fork()
    model = load_model("tiny-gpt2")

    def attempt(folder: Path, delay: float) -> str:
        pid = os.fork()
        if pid == 0:  # the child: one attempt at the run, no cleanup on the way out
            code = 1
            try:
                collect_stats(model, CORPUS, output_dir=folder, **RUN)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + delay
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)  # the child is not reaped yet: no pid reuse
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.001)
        if os.WIFSIGNALED(status):
            return "killed"
        return "finished" if os.WEXITSTATUS(status) == 0 else "failed"

    started = time.monotonic()
    assert attempt(root / "reference", float("inf")) == "finished"
    full = time.monotonic() - started
    report: dict[str, Any] = {"seconds_per_run": full, "runs": {}}
    for seed in seeds:
        rng = random.Random(seed)
        folder = root / f"seed{seed}"
        outcomes: list[str] = []
        torn = 0
        while not outcomes or outcomes[-1] == "killed":
            limited = sum(o == "killed" for o in outcomes) < kills_per_seed
            outcomes.append(attempt(folder, rng.uniform(0, full / 3) if limited else 1e9))
            torn += folder.exists() and any(p.name.endswith(".partial") for p in folder.iterdir())
        report["runs"][str(seed)] = {"outcomes": outcomes, "torn_writes_seen": torn}
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() and SIGKILL")
def test_sigkill_at_random_moments_resumes_bit_identically(gpt2: Any, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, __file__, "kill-loop", str(tmp_path), str(KILLS_PER_SEED)]
        + [str(s) for s in SEEDS],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "TOKENIZERS_PARALLELISM": "false",  # children are forked
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    reference = ActivationStats.load(tmp_path / "reference" / "stats.safetensors")
    assert reference.tokens.tolist() == [150, 150]  # the budget binds
    kills = 0
    for seed in SEEDS:
        outcomes = report["runs"][str(seed)]["outcomes"]
        assert outcomes[-1] == "finished", outcomes
        kills += outcomes.count("killed")
        folder = tmp_path / f"seed{seed}"
        assert stats_files(folder) == ["stats.safetensors"], "no checkpoint or half-file left"
        final = ActivationStats.load(folder / "stats.safetensors")
        assert final.equal(reference)  # torch.equal on every tensor and the token counts
        assert all(torch.equal(final.state[k], v) for k, v in reference.state.items())
        # a third process, a freshly built model: same run key, nothing recomputed
        batches: list[Any] = []
        again = collect_stats(gpt2, CORPUS, output_dir=folder, callback=batches.append, **RUN)
        assert batches == [] and again.equal(reference)
    assert kills >= 3 * len(SEEDS), report  # kills landed (about 30 in a typical run)


# --------------------------------------------------------- a fault between every write


class Crash(BaseException):
    """The process dies here: no ``except Exception`` handler sees it."""


WRITE_STEPS: tuple[tuple[Any, str], ...] = (
    (os, "fsync"),
    (os, "replace"),
    (os, "open"),
    (Path, "unlink"),
)


class Faults:
    """Counts every file-system step of a run and fails the ``k``-th: ``crash`` makes it
    and every later step fail (the process is dead; a half-written file stays), ``error``
    fails only that one step with an ``OSError`` (a full disk) and the run goes on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None, mode: str) -> None:
        import safetensors.torch

        self.count = 0
        self.fail_at = fail_at
        self.mode = mode
        self.dead = False
        for owner, name in WRITE_STEPS:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))
        save_file = safetensors.torch.save_file

        def torn_save(tensors: Any, filename: str, metadata: Any = None) -> None:
            def partial() -> None:  # die halfway through writing the temporary file
                save_file(tensors, filename, metadata=metadata)
                size = os.path.getsize(filename)
                with open(filename, "r+b") as handle:
                    handle.truncate(size // 2)

            self._step(
                "save_file", lambda: save_file(tensors, filename, metadata=metadata), partial
            )

        monkeypatch.setattr(safetensors.torch, "save_file", torn_save)

    def _wrap(self, original: Callable[..., Any], name: str) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            return self._step(name, lambda: original(*args, **kwargs), None)

        return step

    def _step(self, name: str, run: Callable[[], Any], partial: Callable[[], None] | None) -> Any:
        if self.dead:
            raise Crash(name)
        self.count += 1
        if self.count == self.fail_at:
            if self.mode == "error":
                raise OSError(28, "No space left on device (injected)")
            if partial is not None:
                partial()
            self.dead = True
            raise Crash(name)
        return run()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy machine they spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gpt2() -> Any:
    return load_model("tiny-gpt2")


@pytest.fixture(scope="module")
def reference(gpt2: Any) -> ActivationStats:
    return collect_stats(gpt2, CORPUS, **{**RUN, "checkpoint_every": 25})


def test_a_fault_between_every_pair_of_writes_then_resume_is_identical(
    gpt2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = collect_stats(gpt2, CORPUS, **FAULT_RUN)
    with monkeypatch.context() as patch:
        counter = Faults(patch, None, "crash")
        collect_stats(gpt2, CORPUS, output_dir=tmp_path / "count", **FAULT_RUN)
    steps = counter.count
    assert steps >= 5 * 6, "5 commits of 6 steps: write, fsync, rename, tidy, folder fsync"
    tried = 0
    for mode, points in (("crash", range(1, steps + 2)), ("error", range(1, steps + 2, 2))):
        for k in points:
            folder = tmp_path / f"{mode}{k}"
            with monkeypatch.context() as patch:
                faults = Faults(patch, k, mode)
                try:
                    collect_stats(gpt2, CORPUS, output_dir=folder, **FAULT_RUN)
                    assert k > steps or mode == "error", "a crash always stops the run"
                except (Crash, OSError):
                    assert k <= faults.count
            resumed = collect_stats(gpt2, CORPUS, output_dir=folder, **FAULT_RUN)
            assert resumed.equal(expected), (mode, k)
            assert stats_files(folder) == ["stats.safetensors"], (mode, k)
            tried += 1
    assert tried > steps


# ----------------------------------------------------------- broken files are refused


def header_length(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.fixture(scope="module")
def finished_template(gpt2: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("finished") / "run"
    collect_stats(gpt2, CORPUS, output_dir=folder, **RUN)
    return folder


@pytest.fixture
def finished_run(finished_template: Path, tmp_path: Path) -> Path:
    """A folder of a finished run, the test's own copy."""
    return Path(shutil.copytree(finished_template, tmp_path / "run"))


@pytest.fixture
def interrupted_run(gpt2: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "stopped"

    def stop(done: Any) -> None:
        if done.language == "fr":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_stats(gpt2, CORPUS, output_dir=folder, callback=stop, **RUN)
    assert stats_files(folder) == ["checkpoint.safetensors"]
    return folder


def damaged_copies(path: Path, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Truncations at several offsets, and single flipped bytes all over the header and
    at random places in the tensor data."""
    data = path.read_bytes()
    header = header_length(path)
    for cut in (0, 3, 8, 20, header // 2, header - 1, header, header + 7, len(data) - 1):
        yield f"truncated at {cut}", data[:cut]
    for offset in [*range(0, header, 3), *rng.sample(range(header, len(data)), 60)]:
        flipped = bytearray(data)
        flipped[offset] ^= 1 << rng.randrange(8)
        yield f"bit flipped at {offset}", bytes(flipped)


def test_damaged_statistics_files_are_refused_naming_the_file(
    finished_run: Path, tmp_path: Path
) -> None:
    source = finished_run / "stats.safetensors"
    target = tmp_path / "damaged.safetensors"
    cases = 0
    for what, content in damaged_copies(source, random.Random(0)):
        target.write_bytes(content)
        with pytest.raises(CorruptFileError, match=r"damaged\.safetensors") as refused:
            ActivationStats.load(target)
        assert "collect" in str(refused.value), what  # the fix
        cases += 1
    assert cases > 200


def test_damaged_checkpoints_are_refused_on_resume(
    gpt2: Any, interrupted_run: Path, reference: ActivationStats
) -> None:
    checkpoint = interrupted_run / "checkpoint.safetensors"
    intact = checkpoint.read_bytes()
    rng = random.Random(1)
    cases = [c for i, c in enumerate(damaged_copies(checkpoint, rng)) if i % 6 == 0]
    for what, content in cases:
        checkpoint.write_bytes(content)
        with pytest.raises(CorruptFileError, match=re.escape(f"Delete {interrupted_run}")) as e:
            collect_stats(gpt2, CORPUS, output_dir=interrupted_run, **RUN)
        refused = e
        assert "checkpoint.safetensors" in str(refused.value), what
    checkpoint.write_bytes(intact)  # the intact checkpoint still resumes exactly
    assert collect_stats(gpt2, CORPUS, output_dir=interrupted_run, **RUN).equal(reference)


def rewrite_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the JSON metadata by hand, as a user would: the tensors stay, no checksum."""
    from safetensors.torch import load_file, save_file

    stats, header = read_stats(path)
    meta = json.loads(header["lsn_mech"])
    meta["format_version"] = 1  # a file from before checksums: only the fields guard it
    edit(meta)
    tensors = {**stats.state, "tokens": stats.tokens}
    edit_tensors = meta.pop("_tensors", None)
    if edit_tensors is not None:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={"lsn_mech": json.dumps(meta)})
    assert load_file(str(path)).keys() == tensors.keys()


HAND_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "n_layers as text": lambda m: m.update(n_layers="3"),
    "one layer more": lambda m: m.update(n_layers=4),
    "d_mlp halved": lambda m: m.update(d_mlp=64),
    "a language more": lambda m: m.update(languages=["en", "fr", "de"]),
    "languages as text": lambda m: m.update(languages="en,fr"),
    "no sites": lambda m: m.pop("sites"),
    "another format": lambda m: m.update(format="lsn_mech.neurons"),
    "newer format": lambda m: m.update(format_version=99),
    "accumulator of other bins": lambda m: m.update(
        accumulators=[*m["accumulators"], QuantileAccumulator(("mlp_pre",), bins=8).config()]
    ),
    "tokens as floats": lambda m: m.update(
        _tensors=lambda t: t.update(tokens=t["tokens"].double())
    ),
    "sum as integers": lambda m: m.update(
        _tensors=lambda t: t.update({"mlp_post/sum": t["mlp_post/sum"].long()})
    ),
    "tensor of another site": lambda m: m.update(
        _tensors=lambda t: t.update({"resid/sum": t["mlp_post/sum"].clone()})
    ),
    "no tokens": lambda m: m.update(_tensors=lambda t: t.pop("tokens")),
}


@pytest.mark.parametrize("edit", list(HAND_EDITS))
def test_hand_edited_statistics_are_refused(finished_run: Path, edit: str) -> None:
    path = finished_run / "stats.safetensors"
    rewrite_header(path, HAND_EDITS[edit])
    with pytest.raises(CorruptFileError, match=r"stats\.safetensors"):
        ActivationStats.load(path)


def test_old_unchecksummed_files_still_load(finished_run: Path) -> None:
    path = finished_run / "stats.safetensors"
    before = ActivationStats.load(path)
    rewrite_header(path, lambda meta: None)
    assert ActivationStats.load(path).equal(before)


def test_files_of_another_kind_are_refused(gpt2: Any, tmp_path: Path) -> None:
    from lsn_mech.neurons import NeuronSet, save

    neurons = save(NeuronSet.full(3, 128), tmp_path / "n")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "json.safetensors").write_text('{"languages": ["en"]}')
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    for path in (neurons, *(tmp_path / f"{n}.safetensors" for n in ("empty", "json", "plain"))):
        with pytest.raises(CorruptFileError, match=path.name):
            ActivationStats.load(path)


def test_hand_edited_positions_are_refused(
    gpt2: Any, interrupted_run: Path, finished_run: Path
) -> None:
    checkpoint = interrupted_run / "checkpoint.safetensors"
    stats, header = read_stats(checkpoint)
    record = json.loads(header[RECORD_KEY])

    def resume_with(position: dict[str, Any], folder: Path = interrupted_run) -> str:
        # written through lsn_mech's own writer: the checksum is right, the content is not
        write_stats(stats, checkpoint, {RECORD_KEY: {**record, "position": position}})
        with pytest.raises(CorruptFileError, match=re.escape(f"Delete {folder}")) as refused:
            collect_stats(gpt2, CORPUS, output_dir=folder, **RUN)
        return str(refused.value)

    place = record["position"]
    assert "only 5" in resume_with({**place, "batch": 40})
    assert "not reached" in resume_with({"language": 0, "batch": 2, "finished": False})
    assert "finished" in resume_with({**place, "finished": True})
    assert "outside" in resume_with({**place, "language": -1})
    assert "not a int" in resume_with({**place, "batch": "3"})
    assert "unknown fields" in resume_with({**place, "tokens": 3})
    # statistics saved by hand into a run folder carry no position: refused, not trusted
    ActivationStats.load(finished_run / "stats.safetensors").save(finished_run / "stats")
    with pytest.raises(CorruptFileError, match="no run record"):
        collect_stats(gpt2, CORPUS, output_dir=finished_run, **RUN)


def test_a_folder_of_the_old_two_file_layout_is_refused(gpt2: Any, finished_run: Path) -> None:
    (finished_run / "progress.json").write_text('{"run_key": {}, "position": {}}')
    with pytest.raises(StatisticsMismatchError, match=r"earlier lsn_mech.*Delete"):
        collect_stats(gpt2, CORPUS, output_dir=finished_run, **RUN)


# -------------------------------------------------------------- the weights fingerprint


def test_a_model_finetuned_in_place_does_not_resume_old_statistics(
    interrupted_run: Path,
) -> None:
    model = load_model("tiny-gpt2")
    weight = next(p for name, p in model.named_parameters() if "mlp" in name and p.dim() == 2)
    with torch.no_grad():
        weight[3, 5] += 1e-3  # one weight of one MLP, as a masked finetune might change
    with pytest.raises(StatisticsMismatchError, match="weights changed") as refused:
        collect_stats(model, CORPUS, output_dir=interrupted_run, **RUN)
    assert "weights_fingerprint" in str(refused.value)
    assert "another output folder, or delete" in str(refused.value)


def test_weights_fingerprint_sees_every_weight_and_nothing_else(gpt2: Any) -> None:
    first, second = build_tiny("tiny-llama").model, build_tiny("tiny-llama").model
    assert weights_fingerprint(first) == weights_fingerprint(second)
    seen = {weights_fingerprint(first)}
    rng = random.Random(0)
    for _, parameter in rng.sample(list(second.named_parameters()), 6):
        with torch.no_grad():
            flat = parameter.view(-1)
            index = rng.randrange(flat.numel())
            flat[index] = flat[index] + 1e-6 * (1 + abs(float(flat[index])))
        seen.add(weights_fingerprint(second))
    assert len(seen) == 7, "each one-element change changes the fingerprint"
    assert weights_fingerprint(first.to(torch.bfloat16)) not in seen
    rows = torch.nn.Linear(4, 3)
    swapped = torch.nn.Linear(4, 3)
    with torch.no_grad():
        swapped.weight.copy_(rows.weight[[1, 0, 2]])
        swapped.bias.copy_(rows.bias)
    assert weights_fingerprint(rows) != weights_fingerprint(swapped)  # rows swapped
    words = torch.randn(3 * 2**20 + 5).view(torch.int32)
    assert word_sums_numpy(words) == word_sums_torch(words)  # one value on any device
    assert weights_fingerprint(load_model("tiny-gpt2")) == weights_fingerprint(gpt2)


if __name__ == "__main__" and sys.argv[1:2] == ["kill-loop"]:
    root, kills, *seeds = sys.argv[2:]
    print(json.dumps(kill_loop_worker(Path(root), [int(s) for s in seeds], int(kills))))
