"""`llmctl env`: versions and devices, for bug reports and run records."""

from __future__ import annotations

import typer

from llmctl.cli._app import app


@app.command()
def env(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Print package versions and the devices llmctl would use."""
    import torch

    from llmctl.runs.environment import environment
    from llmctl.models.precision import cpu_supports_bf16, resolve_precision

    info = environment()
    info["devices"] = {
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_supports_bf16(),
        "auto_precision": resolve_precision("auto", "cuda" if torch.cuda.is_available() else "cpu"),
    }
    from llmctl.console import print_result

    print_result(info, json_out, _lines(info))


def _lines(info: dict):
    """`key: value`, a mapping's entries indented under its key."""
    for key, value in info.items():
        if isinstance(value, dict):
            yield f"{key}:"
            yield from (f"  {k}: {v}" for k, v in value.items())
        else:
            yield f"{key}: {value}"
