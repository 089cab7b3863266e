"""Neuron folders to and from the Hugging Face hub, through ``huggingface_hub``.

Both directions ask `lsn_mech.hub` first whether the hub can be used at all, so an
offline machine gets a `HubUnavailableError` naming the offline way at once instead of
half a minute of retries; the hub's own refusals (no such repository, private, gated,
no write access) become `HubAccessError` naming the fix. Nothing here knows the neuron
classes: it moves folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from lsn_mech._version import __version__
from lsn_mech.errors import HubAccessError, HubUnavailableError, InvalidSettingError
from lsn_mech.hub import hub_endpoint, is_connection_error, why_hub_unusable

DOWNLOAD_PATTERNS = (
    "lsn_mech.json",
    "README.md",
    "neurons.safetensors",
    "*.pt",
    "*.pth",
    "languages.json",
    "*.languages.json",
)
"""What `download` fetches of a repository: a neuron folder, never a model's weights."""

PROBE_TIMEOUT = 2.0
"""Seconds the reachability probe waits before the hub counts as unreachable."""


def _first_line(exc: BaseException) -> str:
    """The hub client's message without the lines of advice it appends."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def check_repo_id(repo_id: str, *, argument: str = "repo_id") -> str:
    """``repo_id`` if it is a valid hub repository id (``owner/name``), else a refusal."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidSettingError(
            f"{argument}={repo_id!r} is not a Hugging Face repository id ({exc}); pass "
            f"'owner/name', e.g. 'my-user/gemma-3-270m-lape-neurons'."
        ) from None
    return repo_id


def _cached_snapshot(
    repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None
) -> Path | None:
    """The repository's folder in the local Hugging Face cache, if it was downloaded before."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=list(DOWNLOAD_PATTERNS),
            local_files_only=True,
        )
    except Exception:  # not cached, or cached incompletely: the caller says what to do
        return None
    return Path(str(folder))


def download(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local folder of a hub repository's neuron files (downloaded, or from the cache
    when the hub cannot be reached and a copy is cached)."""
    problem = why_hub_unusable(PROBE_TIMEOUT)
    if problem is not None:
        cached = _cached_snapshot(repo_id, revision, cache_dir)
        if cached is not None:
            return cached
        raise HubUnavailableError(
            f"{repo_id!r} is not a local folder or file, and the Hugging Face hub cannot be "
            f"reached to download it ({problem}). Download the folder where the hub is "
            f"reachable (`hf download {repo_id} --local-dir DIR`), then pass its path: "
            f"LanguageNeurons.from_pretrained('DIR')."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            allow_patterns=list(DOWNLOAD_PATTERNS),
            endpoint=hub_endpoint(),
            library_name="lsn_mech",
            library_version=__version__,
        )
    except GatedRepoError:
        raise HubAccessError(
            f"{repo_id!r} on the Hugging Face hub is gated: accept its conditions on its "
            "page, then pass token= (or log in with `hf auth login`)."
        ) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"{repo_id!r} is neither a local folder or file nor a Hugging Face repository "
            "you can read (it does not exist, or it is private: pass token= or log in "
            "with `hf auth login`). Check the path or the id."
        ) from None
    except RevisionNotFoundError:
        raise HubAccessError(
            f"The Hugging Face repository {repo_id!r} has no revision {revision!r}; pass "
            "an existing branch, tag or commit as revision=, or leave it out for 'main'."
        ) from None
    except Exception as exc:
        if is_connection_error(exc):
            raise HubUnavailableError(
                f"The Hugging Face hub stopped answering while {repo_id!r} was downloaded "
                f"({type(exc).__name__}: {_first_line(exc)}). Try again, or download the folder "
                f"(`hf download {repo_id} --local-dir DIR`) and pass its path."
            ) from exc
        if isinstance(exc, HfHubHTTPError):
            raise HubAccessError(
                f"The Hugging Face hub refused to send {repo_id!r} ({_first_line(exc)}). "
                "Check the id, revision= and token=."
            ) from exc
        raise
    return Path(str(folder))


def refuse_offline_upload(repo_id: str) -> None:
    """Raise at once, before anything is written, when an upload cannot reach the hub."""
    problem = why_hub_unusable(PROBE_TIMEOUT)
    if problem is not None:
        raise HubUnavailableError(
            f"push_to_hub({repo_id!r}) needs the Hugging Face hub, which cannot be reached "
            f"({problem}). Save the folder with save_pretrained(DIR) and upload it where "
            f"the hub is reachable: `hf upload {repo_id} DIR`."
        )


def upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool,
    token: str | None,
    commit_message: str,
    revision: str | None,
    create_pr: bool,
) -> str:
    """Create the model repository if needed and commit ``folder`` to it; returns the URL
    of the commit (or of the pull request with ``create_pr``)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(
        endpoint=hub_endpoint(),
        token=token,
        library_name="lsn_mech",
        library_version=__version__,
    )
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise HubUnavailableError(
                f"The Hugging Face hub stopped answering during push_to_hub({repo_id!r}) "
                f"({type(exc).__name__}: {_first_line(exc)}). Try again, or upload a "
                f"save_pretrained folder later with `hf upload {repo_id} DIR`."
            ) from exc
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            hint = (
                "log in with `hf auth login` or pass token= (a token with write access)"
                if status in (401, 403)
                else "check the repository id, revision= and token="
            )
            refusal = _first_line(exc)
            raise HubAccessError(
                f"The Hugging Face hub refused push_to_hub({repo_id!r}) ({refusal}); {hint}."
            ) from exc
        raise
    url = getattr(commit, "pr_url", None) if create_pr else None
    return str(url or getattr(commit, "commit_url", "") or f"{hub_endpoint()}/{repo_id}")
