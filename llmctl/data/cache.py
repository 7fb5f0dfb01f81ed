"""The feature cache: tokenized training features on disk, keyed by everything that determines them.

    $LLMCTL_CACHE_DIR/features/<key>/   (default ~/.cache/llmctl)
        manifest.json     what made the entry (task, source, tokenizer, settings, llmctl version),
                          row and token counts, and the sha256 of every file; written last
        *.npy             the columnar features (llmctl.data.store), memory-mapped when used

An entry is built in a temporary folder and renamed into place, so a reader never sees a
half-written one, and two runs building the same entry at once both succeed (the second
rename loses and its copy is dropped). Every file is checked against the manifest before
use: a corrupt entry is reported in one line, removed and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llmctl.errors import TrainingError
from llmctl.data.inputs import source_fingerprint
from llmctl.files import file_sha256

FORMAT = 1  # bump when the stored layout or featurization changes meaning


def cache_root() -> Path:
    return Path(os.environ.get("LLMCTL_CACHE_DIR") or Path.home() / ".cache" / "llmctl").expanduser()


def entries_dir() -> Path:
    return cache_root() / "features"


def tokenizer_digest(tokenizer, kwargs: dict) -> str:
    """The fast tokenizer's whole definition (vocab, normalizer, post-processor), its chat template
    (chat data is rendered with it), plus what llmctl sets on it (pad token, padding side, task
    kwargs such as add_prefix_space)."""
    digest = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps({"class": type(tokenizer).__name__, "pad": tokenizer.pad_token, "side": tokenizer.padding_side,
                              "special": tokenizer.all_special_tokens, "kwargs": kwargs,
                              "chat_template": getattr(tokenizer, "chat_template", None)}, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class Key:
    """What determines a split's features; `digest` names the entry."""

    parts: dict

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def make_key(task_name: str, role: str, source: Path, data_settings: dict, tokenizer, tokenizer_kwargs: dict) -> Key:
    """`source`: a file, a glob or a folder; every file's bytes are in the key."""
    from llmctl import __version__

    return Key({"format": FORMAT, "llmctl": __version__, "task": task_name, "role": role,
                "source": source_fingerprint(source),
                "data": data_settings, "tokenizer": tokenizer_digest(tokenizer, tokenizer_kwargs)})


TEMP_PREFIX = ".tmp-"  # an entry being written (or left by an interrupted write)


def read_manifest(entry: Path) -> dict | None:
    """An entry's manifest.json when it is one llmctl wrote: a mapping with a key mapping and a
    files mapping of names to checksums; None otherwise (no file, null, [], files missing...)."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("key"), dict)
            and isinstance(manifest.get("files"), dict) and manifest["files"]
            and all(isinstance(n, str) and "/" not in n and isinstance(v, str) for n, v in manifest["files"].items())):
        return None
    return manifest


def lookup(key: Key, notes: list[str]):
    """The cached features for `key`, or None. A corrupt entry is removed (and a note says so),
    and so is one whose manifest records another key (an entry folder renamed or swapped):
    trusting it would train on another file's rows."""
    from llmctl.data import store

    entry = entries_dir() / key.digest
    manifest_path = entry / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = read_manifest(entry)
        if manifest is None:
            raise ValueError("manifest.json is not the mapping of key and file checksums llmctl writes")
        if Key(manifest["key"]).digest != key.digest:
            raise ValueError("its manifest records a different key (entry folders renamed or swapped?)")
        for name, expected in manifest["files"].items():
            if file_sha256(entry / name) != expected:
                raise ValueError(f"{name} does not match its checksum")
        features = store.load(entry)
    except (OSError, ValueError, KeyError) as exc:
        notes.append(f"feature cache entry {entry} is corrupt ({exc}); rebuilding it.")
        shutil.rmtree(entry, ignore_errors=True)
        return None
    try:
        os.utime(manifest_path)  # last use, for `llmctl cache clear --older-than`
    except OSError:
        pass
    return features


def write(key: Key, features, notes: list[str]) -> bool:
    """Store features under `key` atomically; False (with a note) when the cache is not writable.
    A full disk is an error: the partial entry is removed first."""
    from llmctl.data import store
    from llmctl import faults
    from llmctl.files import disk_full

    root = entries_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{key.digest}-", dir=root))
    except OSError as exc:
        notes.append(f"warning: the feature cache {cache_root()} is not writable ({exc.strerror or exc}); "
                     "training without it. Set LLMCTL_CACHE_DIR to a writable folder, or data.cache: false.")
        return False
    try:
        faults.hook("write", step=0, name="cache/")  # test hook: a disk that fills while the entry is written
        files = store.save(features, tmp)
        manifest = {"key": key.parts, "created": time.time(), "rows": len(features),
                    "tokens": int(sum(c.values.size for c in features.columns.values() if hasattr(c, "values"))),
                    "files": {p.name: file_sha256(p) for p in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, root / key.digest)
        except OSError:  # another run stored the same entry first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
        return True
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(exc):
            raise TrainingError(
                f"Could not write the feature cache entry in {root}: disk full ({exc.strerror or exc}); "
                "the partial entry was removed.",
                "Free disk space, point LLMCTL_CACHE_DIR at another disk, or set data.cache: false.",
            ) from exc
        notes.append(f"warning: could not write the feature cache entry in {root} ({exc.strerror or exc}); "
                     "training without it.")
        return False


def list_entries() -> list[dict]:
    """Complete entries, newest use first: {"key", "path", "task", "source", "rows", "bytes", "last_used"}."""
    root = entries_dir()
    found = []
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        info = read_manifest(entry) if _is_entry(entry) else None
        if info is None:
            continue
        key, manifest = info["key"], entry / "manifest.json"
        source = key.get("source")
        found.append({"key": entry.name, "path": str(entry), "task": key.get("task"),
                      "source": source.get("path") if isinstance(source, dict) else None, "rows": info.get("rows"),
                      "bytes": sum(p.stat().st_size for p in entry.iterdir() if p.is_file()),
                      "last_used": manifest.stat().st_mtime})
    return sorted(found, key=lambda e: -e["last_used"])


def _is_entry(entry: Path) -> bool:
    """A folder named like an entry (the 32 hex digits of a key digest), not a link."""
    return (len(entry.name) == 32 and all(c in "0123456789abcdef" for c in entry.name)
            and entry.is_dir() and not entry.is_symlink())


def _is_temp(entry: Path) -> bool:
    """A folder of an interrupted write: `.tmp-<digest>-<random>` (tempfile.mkdtemp in write)."""
    digest = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
    return (entry.name.startswith(TEMP_PREFIX) and len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)
            and entry.is_dir() and not entry.is_symlink())


def clear(older_than_days: float | None = None) -> tuple[int, int]:
    """Remove entries (only those unused for `older_than_days`, when given) and leftovers of
    interrupted writes; returns (entries removed, bytes freed). Only what llmctl wrote: an entry
    folder with llmctl's manifest, or one of its temp names. Anything else under features/ (a
    user's folder, a .git) stays and is not counted."""
    root = entries_dir()
    if not root.is_dir():
        return 0, 0
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed, freed = 0, 0
    for entry in list(root.iterdir()):
        ours = _is_entry(entry) and read_manifest(entry) is not None
        if not (ours or _is_temp(entry)):
            continue
        stamp = (entry / "manifest.json" if ours else entry).stat().st_mtime
        if cutoff is not None and stamp > cutoff:
            continue
        freed += sum(p.lstat().st_size for p in entry.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1 if ours else 0
    return removed, freed
