"""File helpers shared by the run directory, training checkpoints and the feature cache."""

from __future__ import annotations

import errno
import re
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 4 MB blocks (checkpoint manifests and feature-cache entries)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# No room for the file: the disk is full, the user's quota is spent, or a file-size limit is hit.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# numpy's tofile / np.save report a short fwrite as "N requested and M written", with no errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def disk_full(exc: BaseException) -> bool:
    """No room to write, whether raised as OSError, by safetensors as SafetensorError("... (os
    error 28)"), or by numpy as a short write; looks through the exceptions that wrap it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) in _NO_ROOM or _SHORT_WRITE.search(str(exc)):
            return True
        if any(f"(os error {code})" in str(exc) for code in _NO_ROOM):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def write_text_atomic(path: Path, text: str, what: str) -> None:
    """`text` to `path` through `.NAME.tmp` beside it, renamed into place when whole; a failed
    write removes the temp file. A full disk is exit 1 (TrainingError) naming `what`."""
    from llmctl.errors import TrainingError, UsageError

    try:
        replace_file(path, text)
    except OSError as exc:
        if disk_full(exc):
            raise TrainingError(f"Could not write {what} {path}: disk full; nothing was written.",
                                "Free disk space, or write it elsewhere with --output.") from exc
        raise UsageError(f"Could not write {what} {path}: {exc.strerror or exc}.", "Choose another --output.") from exc


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
