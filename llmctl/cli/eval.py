"""`llmctl eval MODEL_OR_RUN_DIR`: metrics table or JSON, and CI gates with --fail-under."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import Device, SavedModel, TrainedPrecision, batch_size_option, json_flag


@app.command("eval")
def eval_command(
    model: SavedModel,
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE_OR_HUB_ID",
                                       help="A data file, or a hub dataset id (with --split)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME",
                                        help="One of the run's splits (train, validation, test; default validation), "
                                             "or with --data a hub dataset's split."),
    recipe: Optional[str] = typer.Option(None, "--recipe", metavar="RECIPE",
                                         help="Recipe whose data section describes the data."),
    task: Optional[str] = typer.Option(None, "--task", metavar="TASK",
                                       help="Score a model llmctl did not train with this task and its default data "
                                            "keys (multiple-choice: zero-shot with a decoder LM)."),
    fail_under: list[str] = typer.Option([], "--fail-under", metavar="METRIC=VALUE",
                                         help="Exit 4 when METRIC is below VALUE (repeatable; higher-is-better metrics)."),
    fail_over: list[str] = typer.Option([], "--fail-over", metavar="METRIC=VALUE",
                                        help="Exit 4 when METRIC is above VALUE (repeatable; loss, mse, perplexity)."),
    batch_size: int = batch_size_option(64, "Examples per evaluation batch."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", metavar="N",
                                              help="Evaluate only the first N examples (default: all of them)."),
    save_predictions: Optional[str] = typer.Option(
        None, "--save-predictions", metavar="FILE",
        help="Write one jsonl row per evaluated example: the prediction (as `llmctl predict` writes it) and its "
             "\"reference\" (classification, NER, QA and seq2seq runs)."),
    precision: TrainedPrecision = None,
    device: Device = None,
    json_out: bool = json_flag(),
):
    """Measure a model on a dataset; optionally fail when a metric is too low (or too high)."""
    from llmctl.console import Console
    from llmctl.core.evaluation import enforce_gates, run_eval

    result = run_eval(model, data=data, split=split, recipe=recipe, task=task, fail_under=fail_under,
                      fail_over=fail_over, batch_size=batch_size, max_samples=max_samples, precision=precision,
                      device=device, save_predictions=save_predictions)
    kind = "zero-shot " if "zero_shot" in result else ""
    title = f"{kind}{result['data']} ({result['samples']} examples)"
    if json_out:
        Console(json_mode=True).result(result, title)
    else:
        # eval writes nothing, so the summary names the model it measured, not an output_dir.
        Console().result({k: v for k, v in result.items() if k != "output_dir"}, title)
        print(f"model: {result['model']}")
        if "predictions_file" in result:
            print(f"predictions: {result['predictions_file']}")
    enforce_gates(result)
