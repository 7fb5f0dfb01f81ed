"""`llmctl runs list [DIR] | show RUN | compare BASE CANDIDATE`: read run directories back
(llmctl.core.runs) and print them; no torch is imported."""

from __future__ import annotations

import json
import shlex
import sys

import typer

from llmctl.cli._app import CommandApp
from llmctl.console import fmt_size
from llmctl.metrics.display import show as show_value

runs_app = CommandApp(help="List, inspect and compare run directories; gate a candidate run against a baseline.",
                 no_args_is_help=True)

JSON_HELP = "Print JSON instead of text."


@runs_app.command("list")
def list_(directory: str = typer.Argument("runs", metavar="DIR", help="Folder holding run directories."),
          json_out: bool = typer.Option(False, "--json", help="Print a JSON list, one object per run.")):
    """One line per run: task, model, training data, best metric, status (finished / interrupted / running)."""
    from llmctl.console import print_json, warn
    from llmctl.core.runs import list_runs_in

    found, skipped = list_runs_in(directory)
    for line in skipped:
        warn(line)
    if json_out:
        print_json(found)
    elif not found:
        print(f"no llmctl runs in {directory}", file=sys.stderr)
    else:
        _table(None, ["run", "task", "model", "data", "best", "status", "started (UTC)", "finished"],
               [[r["name"], r["task"] or "?", _short(r["model"]), _short(r["data"]), _best(r["best"]),
                 _status(r), _when(r["started"]), _when(r["finished"])] for r in found])


