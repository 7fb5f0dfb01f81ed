"""Read a local split in chunks, so a million-row file is never whole in memory.

csv / tsv / parquet / json lines / .txt files are read chunk by chunk, file after file; a json
document is read whole and sliced. Parsing, errors and row locations are llmctl.data.sources':
the same options, the same messages (row_location works on streamed rows too).
"""

from __future__ import annotations

from pathlib import Path

from llmctl.data.inputs import Part, corrupt, decompression_failed, open_binary, start
from llmctl.data.nested import nested_names, nested_value
from llmctl.data.sources import (csv_options, data_format, existing_files, jsonl_rows, parse_error, read_table,
                                 text_rows)
from llmctl.errors import DataError


def iter_table(path: Path, key: str, columns: list[str], column_names: list[str] | None = None,
               chunk_rows: int = 50_000, limit: int | None = None, text_split: str = "line"):
    """(column names of the file, iterator of DataFrames of `columns`, at most `chunk_rows` rows each).

    csv / tsv / parquet / json lines / .txt are read chunk by chunk, file after file, so the whole
    table is never in memory; a json document is read whole and sliced. Parsing is
    read_table's: the same options, the same errors. Requested columns missing from the file are
    left out (the caller names them, with the file's columns); dotted names reach into nested fields."""
    import pandas as pd

    files = existing_files(path, key)
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
            options[files[0]] = csv_options(files[0], fmt, key, column_names)
            with open_binary(files[0]) as handle:
                raw = [str(c) for c in pd.read_csv(handle, nrows=0, **options[files[0]]).columns]
    except Exception as exc:
        raise parse_error(exc, key, files[0]) from exc
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
                        options[file] = csv_options(file, fmt, key, column_names)
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
                raise parse_error(exc, key, file) from exc

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
    return _iter_rows(path, key, chunk_rows, limit, lambda file, part: jsonl_rows(file, key, part))


def _iter_rows(path: Path, key: str, chunk_rows: int, limit: int | None, rows_of):
    """Lists of at most `chunk_rows` rows of the split's file(s), `rows_of(file, part)` giving one
    file's rows line by line (and recording their lines in `part` for row_location); a corrupt
    compressed file is one line naming it, as in read_table."""
    files = existing_files(path, key)
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

    for texts in _iter_rows(path, key, chunk_rows, limit, lambda file, part: text_rows(file, key, text_split, part)):
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
