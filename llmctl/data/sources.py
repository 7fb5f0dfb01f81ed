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
from llmctl.data.nested import add_nested_columns, nested_names, nested_value
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

    files = _existing_files(path, key)
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


def _existing_files(path: Path, key: str) -> list[Path]:
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
            options = _csv_options(path, fmt, key, column_names)
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
            return pd.DataFrame({"text": list(_text_rows(path, key, text_split, part))}, dtype=object), part
        if fmt == "jsonl":
            part = Part(str(path), first_row)
            return pd.DataFrame(list(_jsonl_rows(path, key, part))), part
        return _read_json(path), Part(str(path), first_row, lines=False)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise not_utf8(key, path, exc) from exc
    except Exception as exc:  # pandas raises many types; the message is what matters
        raise _parse_error(exc, key, path) from exc


def _csv_options(path: Path, fmt: str, key: str, column_names: list[str] | None) -> dict:
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


def _text_rows(path: Path, key: str, text_split: str, part: Part):
    """A .txt file's rows: each non-blank line, or (paragraph) each run of non-blank lines joined
    by newlines. Blank lines separate; they are not rows (as run_clm's line_by_line drops them)."""
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


def _jsonl_rows(path: Path, key: str, part: Part):
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
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
            if not isinstance(value, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(value).__name__}.",
                                'Write one object per line, e.g. {"sentence": "...", "label": 1}.')
            part.at(row, number)
            row += 1
            yield value


def iter_table(path: Path, key: str, columns: list[str], column_names: list[str] | None = None,
               chunk_rows: int = 50_000, limit: int | None = None, text_split: str = "line"):
    """(column names of the file, iterator of DataFrames of `columns`, at most `chunk_rows` rows each).

    csv / tsv / parquet / json lines / .txt are read chunk by chunk, file after file, so the whole
    table is never in memory; a json document is read whole and sliced. Parsing is
    read_table's: the same options, the same errors. Requested columns missing from the file are
    left out (the caller names them, with the file's columns); dotted names reach into nested fields."""
    import pandas as pd

    files = _existing_files(path, key)
    fmt = data_format(path, key)
    if fmt == "jsonl":
        return _iter_jsonl(path, key, columns, chunk_rows, limit)
    if fmt == "txt":
        return ["text"], _iter_text(path, key, columns, chunk_rows, limit, text_split)
    if fmt not in ("csv", "tsv", "parquet"):
        frame = read_table(path, key, column_names, text_split, nested=True)
        frame = frame if limit is None else frame.iloc[:limit]
        return list(frame.columns), (frame.iloc[i : i + chunk_rows][[c for c in columns if c in frame.columns]]
                                     for i in range(0, len(frame), chunk_rows))
    options = {}  # per csv file, computed once (it may warn about a header row)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(files[0]).schema_arrow
            raw = list(schema.names) + _struct_names(schema)
        else:
            options[files[0]] = _csv_options(files[0], fmt, key, column_names)
            with open_binary(files[0]) as handle:
                raw = [str(c) for c in pd.read_csv(handle, nrows=0, **options[files[0]]).columns]
    except Exception as exc:
        raise _parse_error(exc, key, files[0]) from exc
    names = {str(c).strip(): c for c in raw}
    wanted = [names[c] for c in columns if c in names]

    def parquet_pieces(file: Path):
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(file)
        top = set(handle.schema_arrow.names)
        heads = list(dict.fromkeys(c if c in top else c.split(".")[0] for c in wanted))
        for batch in handle.iter_batches(batch_size=chunk_rows, columns=[h for h in heads if h in top]):
            frame = batch.to_pandas()
            for c in wanted:
                if c not in frame.columns and c.split(".")[0] in frame.columns:
                    head, rest = c.split(".", 1)
                    frame[c] = [nested_value(v, rest) if isinstance(v, dict) else None for v in frame[head]]
            yield frame[[c for c in wanted if c in frame.columns]]

    def csv_pieces(file: Path):
        with open_binary(file) as handle:
            yield from pd.read_csv(handle, usecols=wanted, chunksize=chunk_rows, **options[file])

    def chunks():
        parts, seen = start(str(path)), 0
        for file in files:
            try:
                if fmt == "parquet":
                    part, pieces = Part(str(file), seen, lines=False), parquet_pieces(file)
                else:
                    if file not in options:
                        options[file] = _csv_options(file, fmt, key, column_names)
                    part = Part(str(file), seen, 1 if options[file]["header"] is None else 2)
                    pieces = csv_pieces(file)
                parts.append(part)
                for frame in pieces:
                    frame.columns = [str(c).strip() for c in frame.columns]
                    if limit is not None and seen + len(frame) > limit:
                        frame = frame.iloc[: limit - seen]
                    seen += len(frame)
                    if len(frame):
                        yield frame
                    if limit is not None and seen >= limit:
                        return
            except DataError:
                raise
            except Exception as exc:
                raise _parse_error(exc, key, file) from exc

    return list(names), chunks()


