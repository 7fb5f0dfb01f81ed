"""The HTML of `llmctl report RUN` (llmctl.core.report reads the run and writes the page).

Every part (metrics, pictures, diagnostics.json, the saved model for the worst predictions) is
shown when present and named as missing when not.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.runs import files as run_files
from llmctl.errors import LlmctlError, UsageError
from llmctl.runs.model_card import rows_text
from llmctl.runs.report.page import esc, figure, missing, page, para, pre, table
from llmctl.runs.view import model_label

DEFAULT_NAME = "report.html"


@dataclass
class HtmlReport:
    """The page written and what it left out (the doctor's findings are llmctl.doctor.report.Report)."""

    path: Path
    missing: list[str] = field(default_factory=list)  # parts left out, for the command to tell the user


def report_html(run_dir: Path, report: HtmlReport, recipe_text: str, recipe: dict, env: dict, final: dict,
                history: list[dict], max_examples: int = 500, worst: int = 10) -> str:
    """The page for a run whose files are read: every section, the parts left out named in `report`."""
    covered = (final.get("metric_rows") or {}).get("metrics")
    predictions, per_class_html = _predictions(run_dir, max_examples, worst, report, covered)
    diagnostics = run_files.read_json(run_dir / "diagnostics.json", root=run_dir)
    if diagnostics is not None and "<table" not in per_class_html:
        # No predictions here (no model, no validation data): the run's own record of its evaluation.
        on = f" on {rows_text(covered)}" if covered else ""
        per_class_html = (para(f"From diagnostics.json (written at the final evaluation{on}).")
                          + json_tables(diagnostics))
    sections = [
        ("reproduce", "Reproduce", _reproduce(run_dir, env, recipe)),
        ("metrics", "Final metrics", _metrics(final, history)),
        ("per-class", "Per-class / per-entity metrics", per_class_html),
        ("pictures", "Curves and pictures", _pictures(run_dir, report)),
        ("history", "Evaluations during training", _history(history)),
        ("worst", "Worst predictions on the validation set", predictions),
        ("recipe", "Recipe (resolved)", pre(recipe_text) if recipe_text else missing("No recipe.yaml in the run.")),
        ("environment", "Environment", _environment(env)),
    ]
    model = model_label(recipe) or "?"
    subtitle = f"task {recipe.get('task', '?')} · model {model} · {_status(run_dir, final)} · {run_dir.resolve()}"
    return page(f"llmctl run {run_dir.resolve().name}", subtitle, sections)


def _predictions(run_dir: Path, max_examples: int, worst: int, report: HtmlReport,
                 covered: dict | None = None) -> tuple[str, str]:
    """(worst-predictions HTML, per-class HTML) from running the saved model, or why not."""
    from llmctl.models.saved import find_model_dir

    def left_out(why: str) -> tuple[str, str]:
        report.missing.append(f"worst predictions: {why}")
        return missing(why), missing(f"Not computed: {why}")

    if max_examples <= 0:
        return left_out("skipped (--max-examples 0).")
    if not (find_model_dir(str(run_dir)) / "config.json").is_file():
        return left_out(f"no saved model in {run_dir / 'model'}, so the model could not be run on the validation set.")
    from llmctl.runs.report.worst import worst_predictions

    try:
        found = worst_predictions(run_dir, max_examples, worst)
    except LlmctlError as exc:
        return left_out(str(exc))
    intro = para(f"The {len(found.rows)} lowest by {found.score_name}, of the first {found.examples:,} rows of "
                 f"{found.where} (the saved model run on CPU).")
    rows = [[r["text"], r["gold"], r["predicted"], r["score"]] for r in found.rows]
    worst_html = intro + table(["text", "gold", "predicted", found.score_name], rows, numeric={3})
    if not found.per_class:
        return worst_html, missing("No per-class scores for this kind of task.")
    columns = list(next(iter(found.per_class.values())))
    per_class = table(["name", *columns], [[name, *scores.values()] for name, scores in found.per_class.items()],
                      numeric=set(range(1, len(columns) + 1)))
    said = f"Computed from the same predictions, on the first {found.examples:,} rows of {Path(found.where).name}"
    if covered and covered.get("rows") == found.examples:
        said += ": the rows the final validation metrics cover."
    elif covered:
        said += (f"; the final validation metrics cover {rows_text(covered)} (raise --max-examples to "
                 f"{covered['rows']} for the same rows).")
    else:
        said += "."
    return worst_html, para(said) + per_class


def json_tables(data, depth: int = 0) -> str:
    """diagnostics.json (whatever its shape) as tables: a dict of records, a matrix, or key/value pairs."""
    if isinstance(data, dict) and data and all(isinstance(v, dict) and all(_scalar(x) for x in v.values())
                                               for v in data.values()):
        columns = list(dict.fromkeys(k for v in data.values() for k in v))
        return table(["name", *columns], [[name, *(v.get(c) for c in columns)] for name, v in data.items()])
    if isinstance(data, list) and data and all(isinstance(r, list) and all(_scalar(x) for x in r) for r in data):
        return table([""] * len(data[0]), data)
    if isinstance(data, dict) and depth < 3:
        scalars = [[k, v] for k, v in data.items() if _scalar(v)]
        out = table(["key", "value"], scalars) if scalars else ""
        for key, value in data.items():
            if not _scalar(value):
                out += f"<h3>{esc(key)}</h3>" + json_tables(value, depth + 1)
        return out
    return pre(json.dumps(data, indent=2))


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _reproduce(run_dir: Path, env: dict, recipe: dict) -> str:
    from llmctl.runs.model_card import reproduce_command

    argv = env.get("argv") or []
    out = para("The command that started this run:") + pre(reproduce_command(env, recipe)) if len(argv) > 1 else ""
    again = shlex.join(["llmctl", "finetune", str(run_dir / "recipe.yaml"), "--output-dir", f"{run_dir}-again"])
    return out + para("The same run from its resolved recipe (every --set already applied):") + pre(again)


def _metrics(final: dict, history: list[dict]) -> str:
    if not final:
        if not history:
            return missing("No metrics.json and no evaluations yet: the run is still starting or was stopped early.")
        return missing("No metrics.json: the run has not finished (or was interrupted); the last evaluation "
                       "is in the table below.")
    out = ""
    from llmctl.metrics.per_type import PER_TYPE_FIELDS, split_per_type

    covered = final.get("metric_rows") or {}
    for key, title in (("metrics", "Validation (best evaluation)"), ("test_metrics", "Test")):
        values = final.get(key)
        if values:
            overall, per_type = split_per_type(values)
            out += f"<h3>{esc(title)}</h3>"
            if covered.get(key):
                out += para(f"On {rows_text(covered[key])}.")
            out += table(["metric", "value"], list(overall.items()), numeric={1})
            if per_type:
                out += table(["type", *PER_TYPE_FIELDS], [[kind, *v.values()] for kind, v in per_type.items()],
                             numeric={1, 2, 3, 4})
    if final.get("best_step"):
        out += para(f"Best step: {final['best_step']}.")
    train = final.get("train") or {}
    if train:
        out += "<h3>Training</h3>" + table(["", "value"], [[k, v] for k, v in train.items()], numeric={1})
    return out


def _history(history: list[dict]) -> str:
    if not history:
        return missing("No evaluations logged (metrics.jsonl is missing or empty).")
    columns = list(dict.fromkeys(k for entry in history for k in entry))
    return table(columns, [[e.get(c) for c in columns] for e in history], numeric=set(range(len(columns))))


def _pictures(run_dir: Path, report: HtmlReport) -> str:
    """Every *.png that is a regular file inside the run and under the size limit; a link (to
    /dev/zero, to a token) is never opened, since the page embeds what it reads."""
    shown = []
    for png in sorted(run_dir.glob("*.png")):
        try:
            shown.append(figure(png.name, run_files.read_bytes(png, run_files.MAX_PICTURE_BYTES, run_dir) or b""))
        except run_files.BadRunFile as exc:
            report.missing.append(f"picture {png.name}: {exc.message}")
    if not shown:
        return missing("No pictures in the run directory (runs write curves.png and per-task pictures at each "
                       "evaluation).")
    return "".join(shown)


def _environment(env: dict) -> str:
    if not env:
        return missing("No environment.json in the run.")
    packages = env.get("packages") or {}
    rest = [[k, v if _scalar(v) else json.dumps(v)] for k, v in env.items() if k not in ("packages", "argv")]
    return (table(["package", "version"], list(packages.items())) + table(["", "value"], rest)
            + para("Command line: " + shlex.join(str(a) for a in env.get("argv") or [])))


def _status(run_dir: Path, final: dict) -> str:
    from llmctl.runs.directory import RunDir

    try:
        RunDir(run_dir).ensure_free()
    except UsageError:
        return "running (this page shows what was written so far)"
    return "finished" if final else "not finished (no metrics.json)"
