"""`llmctl generate`'s rows on stdout as they finish, in input order, keeping every finished one on
Ctrl-C. Generation hands over finished rows (generate_text's on_rows); the command prints them here."""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager

from llmctl.console import print_json
from llmctl.errors import Interrupted


def ranges(positions: list[int]) -> str:
    """1-based, compact: [0, 1, 2, 5] -> "1-3, 6"."""
    out, run = [], []
    for p in positions:
        if run and p != run[-1] + 1:
            out.append(run)
            run = []
        run.append(p)
    out += [run] if run else []
    return ", ".join(f"{r[0] + 1}" if len(r) == 1 else f"{r[0] + 1}-{r[-1] + 1}" for r in out)


def open_output(path: str | None):
    """The file `--output` names, open for the rows (None: stdout). Rows are written as they finish,
    so an interrupted run keeps the finished ones there too."""
    if path is None:
        return None
    from pathlib import Path

    from llmctl.errors import UsageError

    try:
        return open(Path(path).expanduser(), "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write it: {exc.strerror}.", "Choose another path.") from None


class RowPrinter:
    """jsonl rows on stdout: a row is printed (and flushed) once it and every row before it are
    done, so the output is in input order while later batches still run. With `json_mode` the
    rows are kept for the one JSON object printed at the end."""

    def __init__(self, count: int, json_mode: bool = False, out=None):
        self.rows: list[dict | None] = [None] * count
        self.printed = 0  # rows[:printed] are on stdout
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.writing = self.deferred = False

    @contextmanager
    def sigint_between_rows(self):
        """Ctrl-C raises KeyboardInterrupt as usual, except while rows are being written: then it
        waits until they are, so no row is cut in half or printed twice by interrupted()."""
        def handler(signum, frame):
            if self.writing:
                self.deferred = True
            else:
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _print(self, gaps: bool = False) -> None:
        """Print the finished rows after rows[:printed]: the run of consecutive ones, or with
        `gaps` (interrupted) all of them. `writing` is set before any state changes."""
        self.writing = True
        try:
            end = self.printed
            while end < len(self.rows) and self.rows[end] is not None:
                end += 1
            stop = len(self.rows) if gaps else end
            for i in range(self.printed, stop):
                if self.rows[i] is not None:
                    self.out.write(json.dumps(self.rows[i]) + "\n")
            self.printed = stop
            self.out.flush()
        finally:
            self.writing = False
        if self.deferred:
            self.deferred = False
            raise KeyboardInterrupt

    def add(self, pairs) -> None:
        for i, row in pairs:
            self.rows[i] = row
        if not self.json_mode:
            self._print()

    def finish(self, stats: dict) -> None:
        if self.json_mode:
            print_json({"results": self.rows, "stats": stats}, self.out)

    def interrupted(self) -> Interrupted:
        """Print every finished row not printed yet (still in input order, after a gap) and
        return the error that says which prompts have rows. --json: null for unfinished ones."""
        done = [i for i, row in enumerate(self.rows) if row is not None]
        if self.json_mode:
            print_json({"results": self.rows, "interrupted": True}, self.out)
        else:
            self._print(gaps=True)
        which = f"; rows printed for prompts {ranges(done)}" if done else ""
        return Interrupted(f"interrupted after {len(done)} of {len(self.rows)} prompt(s){which}.",
                           "The others were not generated." if len(done) < len(self.rows) else None)
