"""Whether the Hugging Face hub can be used now: the one owner of the offline check.

Models, corpora and neuron sets all come from the hub, and the hub's own clients retry
for half a minute before they give up on a machine without a network. Every layer asks
here first (``HF_HUB_OFFLINE`` set, or one TCP connection that fails fast) and refuses
at once with a message that names the offline alternative. Cross-cutting, so the bottom
layers (`corpora`, `neurons`) can use it as well as `models`.
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

HUB_HOST = "huggingface.co"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the user asked for offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``
    set to a true value now, or when huggingface_hub was imported)."""
    from huggingface_hub import constants

    set_now = any(
        os.environ.get(variable, "").strip().upper() in _TRUE
        for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return set_now or bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` as set now, else huggingface_hub's default (which
    it read once, at import), so the probe and the download ask the same server."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def connection_problem(timeout: float = 2.0) -> str | None:
    """Why the hub cannot be reached (``"cannot connect to host:port: …"``), or ``None``
    when a TCP connection to `hub_endpoint` succeeds within ``timeout`` seconds, name
    lookup included.

    Behind a proxy a direct connection says nothing, so the hub counts as reachable and
    the hub's own client decides.
    """
    if any(os.environ.get(variable) for variable in PROXY_VARIABLES):
        return None
    endpoint = urlsplit(hub_endpoint())
    host = endpoint.hostname or HUB_HOST
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    answers: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answers.append(None)
        except OSError as exc:
            answers.append(f"cannot connect to {host}:{port}: {exc}")

    # A thread, because a name lookup that hangs ignores the socket's timeout.
    probe = threading.Thread(target=connect, name="lsn_mech-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if not answers:
        return f"cannot connect to {host}:{port}: no answer within {timeout:g} s"
    return answers[0]


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``, default huggingface.co) accepts a TCP
    connection within ``timeout`` seconds (see `connection_problem`)."""
    return connection_problem(timeout) is None


def why_hub_unusable(timeout: float = 2.0) -> str | None:
    """``"HF_HUB_OFFLINE is set"``, the `connection_problem`, or ``None`` when the hub can
    be asked: the one question every download and upload asks first."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    return connection_problem(timeout)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the hub could not be reached (or offline mode has no cached copy)."""
    names = {
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
    }
    return isinstance(exc, (ConnectionError, TimeoutError)) or any(
        cls.__name__ in names for cls in type(exc).__mro__
    )
