"""Columnar features: token ids as one flat array plus row offsets, never one Python object per token.

A column of token lists becomes a `Ragged` (values: int32 / uint16 / uint8, offsets: int64);
a column of one number per row becomes a numpy array. Batches are sliced from them, and a
directory of `.npy` files written by `save` is memory-mapped back by `load`, so a feature
store of any size costs page cache, not heap. Columns that are neither (QA offset maps)
stay Python lists, and such features are simply not stored on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class Ragged:
    """Rows of varying length over one flat array: row i is values[offsets[i]:offsets[i + 1]]."""

    __slots__ = ("values", "offsets")

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    @classmethod
    def from_lists(cls, rows) -> "Ragged":
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(offsets[-1]))
        return cls(flat.astype(smallest_int_type(flat), copy=False), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def blocks(array: np.ndarray, size: int = 1 << 20):
    """`array` a million values at a time, for a pass over a whole column (hashing, the set of
    token ids). A memory-mapped column gives its pages back after each block: file pages a
    process has touched count in its RSS until unmapped, so one pass over a 5M-row entry would
    otherwise leave ~300 MB of it resident for the rest of the run (they stay in the page cache)."""
    for start in range(0, len(array), size):
        yield array[start : start + size]
        release(array)


def release(array) -> None:
    """Drop a memory-mapped array's pages from this process's RSS (read again from the page
    cache on next use); nothing for an in-memory array."""
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise"):
        import mmap

        mapping.madvise(mmap.MADV_DONTNEED)


def release_features(features) -> None:
    """Drop the pages of every memory-mapped array of `features` (columns and lengths) from this
    process's RSS. A training step reads a few rows, but the kernel maps up to 64 KB of the file
    around each page it faults in, and setup reads whole columns (lengths, offsets): without this
    the resident share of a large corpus's token files grows with the corpus and the run."""
    for column in features.columns.values():
        for array in (column.values, column.offsets) if isinstance(column, Ragged) else (column,):
            release(array)
    release(features.lengths)


def smallest_int_type(values: np.ndarray):
    """uint8 / uint16 / int32 / int64: the narrowest type that holds every value (labels use -100)."""
    if values.size == 0:
        return np.int32
    low, high = int(values.min()), int(values.max())
    for kind in (np.uint8, np.uint16) if low >= 0 else ():
        if high <= np.iinfo(kind).max:
            return kind
    return np.int32 if np.iinfo(np.int32).min <= low and high <= np.iinfo(np.int32).max else np.int64


def to_columnar(column):
    """A feature column as a Ragged or numpy array when it is made of integers (or floats), else unchanged."""
    if isinstance(column, (Ragged, np.ndarray)) or len(column) == 0:
        return column
    first = column[0]
    if isinstance(first, (list, tuple, np.ndarray)):
        if all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for r in column[:100] for t in r):
            try:
                return Ragged.from_lists(column)
            except (TypeError, ValueError):  # a float or None further down: leave it as it is
                return column
        return column
    if isinstance(first, (bool, np.bool_)):
        return column
    if isinstance(first, (int, np.integer)):
        try:
            values = np.asarray(column, dtype=np.int64)
        except (TypeError, ValueError):
            return column
        return values.astype(smallest_int_type(values), copy=False)
    if isinstance(first, (float, np.floating)):
        try:
            return np.asarray(column, dtype=np.float64)
        except (TypeError, ValueError):
            return column
    return column


def is_columnar(features) -> bool:
    return all(isinstance(c, (Ragged, np.ndarray)) for c in features.columns.values())


