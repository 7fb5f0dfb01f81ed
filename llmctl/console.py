"""Rendering for people and scripts: Rich on a terminal, plain lines in CI, JSON with --json.

Logs and progress go to stderr; results (tables, JSON, predictions) go to stdout, so
`llmctl finetune ... --json | jq` always sees exactly one JSON object. Under several
processes only rank 0 speaks.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from llmctl.metrics.display import show as show_value
from llmctl.metrics.per_type import PER_TYPE_FIELDS, split_per_type


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


_JSON_PRINTED: list[bool] = []  # one entry once a command printed its JSON object on stdout


def print_json(data, out=None) -> None:
    """A command's whole --json output: one JSON object on stdout (or `out`), from the main process."""
    if is_main_rank():
        print(json.dumps(data), file=out or sys.stdout, flush=True)
        if out is None or out is sys.stdout:
            _JSON_PRINTED[:] = [True]


def print_result(data, json_out: bool, lines) -> None:
    """A command's result on stdout: `data` as one JSON object with --json, else `lines` (an
    iterable of strings, consumed only without --json, so a generator's work is skipped)."""
    if json_out:
        print_json(data)
        return
    for line in lines:
        print(line, end="" if line.endswith("\n") else "\n")


def json_printed() -> bool:
    """Whether this command has printed its JSON object (a failure after it, such as a quality
    gate, must not print a second one)."""
    return bool(_JSON_PRINTED)


def note(message: str) -> None:
    """One line on stderr from the main process, outside any Console (data loading, generation):
    stdout stays for results and --json."""
    if is_main_rank():
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    note(f"warning: {message}")


def tell(given):
    """Show the notes a task returned with `given` (a split or Features, see
    llmctl.tasks.base.Note) and return it: tasks never print, their callers do it here."""
    for item in getattr(given, "notes", ()):
        (warn if item.warning else note)(item.text)
    return given


class _LogLines(logging.Handler):
    """What the parts below the commands log (llmctl.data.sources, llmctl.train.tracking, ...)
    becomes the console's one line on stderr: they never print, the console is the one sink."""

    def emit(self, record: logging.LogRecord) -> None:
        (warn if record.levelno >= logging.WARNING else note)(record.getMessage())


