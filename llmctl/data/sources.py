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


def read_text(path: Path, key: str, encoding: str = "utf-8", missing_tip: str = "Check the path (relative to where you run llmctl).") -> str:
    """A whole text file, or a DataError naming `key` and the file when it is missing or not UTF-8."""
    if not path.is_file():
        raise DataError(f"{key}: file {path} does not exist.", missing_tip)
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{key}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
                        "Save the file as UTF-8.") from exc


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
            frame = pd.read_csv(
                path,
                sep=sep,
                quoting=quoting,
                header=header if column_names else "infer",
                names=column_names,
                keep_default_na=False,
                dtype_backend="numpy_nullable",
                encoding="utf-8",
            )
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_json(path, fmt)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"{key}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except Exception as exc:  # pandas raises many types; the message is what matters
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{key}: cannot parse {path}: {first}.") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


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
