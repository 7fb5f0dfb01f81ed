"""`llmctl predict MODEL_OR_RUN_DIR --input FILE|-`: one jsonl row per input."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import Device, SavedModel, TrainedPrecision, batch_size_option, json_flag


@app.command()
def predict(
    model: SavedModel,
    input_: Optional[str] = typer.Option(None, "--input", "-i", metavar="FILE",
                                         help="jsonl, json (a list of objects), csv, tsv or txt file; - reads stdin."),
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
    max_new_tokens: Optional[int] = typer.Option(
        None, "--max-new-tokens", metavar="N",
        help="Generative runs (causal-lm, seq2seq): most tokens to generate per input (default: the recipe's "
             "data.max_new_tokens)."),
    chat: bool = typer.Option(False, "--chat", help="Causal-lm runs: send plain prompts as user turns of the "
                              "run's chat template (automatic for a run trained with data.chat_template)."),
    batch_size: int = batch_size_option(64, "Inputs per batch."),
    precision: TrainedPrecision = None,
    device: Device = None,
    json_out: bool = json_flag('Print one JSON object {"predictions": [...]}.'),
):
    """Run a fine-tuned model over inputs."""
    from llmctl.console import print_json
    from llmctl.core.prediction import run_predict

    predictions, target = run_predict(model, input_=input_, question=question, context=context, fill_mask=fill_mask,
                                      top_k=top_k, output=output, batch_size=batch_size, precision=precision,
                                      device=device, max_new_tokens=max_new_tokens, chat=chat)
    if target is not None:
        print(f"wrote {len(predictions)} predictions to {target}", file=sys.stderr)
        if json_out:
            print_json({"output": str(target), "count": len(predictions)})
    elif json_out:
        print_json({"predictions": predictions})
    else:
        for p in predictions:
            print(json.dumps(p))
