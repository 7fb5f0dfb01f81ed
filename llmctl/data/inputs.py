"""Which files a data split names, how to open them, and where each row came from.

A split is one file, a glob (`data/train-*.jsonl`) or a folder (`data/train/`); globs and folders
are read in sorted file order as one split. A file may be gzip / bz2 / xz / zstd compressed, told
by its last extension (`train.jsonl.gz`); its format is the extension before that. Readers record
which file and line each row came from (`record`), so `locate` can name `file:line` in errors
however many files, blank lines or paragraphs lie between rows.
"""

from __future__ import annotations

import bisect
import glob
import io
from pathlib import Path

from llmctl.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "txt"}
# NER's CoNLL files (read by llmctl.tasks.ner_utils, not as tables): a folder of them is a split too.
CONLL_SUFFIXES = (".conll", ".conll03", ".iob", ".iob2", ".bio")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
# Not "[": a Hub split such as `train[:10%]` uses it.
GLOB_CHARS = "*?"


def suffixes(path: Path | str) -> tuple[str, str | None]:
    """(format extension, compression or None): `train.jsonl.gz` -> (".jsonl", "gzip")."""
    path = Path(path)
    compression = COMPRESSIONS.get(path.suffix.lower())
    if compression is None:
        return path.suffix.lower(), None
    return Path(path.stem).suffix.lower(), compression


def file_format(path: Path | str) -> str | None:
    """csv / tsv / jsonl / json / parquet / txt from the extension (under any compression), else None."""
    return FORMATS.get(suffixes(path)[0])


def is_pattern(spec: str | Path) -> bool:
    return any(c in str(spec) for c in GLOB_CHARS)


def expand(spec: str | Path, key: str) -> list[Path]:
    """The files of a split, in the order they are read: a glob's matches and a folder's data files
    sorted by name, else the one path (whose absence the caller reports)."""
    path = Path(spec).expanduser()
    if is_pattern(spec):
        files = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
        if not files:
            raise DataError(f"{key}: no file matches {spec}.",
                            "Check the pattern (relative to where you run llmctl) and that the files exist.")
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _split_format(p))
        if not files:
            raise DataError(f"{key}: folder {spec} holds no data files.",
                            f"Put {', '.join(FORMATS)} files in it (optionally .gz / .bz2 / .xz / .zst).")
    else:
        return [path]
    formats = {_split_format(p) for p in files}
    if len(formats) > 1:
        shown = ", ".join(sorted(f or "unknown" for f in formats))
        raise DataError(f"{key}: {spec} mixes file formats ({shown}).", "Give one split files of one format.")
    return files


def _split_format(path: Path) -> str | None:
    return file_format(path) or ("conll" if suffixes(path)[0] in CONLL_SUFFIXES else None)


def is_multi(spec: str | Path) -> bool:
    """Whether a split spec may name several files (a glob or a folder)."""
    return is_pattern(spec) or Path(spec).expanduser().is_dir()


def open_binary(path: Path):
    """The file's bytes, decompressed as its extension says."""
    compression = suffixes(path)[1]
    if compression is None:
        return open(path, "rb")
    if compression == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if compression == "xz":
        import lzma

        return lzma.open(path, "rb")
    try:
        import zstandard
    except ImportError as exc:
        raise DataError(f"{path}: reading .zst files needs the zstandard package.",
                        "pip install 'llmctl[zstd]', or decompress the file.") from exc
    return io.BufferedReader(_Zstd(open(path, "rb"), zstandard.ZstdDecompressor().decompressobj))


