"""`llmctl eval MODEL_OR_RUN_DIR`: metrics table or JSON, and CI gates with --fail-under."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli._app import app, report_errors


@app.command("eval")
@report_errors
def eval_command(
    model: str = typer.Argument(..., metavar="MODEL_OR_RUN_DIR",
                                help="Run directory from `llmctl finetune`, or a saved model folder."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE_OR_HUB_ID",
                                       help="A data file, or a hub dataset id (with --split)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME",
                                        help="Split name for hub data (default: the run's validation)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", metavar="RECIPE",
                                         help="Recipe whose data section describes the data."),
    task: Optional[str] = typer.Option(None, "--task", metavar="TASK",
                                       help="Score a model llmctl did not train with this task and its default data "
                                            "keys (multiple-choice: zero-shot with a decoder LM)."),
    fail_under: list[str] = typer.Option([], "--fail-under", metavar="METRIC=VALUE",
                                         help="Exit 4 when METRIC is below VALUE (repeatable; higher-is-better metrics)."),
    fail_over: list[str] = typer.Option([], "--fail-over", metavar="METRIC=VALUE",
                                        help="Exit 4 when METRIC is above VALUE (repeatable; loss, mse, perplexity)."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Examples per evaluation batch."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", metavar="N",
                                              help="Evaluate only the first N examples."),
    precision: Optional[str] = typer.Option(None, "--precision", metavar="PRECISION",
                                            help="auto, fp32, bf16 or fp16 (default: the precision the model trained in)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE",
                                         help="cpu or cuda (default: cuda when available)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Measure a model on a dataset; optionally fail when a metric is too low (or too high)."""
    from llmctl.cli.checks import at_least_one
    from llmctl.tasks.recipe import load_recipe
    from llmctl.console import Console
    from llmctl.core.evaluation import check_gates, evaluate_model, gate, parse_gates
    from llmctl.models.precision import check_precision
    from llmctl.runs.files import check_run

    # Everything the command line alone can get wrong fails here, before anything loads.
    gates = parse_gates(fail_under, fail_over)
    at_least_one(batch_size=batch_size, max_samples=max_samples)
    check_precision(precision)
    check_run(model)  # a malformed file in the run: exit 2 naming it, before anything loads
    parsed = load_recipe(recipe) if recipe else None
    if task is not None:
        parsed = task_recipe(task, model, parsed)
    result = evaluate_model(model, data=data, split=split, recipe=parsed, batch_size=batch_size,
                            max_samples=max_samples, device=device, precision=precision, gates=gates)
    if gates:
        result["gates"] = gates.as_json(check_gates(result["metrics"], gates))
    kind = "zero-shot " if "zero_shot" in result else ""
    title = f"{kind}{result['data']} ({result['samples']} examples)"
    if json_out:
        Console(json_mode=True).result(result, title)
    else:
        # eval writes nothing, so the summary names the model it measured, not an output_dir.
        Console().result({k: v for k, v in result.items() if k != "output_dir"}, title)
        print(f"model: {result['model']}")
    gate(result, gates)


def task_recipe(task: str, model: str, recipe=None):
    """`--task NAME`: the recipe of that task with its default data keys (or --recipe's, when they agree)."""
    from llmctl.tasks.recipe import validate_recipe
    from llmctl.errors import UsageError

    if recipe is not None:
        if recipe.task != task:
            raise UsageError(f"--task {task} and --recipe {recipe._source} (task {recipe.task}) disagree.",
                             "Drop --task; the recipe names the task.")
        return recipe
    return validate_recipe({"task": task, "model": {"name_or_path": model}, "data": {}}, source="--task")
