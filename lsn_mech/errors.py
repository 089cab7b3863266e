"""Every error lsn_mech raises on purpose, each with a message that names the fix.

They subclass both `LsnMechError` (catch everything from this library)
and the builtin a caller would naturally expect (``ValueError``, ``KeyError``,
``ImportError``), so ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class LsnMechError(Exception):
    """Base class of every error raised on purpose by lsn_mech."""


class NeuronShapeMismatchError(LsnMechError, ValueError):
    """Two neuron sets, masks or statistics come from models of different shape."""


class NeuronIndexError(LsnMechError, IndexError):
    """A layer or neuron index lies outside the model it is meant for."""


class MissingLanguageError(LsnMechError, KeyError):
    """A language was asked for that the statistics, neurons or corpus do not contain."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class EmptyCorpusError(LsnMechError, ValueError):
    """A corpus, or one language of it, holds no usable text."""


class UnknownModelError(LsnMechError, ValueError):
    """A model name is neither in the zoo, nor a local directory, nor reachable on the hub."""


class MissingDependencyError(LsnMechError, ImportError):
    """An optional dependency (an extra) is not installed."""


class UnsupportedArchitectureError(LsnMechError, ValueError):
    """The model has no MLP hook sites lsn_mech knows how to use."""


class HubUnavailableError(LsnMechError, OSError):
    """Something had to come from the Hugging Face hub, and the hub cannot be reached."""


class StatisticsMismatchError(LsnMechError, ValueError):
    """Statistics cannot be merged or resumed because they describe different runs."""


class NotEnoughNeuronsError(LsnMechError, ValueError):
    """A random draw asked for more neurons than a layer has left to give."""


def require(module: str, extra: str, purpose: str) -> object:
    """Import an optional module, or raise an error that prints the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through tests with monkeypatch
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{module}'. Install it with:\n"
            f"    pip install 'lsn-mech[{extra}]'"
        ) from exc


class CorpusFileError(LsnMechError, FileNotFoundError):
    """A corpus file that was asked for does not exist or cannot be read."""


class CorruptFileError(LsnMechError, ValueError):
    """A file lsn_mech wrote (checkpoint, statistics, neurons, adapter, metadata JSON) is
    missing a part, truncated, corrupt, of another kind or edited by hand."""


class NeuronFormatError(CorruptFileError):
    """A neuron file is not in the expected format, or does not match what was passed
    (a `CorruptFileError`, so also a `LsnMechError` and a ``ValueError``)."""


class InvalidSettingError(LsnMechError, ValueError):
    """A setting (argument or CLI flag) is out of range or does not fit the model or corpus;
    the message names the argument and, for jobs, the flag to change."""


class WrongInputError(LsnMechError, TypeError):
    """An object of the wrong kind was passed (a `LanguageNeurons` where one `NeuronSet`
    is meant, statistics of another model, a string where a tensor is meant)."""


class NonFiniteActivationError(LsnMechError, FloatingPointError):
    """The model produced NaN or inf activations, which would poison the statistics."""


class DeviceUnavailableError(LsnMechError, RuntimeError):
    """The device asked for (``cuda:1``, ``mps``) does not exist on this machine."""


class OutputFolderError(LsnMechError, OSError):
    """The output folder cannot be created or written."""


class NothingToSelectError(LsnMechError, ValueError):
    """A detector's input cannot select any neuron (all-zero or constant scores)."""


class MissingFileError(CorruptFileError, FileNotFoundError):
    """A file lsn_mech wrote and needs now (a neuron file, a result, an adapter, a job's
    marker) does not exist; also a ``FileNotFoundError``, as before."""


class HubAccessError(LsnMechError, OSError):
    """The Hugging Face hub answered but refused: the repository or revision does not
    exist, is private or gated, or the token may not write to it."""
