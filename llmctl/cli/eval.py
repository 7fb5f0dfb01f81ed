"""`llmctl eval MODEL_OR_RUN_DIR`: metrics table or JSON, and CI gates with --fail-under."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli import app, report_errors


@app.command("eval")
@report_errors
def eval_command(
    model: str = typer.Argument(..., help="Run directory from `llmctl finetune`, or a saved model folder."),
    data: Optional[str] = typer.Option(None, "--data", help="A data file, or a hub dataset id (with --split)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split name for hub data (default: the run's validation)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe whose data section describes the data."),
    fail_under: list[str] = typer.Option([], "--fail-under", help="METRIC=VALUE; exit 4 when a metric is below it."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples per evaluation batch."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Evaluate only the first N examples."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Measure a model on a dataset; optionally fail when a metric is too low."""
    from llmctl.config.load import load_recipe
    from llmctl.console import Console
    from llmctl.core.evaluation import evaluate_model, gate, parse_gates

    gates = parse_gates(fail_under)  # bad gate syntax fails before anything loads
    parsed = load_recipe(recipe) if recipe else None
    result = evaluate_model(model, data=data, split=split, recipe=parsed, batch_size=batch_size,
                            max_samples=max_samples, device=device)
    if gates:
        from llmctl.core.evaluation import check_gates

        result["gates"] = {"passed": not check_gates(result["metrics"], gates), "thresholds": gates}
    kind = "zero-shot " if "zero_shot" in result else ""
    Console(json_mode=json_out).result(result, f"{kind}{result['data']} ({result['samples']} examples)")
    gate(result, gates)
