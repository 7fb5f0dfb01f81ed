"""`llmctl predict MODEL_OR_RUN_DIR --input FILE|-`: one jsonl row per input."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from llmctl.cli._app import app, report_errors


@app.command()
@report_errors
def predict(
    model: str = typer.Argument(..., metavar="MODEL_OR_RUN_DIR",
                                help="Run directory from `llmctl finetune`, or a saved model folder."),
    input_: Optional[str] = typer.Option(None, "--input", "-i", metavar="FILE",
                                         help="jsonl, csv, tsv or txt file; - reads stdin."),
    question: Optional[str] = typer.Option(None, "--question", metavar="TEXT",
                                           help="Question answering: one question (with --context)."),
    context: Optional[str] = typer.Option(None, "--context", metavar="TEXT",
                                          help="Question answering: the passage to answer from."),
    fill_mask: Optional[list[str]] = typer.Option(
        None, "--fill-mask", metavar="TEXT",
        help="A text with [MASK] (or the tokenizer's own mask token) for a model with a "
             "masked-LM head to fill; repeat for several."),
    top_k: Optional[int] = typer.Option(
        None, "--top-k", metavar="K",
        help="Fill-mask: candidates per mask (default 5); with --input, fills its rows with any "
             "masked-LM checkpoint (a masked-lm run fills them without it)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Write jsonl here instead of stdout."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Inputs per batch."),
    precision: Optional[str] = typer.Option(None, "--precision", metavar="PRECISION",
                                            help="auto, fp32, bf16 or fp16 (default: the precision the model trained in)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE",
                                         help="cpu or cuda (default: cuda when available)."),
    json_out: bool = typer.Option(False, "--json", help='Print one JSON object {"predictions": [...]}.'),
):
    """Run a fine-tuned model over inputs."""
    from pathlib import Path

    from llmctl.cli.checks import at_least_one, writable_file
    from llmctl.console import print_json
    from llmctl.core.prediction import flag_inputs, predict as run_predict, read_inputs
    from llmctl.models.precision import check_precision
    from llmctl.runs.files import check_run
    from llmctl.errors import UsageError

    if input_ is not None and (question is not None or context is not None):
        raise UsageError("--input and --question/--context are alternatives.", "Pass one of them.")
    if fill_mask and (input_ is not None or question is not None or context is not None):
        raise UsageError("--fill-mask gives the texts itself.", "Drop --input / --question / --context, or --fill-mask.")
    if input_ is None and question is None and context is None and not fill_mask:
        raise UsageError("Nothing to predict.", "Pass --input FILE|- (or --question and --context for a QA model, "
                                                "--fill-mask TEXT for a masked-LM model).")
    at_least_one(batch_size=batch_size, top_k=top_k)
    check_precision(precision)
    check_run(model)  # a malformed file in the run: exit 2 naming it, before anything loads
    if output:
        writable_file(output, "--output")
    if fill_mask:
        rows, where, lines = [{"text": t} for t in fill_mask], "--fill-mask", [None] * len(fill_mask)
    else:
        rows, where, lines = read_inputs(input_) if input_ is not None else flag_inputs(question, context)
    options = dict(batch_size=batch_size, device=device, precision=precision, lines=lines)
    if fill_mask or top_k is not None:
        from llmctl.core.fill_mask import fill_mask as run_fill_mask

        predictions = run_fill_mask(model, rows, where, top_k=top_k or 5, **options)
    else:
        predictions = run_predict(model, rows, where, **options)
    if output:
        from llmctl.files import write_text_atomic

        target = Path(output).expanduser()  # as writable_file checked it: a quoted ~ is the home folder too
        write_text_atomic(target, "".join(json.dumps(p) + "\n" for p in predictions), "the predictions")
        print(f"wrote {len(predictions)} predictions to {target}", file=sys.stderr)
        if json_out:
            print_json({"output": str(target), "count": len(predictions)})
    elif json_out:
        print_json({"predictions": predictions})
    else:
        for p in predictions:
            print(json.dumps(p))
