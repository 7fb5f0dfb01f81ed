"""Load one split as a `datasets.Dataset`, from local files or the Hub.

Local files are read with pandas (no cache writes, predictable typing); text cells
are never turned into NaN, so a sentence that says "null" stays a sentence. A split may be
a glob or a folder, and files may be compressed (llmctl.data.inputs); `.txt` files are one
`text` row per line or paragraph; nested fields are columns named with dots (`translation.en`).
Errors name the recipe key and the file (and line), and say what to change.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

from llmctl.data.inputs import (FORMATS as FILE_FORMATS, Part, corrupt, decompression_failed, expand, file_format,
                                is_multi, is_pattern, locate, open_binary, open_text, start, suffixes)
from llmctl.data.nested import add_nested_columns
from llmctl.errors import DataError
from llmctl.models.hub import ensure_hub_reachable


def not_utf8(key: str, path: Path, exc: UnicodeDecodeError, offset: int = 0) -> DataError:
    """The one "not UTF-8" error, for every reader; `offset`: bytes before the decoded piece."""
    return DataError(f"{key}: {path} is not UTF-8 text ({exc.reason} at byte {offset + exc.start}).",
                     "Save the file as UTF-8.")


def read_stdin(key: str, stdin=None) -> str:
    """All of stdin as text, refused as a file is when it is not UTF-8: Python's own decoding
    lets undecodable bytes through as surrogates, which the tokenizer then rejects (a TypeError)."""
    stream = stdin or sys.stdin
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    if isinstance(data, str):  # a text stream without bytes underneath (tests pass io.StringIO)
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(key, Path("<stdin>"), exc) from exc


def looks_like_file(spec: str) -> bool:
    return file_format(spec) is not None or "/" in spec or is_pattern(spec) or Path(spec).exists()


def data_format(spec, key: str) -> str:
    """The format a split is read as: its files' extension, except that a `.json` file holding
    JSON Lines reads as jsonl (the datasets json loader accepts both)."""
    files = expand(spec, key)
    fmt = file_format(files[0])
    if fmt == "json" and files[0].is_file() and json_lines(files[0], key):
        return "jsonl"
    return fmt


def json_lines(path: Path, key: str = "data") -> bool:
    """Whether a .json file is JSON Lines: its first non-blank line is a whole JSON object and the
    next non-blank line starts another (one line alone: unless it is a {"data": [...]} wrapper).
    A pretty-printed or `[`-list document fails the first test; text that is not JSON at all is
    read as lines so that its error names a line."""
    import json

    first = None
    try:
        with open_binary(path) as handle:
            for raw in handle:
                line = raw.strip().removeprefix(b"\xef\xbb\xbf")
                if not line:
                    continue
                if first is not None:
                    return line.startswith(b"{")
                if not line.startswith(b"{"):
                    return not line.startswith(b"[")
                try:
                    first = json.loads(line)
                except ValueError:
                    return False
                if not isinstance(first, dict):
                    return False
    except Exception as exc:
        if decompression_failed(exc):
            raise corrupt(path, key, exc) from exc
        raise
    return first is not None and not isinstance(first.get("data"), list)


def streamable(spec: str, key: str) -> bool:
    """Whether a local split can be read in chunks (csv / tsv / parquet / json lines / text)."""
    return data_format(spec, key) in ("csv", "tsv", "parquet", "jsonl", "txt")


def refuse_plain_text(spec: str, key: str, task: str, needs: str) -> None:
    """A .txt split holds only text: a task that needs `needs` in every row cannot use it."""
    if file_format(spec) == "txt" or (is_multi(spec) and file_format(expand(spec, key)[0]) == "txt"):
        raise DataError(f"{key}: {spec} is plain text (a 'text' column only); task '{task}' needs {needs} in every row.",
                        "Give a csv / tsv / jsonl / json / parquet file with those columns.")


def read_bytes(path: Path, key: str, missing_tip: str = "Check the path (relative to where you run llmctl).") -> bytes:
    """A whole file's bytes (decompressed), or a DataError naming `key` and the file when it is
    missing or a corrupt compressed file."""
    if not path.is_file():
        raise DataError(f"{key}: file {path} does not exist.", missing_tip)
    try:
        with open_binary(path) as handle:
            return handle.read()
    except Exception as exc:
        if decompression_failed(exc):
            raise corrupt(path, key, exc) from exc
        raise


def read_text(path: Path, key: str, encoding: str = "utf-8", missing_tip: str = "Check the path (relative to where you run llmctl).") -> str:
    """A whole text file (decompressed), or a DataError naming `key` and the file when it is
    missing, corrupt or not UTF-8."""
    data = read_bytes(path, key, missing_tip)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise not_utf8(key, path, exc) from exc


def read_table(path: Path, key: str, column_names: list[str] | None = None, text_split: str = "line",
               nested: bool = False):
    """Read a split's file(s) into one pandas DataFrame with stripped column names. `nested`: add
    dotted columns for fields inside objects (add_nested_columns). Rows' files and lines are
    recorded for row_location."""
    import pandas as pd

    files = existing_files(path, key)
    parts = start(str(path))
    frames, rows = [], 0
    for file in files:
        frame, part = _read_file(file, key, column_names, text_split, rows)
        frame.columns = [str(c).strip() for c in frame.columns]
        parts.append(part)
        frames.append(frame)
        rows += len(frame)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return add_nested_columns(frame) if nested else frame


def existing_files(path: Path, key: str) -> list[Path]:
    files = expand(path, key)
    if not files[0].is_file():
        raise DataError(
            f"{key}: file {path} does not exist.",
            "Check the path (relative to where you run llmctl) or use a split name with data.dataset.",
        )
    if file_format(files[0]) is None:
        raise DataError(f"{key}: cannot read {path}: unknown extension.",
                        f"Use one of {', '.join(FILE_FORMATS)} (optionally compressed: .gz, .bz2, .xz, .zst).")
    return files


def _read_file(path: Path, key: str, column_names, text_split: str, first_row: int):
    """(frame, Part) of one file."""
    import pandas as pd

    fmt = data_format(path, key)
    try:
        if fmt in ("csv", "tsv"):
            options = csv_options(path, fmt, key, column_names)
            with open_binary(path) as handle:
                frame = pd.read_csv(handle, **options)
            return frame, Part(str(path), first_row, 1 if options["header"] is None else 2)
        if fmt == "parquet":
            import io

            with open_binary(path) as handle:  # parquet needs to seek: a compressed one is read whole
                frame = pd.read_parquet(handle if suffixes(path)[1] is None else io.BytesIO(handle.read()))
            return frame, Part(str(path), first_row, lines=False)
        if fmt == "txt":
            part = Part(str(path), first_row)
            return pd.DataFrame({"text": list(text_rows(path, key, text_split, part))}, dtype=object), part
        if fmt == "jsonl":
            part = Part(str(path), first_row)
            return pd.DataFrame(list(jsonl_rows(path, key, part))), part
        return _read_json(path), Part(str(path), first_row, lines=False)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise not_utf8(key, path, exc) from exc
    except Exception as exc:  # pandas raises many types; the message is what matters
        raise parse_error(exc, key, path) from exc


def csv_options(path: Path, fmt: str, key: str, column_names: list[str] | None) -> dict:
    """pandas.read_csv options for a csv/tsv file; the same for a whole read and a chunked one."""
    sep = "\t" if fmt == "tsv" else ","
    # GLUE's TSVs contain bare quote characters inside sentences.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    header = None
    if column_names and _first_row(path, sep, quoting) == [n.strip() for n in column_names]:
        # Certainly a header: as a data row it would become an example (and turn a numeric
        # label column into strings). Read it as the header it is, and say so.
        _log.warning(f"{key}: {path} starts with a header row ({', '.join(column_names)}) although "
             "data.column_names is set; skipping it. Drop data.column_names or the header line.")
        header = 0
        _HEADER_SKIPPED.add(str(path))
    return {"sep": sep, "quoting": quoting, "header": header if column_names else "infer", "names": column_names,
            "keep_default_na": False, "dtype_backend": "numpy_nullable", "encoding": "utf-8"}


def text_rows(path: Path, key: str, text_split: str, part: Part):
    """A .txt file's rows: each non-blank line, or (paragraph) each run of non-blank lines joined
    by newlines. Blank lines separate; they are not rows (as run_clm's line_by_line drops them).
    `document`: the whole file, blank lines and line ends kept, is one row (a pre-training corpus)."""
    if text_split == "document":
        yield from _document(path, key, part)
        return
    paragraph: list[str] = []
    row = 0
    with open_binary(path) as handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise not_utf8(key, path, exc, offset) from exc
            offset += len(raw)
            if number == 1:
                line = line.removeprefix("\ufeff")
            if text_split == "line":
                if line.strip():
                    part.at(row, number)
                    row += 1
                    yield line
            elif line.strip():
                if not paragraph:
                    part.at(row, number)
                paragraph.append(line)
            elif paragraph:
                row += 1
                yield "\n".join(paragraph)
                paragraph = []
    if paragraph:
        yield "\n".join(paragraph)


def _document(path: Path, key: str, part: Part):
    """The whole file as one row (none when it holds only blank space), read line by line."""
    lines, offset = [], 0
    with open_binary(path) as handle:
        for raw in handle:
            try:
                lines.append(raw.decode("utf-8").replace("\r\n", "\n"))
            except UnicodeDecodeError as exc:
                raise not_utf8(key, path, exc, offset) from exc
            offset += len(raw)
    text = "".join(lines).removeprefix("\ufeff")
    if text.strip():
        part.at(0, 1)
        yield text


def jsonl_rows(path: Path, key: str, part: Part):
    """The objects of one JSON-lines file, line by line (blank lines skipped), recording each
    row's line in `part`; errors name the file, line and column."""
    import json

    row, offset = 0, 0
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(key, path, exc, offset) from exc
            offset += len(raw)
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            value = json_object_line(line, path, number, '{"sentence": "...", "label": 1}')
            part.at(row, number)
            row += 1
            yield value


def parse_error(exc: Exception, key: str, path: Path) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return not_utf8(key, path, exc)
    if decompression_failed(exc):
        return corrupt(path, key, exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{key}: cannot parse {path}: {first}.")


_log = logging.getLogger(__name__)  # rendered by llmctl.console: nothing below the commands prints
# Files read with data.column_names whose header row was skipped: row_location must count it.
_HEADER_SKIPPED: set[str] = set()


def _first_row(path: Path, sep: str, quoting: int) -> list[str]:
    """The first csv/tsv row's cells, stripped (utf-8-sig: a BOM is not part of the first name)."""
    with open_text(path, encoding="utf-8-sig") as handle:
        return [cell.strip() for cell in next(csv.reader(handle, delimiter=sep, quoting=quoting), [])]


def _read_json(path: Path):
    """A .json file holding one document: a list of rows, or {"data": [...]} around one."""
    import pandas as pd

    with open_binary(path) as handle:
        text = handle.read().decode("utf-8")
    return pd.DataFrame(json_document_rows(text, path))


def json_document_rows(text: str, path) -> list[dict]:
    """The rows of one JSON document read from `path`: a list of objects, or {"data": [...]} around
    one (as the datasets json loader accepts); any other shape is a DataError naming the item."""
    import json

    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]} wrapper, as the datasets json loader accepts
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or json lines), got a JSON {type(data).__name__}.",
                        'Write [{"sentence": "...", "label": 1}, ...], or one object per line.')
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(f"{path}: item {i + 1} of the list is a JSON {type(item).__name__}, not an object.",
                            'Write [{"sentence": "...", "label": 1}, ...], or one object per line.')
    return data