def route_logs() -> None:
    """Render the `llmctl.*` loggers here (once per process; the CLI calls it at start)."""
    log = logging.getLogger("llmctl")
    if not any(isinstance(h, _LogLines) for h in log.handlers):
        log.addHandler(_LogLines())
        log.setLevel(logging.INFO)
        log.propagate = False


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_size(n: float, grouped: bool = False) -> str:
    """Bytes for people, GB the largest unit: `512 B`, `1.5 MB`. `grouped`: a count under 1 KB with
    a thousands separator (`1,000 B`), as `llmctl push` has always listed files."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return (f"{n:,} B" if grouped else f"{n:.0f} B") if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_metrics(metrics: dict) -> str:
    """`name value` pairs on one line, by the one number rule of the tables and the report."""
    return " ".join(f"{k} {show_value(v, k)}" for k, v in metrics.items())


class Console:
    def __init__(self, json_mode: bool = False, quiet: bool = False):
        self.json_mode = json_mode
        self.speak = is_main_rank() and not quiet
        self.rich = self.speak and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self._progress = None
        self._task = None
        if self.rich:
            from rich.console import Console as RichConsole

            self.err = RichConsole(stderr=True)

    # -- logs ---------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.speak:
            return
        if self.rich:
            (self._progress.console if self._progress else self.err).print(message, highlight=False, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        self.log(f"warning: {message}")

    # -- training events -----------------------------------------------------------------
    def show(self, event) -> None:
        from llmctl import events as ev

        if isinstance(event, ev.Started):
            what = f"resuming from {event.resumed_from}" if event.resumed_from else "training"
            self.log(f"{what}: {event.num_examples} examples, {event.total_steps} steps "
                     f"({event.steps_per_epoch}/epoch), {event.num_processes} process(es), {event.precision}")
            self._start_bar(event.total_steps)
        elif isinstance(event, ev.Progress):
            if self._progress is not None:
                self._progress.update(self._task, completed=event.step,
                                      stats=f"loss {event.loss:.4f} lr {event.learning_rate:.2e} "
                                            f"{event.samples_per_second:.0f} samples/s")
            elif event.log:
                extra = "".join(f" {k} {v:.4f}" for k, v in event.metrics.items())
                self.log(f"step {event.step}/{event.total_steps} epoch {event.epoch:.2f} loss {event.loss:.4f}{extra} "
                         f"lr {event.learning_rate:.2e} {event.samples_per_second:.1f} samples/s "
                         f"eta {fmt_duration(event.eta_s)}")
        elif isinstance(event, ev.Evaluated):
            self.log(f"eval step {event.step} epoch {event.epoch:.2f}: {fmt_metrics(split_per_type(event.metrics)[0])}"
                     + (" (best)" if event.is_best else ""))
        elif isinstance(event, ev.Checkpointed):
            self.log(f"checkpoint saved: {event.path}")
        elif isinstance(event, ev.Stopped):
            self._stop_bar()
            if event.reason == "early_stopping":
                self.log(f"early stopping at step {event.step}")

    def _start_bar(self, total: int) -> None:
        if not self.rich:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.err, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, stats="")

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self._stop_bar()

    # -- results (stdout) ---------------------------------------------------------------
    def result(self, data: dict, title: str) -> None:
        if self.json_mode:
            print_json(data)
            return
        if not is_main_rank():
            return
        if data.get("metrics"):  # a run without validation has none: no empty header
            self.table(title, data["metrics"])
        if data.get("test_metrics"):
            self.table("test metrics (best model)", data["test_metrics"])
        for key in ("output_dir", "model_dir"):
            if key in data:
                print(f"{key}: {data[key]}")
        if "train" in data:
            t = data["train"]
            print(f"trained {t['samples']} samples in {t['runtime_s']:.1f}s "
                  f"({t['samples_per_second']:.1f} samples/s, {t['num_processes']} process(es), {t['precision']})")

    def table(self, title: str, metrics: dict) -> None:
        metrics, per_type = split_per_type(metrics)
        self._metric_table(title, metrics)
        if per_type:
            self._per_type_table(per_type)

    def _per_type_table(self, per_type: dict) -> None:
        if sys.stdout.isatty():
            from rich.console import Console as RichConsole
            from rich.table import Table

            table = Table(title="per entity type")
            for name in ("type",) + PER_TYPE_FIELDS:
                table.add_column(name, justify="left" if name == "type" else "right")
            for kind, m in per_type.items():
                table.add_row(kind, *(f"{m[f]:.4f}" for f in PER_TYPE_FIELDS[:3]), str(int(m["number"])))
            RichConsole().print(table)
        else:
            print(f"  {'type':<12} {'precision':>9} {'recall':>9} {'f1':>9} {'number':>7}")
            for kind, m in per_type.items():
                print(f"  {kind:<12} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {int(m['number']):>7}")

    def _metric_table(self, title: str, metrics: dict) -> None:
        if sys.stdout.isatty():
            from rich.console import Console as RichConsole
            from rich.table import Table

            table = Table(title=title)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for k, v in metrics.items():
                table.add_row(k, show_value(v, k))
            RichConsole().print(table)
        else:
            print(title)
            for k, v in metrics.items():
                print(f"  {k:<24} {show_value(v, k)}")


class RowsProgress:
    """Rows tokenized so far, as llmctl.data.prepare reports them: a Rich bar (rows/s, ETA) on a
    terminal, a plain line every ~10% in logs."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self._bar = self._task = None
        self._next_line = 0.1
        self._started = time.perf_counter()

    def __enter__(self):
        if sys.stderr.isatty() and is_main_rank():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="-")
        return self

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{rate:,.0f}")
        elif done / max(total, 1) >= self._next_line or done == total:
            eta = (total - done) / rate if rate else 0.0
            note(f"{self.label}: {done:,}/{total:,} rows ({rate:,.0f} rows/s, eta {eta:.0f}s)")
            self._next_line = done / max(total, 1) + 0.1

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
