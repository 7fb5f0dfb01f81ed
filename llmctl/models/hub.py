"""The Hugging Face Hub, asked for only when a name is not a local path, and fast to fail.

Without HF_HUB_OFFLINE, transformers and datasets retry an unreachable Hub for tens of
seconds. We probe once (a TCP connect with a short timeout) and fail within seconds with
a message that points to local paths and offline mode.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

from llmctl.errors import ModelError

PROBE_TIMEOUT_S = 4.0


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo has no timeout of its own, so the probe runs in a thread we stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 1)
    return bool(result and result[0])


def ensure_hub_reachable(what: str, local: str = "a local directory") -> None:
    """Raise a clear ModelError now rather than let a hub download retry for half a minute.
    `local` names what to give instead (it differs for models and datasets)."""
    if hub_offline():
        return  # the libraries then only look in the local cache and fail fast themselves
    if not hub_reachable():
        raise ModelError(
            f"The Hugging Face Hub is unreachable, so {what} cannot be downloaded.",
            f"Use {local} instead, or set HF_HUB_OFFLINE=1 to use only what is already in the local cache.",
        )
