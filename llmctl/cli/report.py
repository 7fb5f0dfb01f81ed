"""`llmctl report RUN`: the run as one HTML page (llmctl.core.report)."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import json_flag


@app.command("report")
def report_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run directory from `llmctl finetune`."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE.html",
                                         help="Where to write the page (default RUN/report.html)."),
    max_examples: int = typer.Option(500, "--max-examples", metavar="N", min=0,
                                     help="Validation rows the saved model is run on (CPU) for the worst "
                                          "predictions; 0 skips them."),
    worst: int = typer.Option(10, "--worst", metavar="N", min=1, help="How many worst predictions to show."),
    json_out: bool = json_flag('Print {"path": the page, "missing": parts left out}.'),
):
    """Write one self-contained HTML page: recipe, environment, curves, metrics, worst predictions."""
    from llmctl.console import note
    from llmctl.core.report import build_report

    report = build_report(run, output, max_examples=max_examples, worst=worst)
    for part in report.missing:
        note(f"left out {part}")
    if json_out:
        from llmctl.console import print_json

        print_json({"path": str(report.path), "missing": list(report.missing)})
        return
    print(report.path)
