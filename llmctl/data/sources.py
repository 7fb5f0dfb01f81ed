"""Load one split as a `datasets.Dataset`, from a local file or the Hub.

Local files are read with pandas (no cache writes, predictable typing); text cells
are never turned into NaN, so a sentence that says "null" stays a sentence.
Errors name the recipe key and the file, and say what to change.
"""

from __future__ import annotations

import csv
from pathlib import Path

from llmctl.console import warn
from llmctl.errors import DataError
from llmctl.hub import ensure_hub_reachable

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def looks_like_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in FILE_FORMATS or "/" in spec or Path(spec).exists()


def not_utf8(key: str, path: Path, exc: UnicodeDecodeError, offset: int = 0) -> DataError:
    """The one "not UTF-8" error, for every reader; `offset`: bytes before the decoded piece."""
    return DataError(f"{key}: {path} is not UTF-8 text ({exc.reason} at byte {offset + exc.start}).",
                     "Save the file as UTF-8.")


def read_text(path: Path, key: str, encoding: str = "utf-8", missing_tip: str = "Check the path (relative to where you run llmctl).") -> str:
    """A whole text file, or a DataError naming `key` and the file when it is missing or not UTF-8."""
    if not path.is_file():
        raise DataError(f"{key}: file {path} does not exist.", missing_tip)
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise not_utf8(key, path, exc) from exc


def read_table(path: Path, key: str, column_names: list[str] | None = None):
    """Read a csv/tsv/jsonl/json/parquet file into a pandas DataFrame with stripped column names."""
    import pandas as pd

    if not path.is_file():
        raise DataError(
            f"{key}: file {path} does not exist.",
            "Check the path (relative to where you run llmctl) or use a split name with data.dataset.",
        )
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{key}: cannot read {path}: unknown extension.", f"Use one of {', '.join(FILE_FORMATS)}.")
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, **_csv_options(path, fmt, key, column_names))
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_json(path, fmt)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise not_utf8(key, path, exc) from exc
    except Exception as exc:  # pandas raises many types; the message is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{key}: cannot parse {path}: {first}.") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _csv_options(path: Path, fmt: str, key: str, column_names: list[str] | None) -> dict:
    """pandas.read_csv options for a csv/tsv file; the same for a whole read and a chunked one."""
    sep = "\t" if fmt == "tsv" else ","
    # GLUE's TSVs contain bare quote characters inside sentences.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    header = None
    if column_names and _first_row(path, sep, quoting) == [n.strip() for n in column_names]:
        # Certainly a header: as a data row it would become an example (and turn a numeric
        # label column into strings). Read it as the header it is, and say so.
        warn(f"{key}: {path} starts with a header row ({', '.join(column_names)}) although "
             "data.column_names is set; skipping it. Drop data.column_names or the header line.")
        header = 0
        _HEADER_SKIPPED.add(str(path))
    return {"sep": sep, "quoting": quoting, "header": header if column_names else "infer", "names": column_names,
            "keep_default_na": False, "dtype_backend": "numpy_nullable", "encoding": "utf-8"}


def iter_table(path: Path, key: str, columns: list[str], column_names: list[str] | None = None,
               chunk_rows: int = 50_000, limit: int | None = None):
    """(column names of the file, iterator of DataFrames of `columns`, at most `chunk_rows` rows each).

    csv / tsv / parquet / jsonl are read chunk by chunk, so the whole table is never in memory;
    json is read whole (a json list cannot be streamed) and sliced. Parsing is read_table's:
    the same options, the same errors. Requested columns missing from the file are left out (the
    caller names them, with the file's columns)."""
    import pandas as pd

    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt == "jsonl" and path.is_file():
        return _iter_jsonl(path, key, columns, chunk_rows, limit)
    if fmt not in ("csv", "tsv", "parquet"):
        frame = read_table(path, key, column_names)
        frame = frame if limit is None else frame.iloc[:limit]
        return list(frame.columns), (frame.iloc[i : i + chunk_rows][[c for c in columns if c in frame.columns]]
                                     for i in range(0, len(frame), chunk_rows))
    if not path.is_file():
        read_table(path, key, column_names)  # raises the "does not exist" error
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(path)
            raw = list(handle.schema_arrow.names)
        else:
            options = _csv_options(path, fmt, key, column_names)
            raw = [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except Exception as exc:
        raise _parse_error(exc, key, path) from exc
    names = {str(c).strip(): c for c in raw}
    wanted = [names[c] for c in columns if c in names]

    def chunks():
        seen = 0
        try:
            if fmt == "parquet":
                pieces = (b.to_pandas() for b in handle.iter_batches(batch_size=chunk_rows, columns=wanted))
            else:
                pieces = pd.read_csv(path, usecols=wanted, chunksize=chunk_rows, **options)
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
            raise _parse_error(exc, key, path) from exc

    return list(names), chunks()


def iter_jsonl(path: Path, key: str, chunk_rows: int = 50_000, limit: int | None = None):
    """Lists of at most `chunk_rows` objects from a JSON-lines file, read line by line so the file
    is never whole in memory. Blank lines are skipped, as read_table skips them; errors name the
    file, line and column as read_table's do."""
    import json

    if not path.is_file():
        read_table(path, key)  # raises the "does not exist" error
    rows, seen, offset = [], 0, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(key, path, exc, offset) from exc
            offset += len(raw)
            if not line.strip():
                continue
            if limit is not None and seen >= limit:
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}.",
                                'Write one object per line, e.g. {"sentence": "...", "label": 1}.')
            rows.append(row)
            seen += 1
            if len(rows) == chunk_rows:
                yield rows
                rows = []
    if rows:
        yield rows


