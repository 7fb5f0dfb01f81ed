"""File helpers shared by the run directory, training checkpoints and the feature cache."""

from __future__ import annotations

import errno
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 4 MB blocks (checkpoint manifests and feature-cache entries)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def disk_full(exc: Exception) -> bool:
    """ENOSPC, whether raised as OSError or by safetensors as SafetensorError("... (os error 28)")."""
    return getattr(exc, "errno", None) == errno.ENOSPC or f"(os error {errno.ENOSPC})" in str(exc)