class _Zstd(io.RawIOBase):
    """A zstd file's decompressed bytes, every frame of it (`zstd` and `cat a.zst b.zst` write
    several; one decompressor object stops at the end of the first). zstandard's own stream reader
    returns a truncated file's bytes without complaint; this says so at the end, as gzip / bz2 /
    lzma do."""

    def __init__(self, raw, new_frame):
        self.raw, self.new_frame, self.pending = raw, new_frame, b""
        self.decompressor, self.fed = new_frame(), False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            if self.decompressor.eof:  # the next frame starts with what the last one left over
                chunk, self.decompressor, self.fed = self.decompressor.unused_data, self.new_frame(), False
            else:
                chunk = b""
            chunk = chunk or self.raw.read(1 << 16)
            if not chunk:
                if self.fed and not self.decompressor.eof:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                return 0
            self.pending, self.fed = self.decompressor.decompress(chunk), True
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_text(path: Path, encoding: str = "utf-8"):
    """The file as text (decompressed), newlines left as they are for csv."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, newline="")


def decompression_failed(exc: BaseException) -> bool:
    """Whether `exc` is a decompressor refusing its input (truncated or not compressed at all)."""
    import lzma
    import zlib

    if isinstance(exc, (EOFError, lzma.LZMAError, zlib.error)):
        return True
    if type(exc).__name__ in ("BadGzipFile", "ZstdError"):
        return True
    return isinstance(exc, OSError) and "invalid data stream" in str(exc).lower()


def corrupt(path: Path, key: str, exc: BaseException) -> DataError:
    kind = suffixes(path)[1]
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{key}: {path} is not a readable {kind} file ({detail}).",
                     "Download or compress it again; check it with the matching tool (e.g. gzip -t).")


class Part:
    """The rows one file gave a split: where they start in the split, and the line of each.
    Lines are stored only where they stop following one another (a blank line, a paragraph), so
    a million rows cost a few entries, not a million."""

    def __init__(self, file: str, start: int, first_line: int = 1, lines: bool = True):
        self.file, self.start, self.first_line, self.lines = file, start, first_line, lines
        self._rows: list[int] = []
        self._extra: list[int] = []

    def at(self, row: int, line: int) -> None:
        """Row `row` of this file (0-based, in order) is on `line` (1-based)."""
        extra = line - self.first_line - row
        if extra != (self._extra[-1] if self._extra else 0):
            self._rows.append(row)
            self._extra.append(extra)

    def line(self, row: int) -> int:
        k = bisect.bisect_right(self._rows, row) - 1
        return self.first_line + row + (self._extra[k] if k >= 0 else 0)

    def name(self, row: int) -> str:
        return f"{self.file}:{self.line(row)}" if self.lines else f"{self.file} row {row}"


# where (as messages name a split) -> its files' parts, in order. Readers reset it when they start.
_SPLITS: dict[str, list[Part]] = {}


def start(where: str) -> list[Part]:
    _SPLITS[where] = []
    return _SPLITS[where]


def locate(where: str, index: int) -> str | None:
    """`file:line` (or `file row N`) of row `index` of a split a reader recorded, else None."""
    parts = _SPLITS.get(where)
    if not parts:
        return None
    k = bisect.bisect_right([p.start for p in parts], index) - 1
    part = parts[max(k, 0)]
    return part.name(index - part.start)


def source_fingerprint(spec: str | Path) -> dict:
    """What identifies a split's bytes for the feature cache: path, size and sha256 of every file,
    so editing, adding or removing any file of a glob or folder makes a new key."""
    from llmctl.files import file_sha256

    path = Path(spec).expanduser()
    if not is_multi(spec):
        return {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    files = expand(spec, "data.train")
    return {"path": str(spec), "files": [{"path": str(f.resolve()), "sha256": file_sha256(f), "bytes": f.stat().st_size}
                                         for f in files]}


def local_files(spec: str | Path | None) -> bool:
    """Whether a split spec names local data (a file, a glob with matches, or a folder)."""
    if spec is None:
        return False
    path = Path(spec).expanduser()
    if is_pattern(spec):
        return any(Path(p).is_file() for p in glob.glob(str(path), recursive=True))
    return path.is_file() or path.is_dir()