def _iter_jsonl(path: Path, key: str, columns: list[str], chunk_rows: int, limit: int | None):
    """iter_table for json lines: the column names are the keys of the first chunk's rows. Cells
    stay Python objects (no per-chunk numeric inference), so a chunk boundary never changes a
    value; a row without a requested key gives None there, which the caller reports as empty."""
    import itertools

    import pandas as pd

    pending = iter_jsonl(path, key, chunk_rows, limit)
    first = next(pending, None)
    if first is None:
        raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
    names = {str(name).strip(): name for row in first for name in row}  # stripped, as read_table does
    wanted = {c: names[c] for c in columns if c in names}

    def frames():
        for chunk in itertools.chain([first], pending):
            yield pd.DataFrame({c: [row.get(raw) for row in chunk] for c, raw in wanted.items()}, dtype=object)

    return list(names), frames()


def _parse_error(exc: Exception, key: str, path: Path) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return not_utf8(key, path, exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{key}: cannot parse {path}: {first}.")


# Files read with data.column_names whose header row was skipped: row_location must count it.
_HEADER_SKIPPED: set[str] = set()


def _first_row(path: Path, sep: str, quoting: int) -> list[str]:
    """The first csv/tsv row's cells, stripped (utf-8-sig: a BOM is not part of the first name)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [cell.strip() for cell in next(csv.reader(handle, delimiter=sep, quoting=quoting), [])]


def _read_json(path: Path, fmt: str):
    import json

    import pandas as pd

    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl" or (fmt == "json" and not text.lstrip().startswith(("[", "{"))):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
        return pd.DataFrame(rows)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]} wrapper, as the datasets json loader accepts
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or json lines).")
    return pd.DataFrame(data)


def load_split(spec: str, key: str, dataset: str | None, config: str | None, column_names=None):
    """Return (datasets.Dataset, where) for a split name or file. `where` names it in messages."""
    import datasets

    if dataset and not looks_like_file(spec):
        if not Path(dataset).expanduser().exists():  # a local folder of data files needs no Hub
            ensure_hub_reachable(f"dataset {dataset}", "local data files (csv, tsv, jsonl, json or parquet)")
        try:
            ds = datasets.load_dataset(dataset, config, split=spec)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"{key}: cannot load split '{spec}' of {dataset}" + (f" ({config})" if config else "") + f": {first}",
                "Check data.dataset / data.config / the split name, or point the split at a local file.",
            ) from exc
        return ds, f"{dataset}[{spec}]"
    path = Path(spec).expanduser()
    frame = read_table(path, key, column_names)
    if len(frame) == 0:
        raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
    return datasets.Dataset.from_pandas(frame, preserve_index=False), str(path)


def row_location(where: str, index: int, has_header: bool = True) -> str:
    """`file.csv:12` for a csv/tsv row (1-based line), `file.jsonl:12`, or `dataset[split] row 11`."""
    suffix = Path(where).suffix.lower()
    has_header = has_header or where in _HEADER_SKIPPED
    if suffix in (".csv", ".tsv"):
        return f"{where}:{index + (2 if has_header else 1)}"
    if suffix in (".jsonl",):
        return f"{where}:{index + 1}"
    return f"{where} row {index}"