def save(features, directory: Path) -> list[Path]:
    """Write columnar features as .npy files plus features.json (names, kinds, meta); returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    layout, files = {}, []
    for name, column in features.columns.items():
        if isinstance(column, Ragged):
            layout[name] = "ragged"
            files += [_save(directory / f"{name}.values.npy", column.values),
                      _save(directory / f"{name}.offsets.npy", column.offsets)]
        else:
            layout[name] = "dense"
            files.append(_save(directory / f"{name}.npy", column))
    files.append(_save(directory / "lengths.npy", np.asarray(features.lengths, dtype=np.int32)))
    info = directory / "features.json"
    info.write_text(json.dumps({"columns": layout, "meta": features.meta, "rows": len(features)}))
    return files + [info]


def _save(path: Path, array: np.ndarray) -> Path:
    array = array if isinstance(array, np.ndarray) else np.asarray(array)  # a memmap stays one (released per block)
    if array.ndim != 1:  # blocks are rows of a 1-D column; anything else is small
        array = np.ascontiguousarray(array)
        np.save(path, array, allow_pickle=False)
    else:
        _write_npy(path, array.dtype, len(array), blocks(array))
    _check_length(path, array.nbytes)
    return path


def _check_length(path: Path, nbytes: int) -> None:
    """np.save writes the data through C stdio and ignores a write that the full disk cut short
    (the file simply ends early), or says so without an errno: measure the file instead."""
    import errno

    from numpy.lib import format as npy

    with open(path, "rb") as handle:
        try:
            major, _ = npy.read_magic(handle)
            (npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0)(handle)
        except ValueError:
            end = None  # even the header was cut
        else:
            end = handle.tell() + nbytes
        if end is None or os.fstat(handle.fileno()).st_size != end:
            raise OSError(errno.ENOSPC, "the file was written short", str(path))


def load(directory: Path):
    """Features memory-mapped from a directory `save` wrote (read-only: batches copy what they use)."""
    from llmctl.data.features import Features

    info = json.loads((directory / "features.json").read_text())

    def mapped(name: str) -> np.ndarray:
        return np.load(directory / name, mmap_mode="r", allow_pickle=False)

    columns = {}
    for name, kind in info["columns"].items():
        columns[name] = (Ragged(mapped(f"{name}.values.npy"), mapped(f"{name}.offsets.npy")) if kind == "ragged"
                         else mapped(f"{name}.npy"))
    return Features(columns=columns, lengths=mapped("lengths.npy"), meta=info["meta"])


class Writer:
    """Append chunks of token lists to a growing Ragged column, spilled to disk as they come.

    Each chunk goes to a file as soon as it is tokenized, so a corpus of any size is held in memory
    one chunk at a time; `finish` memory-maps the column back (the narrowest integer type, chosen
    once every value is known). The spill files are unlinked as soon as they are mapped: the data
    lives until the mapping goes, and nothing is left behind on disk."""

    def __init__(self, spill_dir: str | None = None):
        import tempfile

        self._dir = Path(tempfile.mkdtemp(prefix="llmctl-column-", dir=spill_dir))
        self._values = open(self._dir / "values.raw", "wb")
        self._lengths = open(self._dir / "lengths.raw", "wb")
        self._low, self._high, self._rows, self._size = 0, 0, 0, 0
        # A writer dropped unfinished (the featurize around it failed) takes its spill with it.
        weakref.finalize(self, shutil.rmtree, self._dir, True)

    def extend(self, rows) -> None:
        with _spilling(self._dir):
            self._extend(rows)

    def _extend(self, rows) -> None:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        if flat.size:
            self._low, self._high = min(self._low, int(flat.min())), max(self._high, int(flat.max()))
        self._write(self._values, flat)
        self._write(self._lengths, lengths)
        self._rows, self._size = self._rows + len(lengths), self._size + flat.size

    @staticmethod
    def _write(handle, array: np.ndarray) -> None:
        # Raw int64 on disk: the final type is only known at the end; the file is read back once.
        handle.write(np.ascontiguousarray(array, dtype=np.int64).tobytes())

    def finish(self) -> Ragged:
        try:
            for handle in (self._values, self._lengths):
                handle.close()
            kind = smallest_int_type(np.array([self._low, self._high])) if self._size else np.int32
            with _spilling(self._dir):
                raw_values = _raw(self._dir / "values.raw")
                _write_npy(self._dir / "values.npy", kind, self._size, (b.astype(kind) for b in blocks(raw_values)))
                _write_npy(self._dir / "offsets.npy", np.int64, self._rows + 1, _offsets(_raw(self._dir / "lengths.raw")))
                del raw_values
            return Ragged(_mapped(self._dir / "values.npy", kind), _mapped(self._dir / "offsets.npy", np.int64))
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)  # mapped pages outlive their names


@contextmanager
def _spilling(directory: Path):
    """A full disk while spilling is the user's to fix, said in one line; the spill goes."""
    try:
        yield
    except OSError as exc:
        from llmctl.errors import TrainingError
        from llmctl.files import disk_full

        if not disk_full(exc):
            raise
        shutil.rmtree(directory, ignore_errors=True)
        raise TrainingError(f"Could not write tokenized features to {directory}: disk full; they were removed.",
                            "Free disk space, or point TMPDIR at a disk with room.") from exc


def _raw(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.int64, mode="r") if path.stat().st_size else np.zeros(0, np.int64)


def _offsets(lengths: np.ndarray):
    """Row offsets (a leading 0, then running sums) a block at a time."""
    total = 0
    yield np.zeros(1, np.int64)
    for block in blocks(lengths):
        ends = np.cumsum(block) + total
        total = int(ends[-1])
        yield ends


def _write_npy(path: Path, kind, size: int, parts) -> None:
    """A 1-D .npy file written block by block through ordinary writes (a full disk raises
    OSError here; writing through a memory map would kill the process with SIGBUS)."""
    from numpy.lib import format as npy

    with open(path, "wb") as handle:
        npy.write_array_header_1_0(handle, {"descr": npy.dtype_to_descr(np.dtype(kind)), "fortran_order": False,
                                            "shape": (size,)})
        for part in parts:
            handle.write(np.ascontiguousarray(part, dtype=kind).tobytes())


def _mapped(path: Path, kind) -> np.ndarray:
    """Copy-on-write: a task may change values in place; that never reaches the file. numpy
    cannot map an empty array, which needs no file anyway."""
    array = np.load(path, mmap_mode="c")
    return array if array.size else np.zeros(0, kind)
