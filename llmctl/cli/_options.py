"""Options several commands declare alike, written once: `device: Device = None`.

Each alias keeps the flag, metavar and help text the commands had; a command whose option means
something else (generate's --precision defaults to auto, its --device knows mps) declares its own.
Defaults stay in the command's signature, where a reader of the command sees them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# The device a saved model runs on (eval, predict, finetune).
Device = Annotated[Optional[str], typer.Option("--device", metavar="DEVICE",
                                               help="cpu or cuda (default: cuda when available).")]
# The model eval and predict run: what finetune saved, or any saved-model folder.
SavedModel = Annotated[str, typer.Argument(metavar="MODEL_OR_RUN_DIR",
                                           help="Run directory from `llmctl finetune`, or a saved model folder.")]
# The recipe finetune and doctor read.
RecipeArgument = Annotated[str, typer.Argument(metavar="RECIPE",
                                               help="Recipe file, or a short name from `llmctl recipes list`.")]
# Inference precision of a trained model (eval, predict): None keeps the one it trained in.
TrainedPrecision = Annotated[Optional[str], typer.Option(
    "--precision", metavar="PRECISION", help="auto, fp32, bf16 or fp16 (default: the precision the model trained in).")]


def json_flag(help: str = "Print one JSON object.") -> typer.models.OptionInfo:
    """`--json`, with the help naming what the command's JSON object holds."""
    return typer.Option(False, "--json", help=help)


def batch_size_option(default: int, help: str) -> typer.models.OptionInfo:
    """`--batch-size N`; the default and what one batch holds differ by command."""
    return typer.Option(default, "--batch-size", metavar="N", help=help)