def load_split(spec: str, key: str, dataset: str | None, config: str | None, column_names=None,
               text_split: str = "line", revision: str | None = None):
    """Return (datasets.Dataset, where) for a split name or file(s). `where` names it in messages.
    Nested fields are also columns named with dots (`translation.en`)."""
    import datasets

    if dataset and not looks_like_file(spec):
        at = f" (revision {revision})" if revision else ""
        if not Path(dataset).expanduser().exists():  # a local folder of data files needs no Hub
            ensure_hub_reachable(f"dataset {dataset}{at}", "local data files (csv, tsv, jsonl, json, parquet or txt)")
        try:
            ds = datasets.load_dataset(dataset, config, split=spec, revision=revision)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"{key}: cannot load split '{spec}' of {dataset}" + (f" ({config})" if config else "") + f"{at}: {first}",
                "Check data.dataset / data.config / data.revision / the split name, or point the split at a local file.",
            ) from exc
        return _with_nested_columns(ds), f"{dataset}[{spec}]"
    path = Path(spec).expanduser()
    frame = read_table(path, key, column_names, text_split, nested=True)
    if len(frame) == 0:
        raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
    return datasets.Dataset.from_pandas(frame, preserve_index=False), str(path)


def _with_nested_columns(ds):
    """A Hub split with each struct field also as a dotted column, the struct columns kept."""
    import datasets

    flat = ds.flatten()
    extra = [c for c in flat.column_names if c not in ds.column_names]
    return datasets.concatenate_datasets([ds, flat.select_columns(extra)], axis=1) if extra else ds


def row_location(where: str, index: int, has_header: bool = True) -> str:
    """`file.csv:12` for a csv/tsv row (1-based line), `file.jsonl:12`, `file.txt:12`, or
    `dataset[split] row 11`; for a split of several files, the file the row came from."""
    found = locate(where, index)
    if found is not None:
        return found
    fmt = file_format(where)
    has_header = has_header or where in _HEADER_SKIPPED
    if fmt in ("csv", "tsv"):
        return f"{where}:{index + (2 if has_header else 1)}"
    if fmt in ("jsonl", "txt"):
        return f"{where}:{index + 1}"
    return f"{where} row {index}"


def json_object_line(line: str, where, number: int, example: str) -> dict:
    """One jsonl line as the object every reader expects, or one DataError naming file:line:column."""
    import json

    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if not isinstance(value, dict):
        raise DataError(f"{where}:{number}: expected a JSON object per line, got {type(value).__name__}.",
                        f"Write one object per line, e.g. {example}.")
    return value