@runs_app.command("show")
def show(run: str = typer.Argument(..., metavar="RUN", help="Run directory from `llmctl finetune`."),
         json_out: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """One run in detail: recipe, environment, metrics, every evaluation, model folder, checkpoints."""
    from llmctl.console import print_json
    from llmctl.core.runs import show as show_run
    from llmctl.train.fingerprint import flatten

    info = show_run(run)
    if json_out:
        print_json(info)
        return
    print(f"run: {info['path']}\nstatus: {_status(info)}")
    for key in ("task", "model", "data"):
        print(f"{key}: {info[key]}")
    print(f"best: {_best(info['best'])}\nstarted: {_when(info['started'])} UTC  finished: {_when(info['finished'])}")
    _show_environment(info["environment"])
    _section("recipe (resolved; empty keys left out)",
             [[k, _yaml_word(v)] for k, v in flatten(info["recipe"]).items() if v is not None and k != "output_dir"])
    final = info["final"]
    if final:
        _table(f"final metrics (model saved at step {final.get('best_step')})",
               ["metric", "value"], [[k, show_value(v, k)] for k, v in (final.get("metrics") or {}).items()])
        if final.get("test_metrics"):
            _table("test metrics", ["metric", "value"], [[k, show_value(v, k)] for k, v in final["test_metrics"].items()])
    _show_evaluations(info["evaluations"])
    model = info["model_dir"]
    print(f"model: {model['path']} ({'LoRA adapter' if model['kind'] == 'adapter' else 'full model'}, "
          f"{fmt_size(model['bytes'])})" if model else "model: none saved yet")
    _section("checkpoints", [[c["name"], "complete" if c["complete"] else "incomplete (skipped by --resume)",
                              fmt_size(c["bytes"])] for c in info["checkpoints"]] or [["none"]])


@runs_app.command("compare")
def compare(base: str = typer.Argument(..., metavar="BASE", help="The reference run directory."),
            candidate: str = typer.Argument(..., metavar="CANDIDATE", help="The run directory to judge against it."),
            max_drop: list[str] = typer.Option(
                [], "--max-drop", metavar="METRIC=AMOUNT",
                help="Exit 4 when CANDIDATE is worse than BASE by more than AMOUNT on METRIC (repeatable); for "
                "loss, perplexity, mse, mae, rmse and *_loss, worse means higher."),
            json_out: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Two runs side by side: recipe, data, library versions and every final metric (candidate - base)."""
    from llmctl.console import print_json
    from llmctl.core.runs import compare as compare_runs, gate, parse_max_drop

    result = compare_runs(base, candidate, parse_max_drop(max_drop))
    if json_out:
        print_json(result)
    else:
        _show_comparison(result)
    gate(result)


# -- text rendering --------------------------------------------------------------------------
def _show_comparison(result: dict) -> None:
    b, c = result["base"], result["candidate"]
    print(f"base:      {b['path']} ({b['status']})\ncandidate: {c['path']} ({c['status']})\ntask: {b['task']}")
    diff = result["differences"]
    _section("recipe differences (base -> candidate)",
             [[k, f"{json.dumps(v['base'])} -> {json.dumps(v['candidate'])}"] for k, v in diff["recipe"].items()]
             or [["none"]])
    _section("data", [[split, ("same" if d["same"] else "different") + f" ({d['compared']})",
                       d["base"] if d["same"] else f"{d['base']} -> {d['candidate']}"]
                      for split, d in diff["data"].items()])
    _section("library versions (base -> candidate)",
             [[k, f"{v['base']} -> {v['candidate']}"] for k, v in diff["versions"].items()] or [["same"]])
    for line in result["missing_final_metrics"]:
        print(f"warning: {line}; final metrics not compared", file=sys.stderr)
    if result["metrics"]:
        _table("final metrics", ["metric", "base", "candidate", "delta", ""],
               [[name, _num(m["base"]), _num(m["candidate"]), _num(m["delta"], sign=True), _verdict(m)]
                for name, m in result["metrics"].items()])
    gate = result["gate"]
    if gate["max_drop"]:
        print("gate: passed" if gate["passed"] else "gate: FAILED: " + "; ".join(gate["failed"]))


def _show_environment(env: dict | None) -> None:
    if not env:
        print("environment: not written yet")
        return
    packages = env.get("packages") or {}
    print(f"environment: python {env.get('python')}, "
          + ", ".join(f"{k} {v}" for k, v in packages.items() if v)
          + f"; device {env.get('device')} x{env.get('num_processes')}; git {env.get('git_sha') or 'unknown'}")
    argv = env.get("argv") or []
    if argv:
        print("command: " + shlex.join(["llmctl", *argv[1:]]))


def _show_evaluations(evals: list[dict]) -> None:
    names = [k for k in evals[0] if k not in ("step", "epoch")] if evals else []
    _table("evaluations", ["step", "epoch", *names],
           [[e.get("step"), _num(e.get("epoch"), digits=2), *(show_value(e.get(n), n) or "-" for n in names)] for e in evals]
           or [["none yet", "", *([""] * len(names))]])


def _verdict(m: dict) -> str:
    if m["delta"] is None:
        return "only in " + ("base" if m["candidate"] is None else "candidate")
    if m["delta"] == 0:
        return "same"
    return "better" if (m["delta"] < 0) == m["lower_is_better"] else "worse"


def _section(title: str, rows: list[list]) -> None:
    _table(title, [""] * max(len(r) for r in rows), rows, header=False)


def _table(title: str | None, columns: list[str], rows: list[list], header: bool = True) -> None:
    """A Rich table on a terminal; plain aligned columns otherwise (logs, pipes, CI)."""
    cells = [[str(v) for v in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=header)  # the title above it: as a Rich title it wraps to a narrow table
        for name in columns:
            table.add_column(name)
        for row in cells:
            table.add_row(*row)
        if title:
            Console().print(title, style="bold", highlight=False, markup=False)
        Console().print(table)
        return
    if title:
        print(title)
    shown = ([columns] if header else []) + cells
    widths = [max(len(r[i]) for r in shown if i < len(r)) for i in range(len(columns))]
    for row in shown:
        print(("  " if title else "") + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _yaml_word(value):
    """A recipe value as the recipe spells it: true / false, not Python's True / False."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def _num(value, digits: int = 4, sign: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return f"{value:{'+' if sign else ''}.{digits}f}"


def _best(best: dict | None) -> str:
    return f"{best['name']}={best['value']:.4f}" if best else "-"


def _status(row: dict) -> str:
    return f"running (pid {row['pid']})" if row.get("pid") else row["status"]


def _short(text: str | None, width: int = 32) -> str:
    """A long path keeps its end, the part that tells runs apart."""
    if not text:
        return "-"
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _when(stamp: str | None) -> str:
    return stamp.replace("T", " ")[:16] if stamp else "-"