def _struct_names(schema) -> list[str]:
    """Dotted names of the fields inside a parquet schema's struct columns."""
    import pyarrow as pa

    def inner(field, prefix):
        if not pa.types.is_struct(field.type):
            return []
        out = []
        for child in field.type:
            out.append(f"{prefix}{field.name}.{child.name}")
            out += inner(child, f"{prefix}{field.name}.")
        return out

    return [name for field in schema for name in inner(field, "")]


def iter_jsonl(path: Path, key: str, chunk_rows: int = 50_000, limit: int | None = None):
    """Lists of at most `chunk_rows` objects from JSON-lines file(s), read line by line so a file
    is never whole in memory. Blank lines are skipped, as read_table skips them; errors name the
    file, line and column as read_table's do."""
    return _iter_rows(path, key, chunk_rows, limit, lambda file, part: _jsonl_rows(file, key, part))


def _iter_rows(path: Path, key: str, chunk_rows: int, limit: int | None, rows_of):
    """Lists of at most `chunk_rows` rows of the split's file(s), `rows_of(file, part)` giving one
    file's rows line by line (and recording their lines in `part` for row_location); a corrupt
    compressed file is one line naming it, as in read_table."""
    files = _existing_files(path, key)
    parts, rows, seen = start(str(path)), [], 0
    for file in files:
        part = Part(str(file), seen)
        parts.append(part)
        try:
            for row in rows_of(file, part):
                if limit is not None and seen >= limit:
                    break
                rows.append(row)
                seen += 1
                if len(rows) == chunk_rows:
                    yield rows
                    rows = []
        except Exception as exc:
            if decompression_failed(exc):
                raise corrupt(file, key, exc) from exc
            raise
        if limit is not None and seen >= limit:
            break
    if rows:
        yield rows


def _iter_text(path: Path, key: str, columns: list[str], chunk_rows: int, limit: int | None, text_split: str):
    """iter_table for .txt: the one `text` column, `chunk_rows` lines (or paragraphs) at a time."""
    import pandas as pd

    for texts in _iter_rows(path, key, chunk_rows, limit, lambda file, part: _text_rows(file, key, text_split, part)):
        yield pd.DataFrame({"text": texts} if "text" in columns else {}, dtype=object)


def _iter_jsonl(path: Path, key: str, columns: list[str], chunk_rows: int, limit: int | None):
    """iter_table for json lines: the column names are the keys of the first chunk's rows (and the
    dotted names of their nested fields). Cells stay Python objects (no per-chunk numeric
    inference), so a chunk boundary never changes a value; a row without a requested key gives
    None there, which the caller reports as empty."""
    import itertools

    import pandas as pd

    pending = iter_jsonl(path, key, chunk_rows, limit)
    first = next(pending, None)
    if first is None:
        raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
    names: dict[str, str] = {}
    for row in first:
        for name in list(row) + nested_names(row):
            names.setdefault(str(name).strip(), name)  # stripped, as read_table does
    wanted = {c: names[c] for c in columns if c in names}

    def frames():
        for chunk in itertools.chain([first], pending):
            yield pd.DataFrame({c: [nested_value(row, raw) for row in chunk] for c, raw in wanted.items()}, dtype=object)

    return list(names), frames()


def _parse_error(exc: Exception, key: str, path: Path) -> DataError:
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
    import json

    import pandas as pd

    with open_binary(path) as handle:
        text = handle.read().decode("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]} wrapper, as the datasets json loader accepts
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or json lines).")
    return pd.DataFrame(data)


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
