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


# -- writing inside a run directory: never through a symbolic link ----------------------------
# A link planted at a run file's name (recipe.yaml -> ~/.bashrc) must not make llmctl write the
# user's file: whole files are written to a fresh temp name and renamed over the link (a rename
# replaces the link itself), and appends open with O_NOFOLLOW, which refuses a link.


def replace_file(path: Path, data: str | bytes) -> None:
    """Write `path` whole and atomically: a fresh `.NAME.tmp` (O_EXCL | O_NOFOLLOW, so a link or
    a leftover at the temp name is never followed), then rename over `path`."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        os.unlink(tmp)  # a leftover of a crash, or a planted link: the name only, never its target
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written temp file left behind
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line to a log (metrics.jsonl, train_log.jsonl); a link at `path` is refused (ELOOP)
    rather than followed, and one O_APPEND write keeps a line whole."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)
