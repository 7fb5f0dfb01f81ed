"""`llmctl report RUN` as a function: read what a run directory holds, write one HTML page
(llmctl.runs.report builds it).

    report = build_report("runs/sst2")     # report.path, report.missing (the parts left out)

Only environment.json or recipe.yaml is required (it makes the directory a run).
"""

from __future__ import annotations

from pathlib import Path

from llmctl import faults
from llmctl.errors import UsageError
from llmctl.files import write_text_atomic
from llmctl.runs import files as run_files
from llmctl.runs.report.build import DEFAULT_NAME, HtmlReport, report_html
from llmctl.runs.view import evaluations


def build_report(run_dir: Path, output: Path | None = None, max_examples: int = 500, worst: int = 10) -> HtmlReport:
    if output is not None and Path(output).expanduser().is_dir():  # refused before the page is built
        raise UsageError(f"--output {output} is a directory.",
                         f"Give a file name, e.g. --output {Path(output) / 'report.html'}.")
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir() or not ((run_dir / "environment.json").is_file() or (run_dir / "recipe.yaml").is_file()):
        raise UsageError(f"{run_dir} is not an llmctl run directory (no environment.json or recipe.yaml).",
                         "Pass a directory made by `llmctl finetune` (its output_dir).")
    # Every file through the one run reader: a malformed, oversized or linked file is exit 2 naming it.
    run_files.check_run(run_dir)
    recipe_text = run_files.read_text(run_dir / "recipe.yaml", root=run_dir) or ""
    recipe = run_files.read_yaml(run_dir / "recipe.yaml", root=run_dir) or {}
    env = run_files.read_json(run_dir / "environment.json", root=run_dir) or {}
    final = run_files.read_json(run_dir / "metrics.json", root=run_dir) or {}
    history = evaluations(run_dir)  # complete lines only: a running run may have half a line at the end
    report = HtmlReport(Path(output).expanduser() if output else run_dir / DEFAULT_NAME)

    html = report_html(run_dir, report, recipe_text, recipe, env, final, history, max_examples, worst)
    report.path.parent.mkdir(parents=True, exist_ok=True)
    faults.hook("write", step=0, name="report")  # test hook: the disk fills as the page is written
    write_text_atomic(report.path, html, "the report")
    return report
