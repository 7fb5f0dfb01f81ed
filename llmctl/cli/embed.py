"""`llmctl embed MODEL_OR_RUN --input FILE|-`: one sentence vector per input (jsonl, or .npy)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import Device, batch_size_option, json_flag


@app.command()
def embed(
    model: str = typer.Argument(..., metavar="MODEL_OR_RUN",
                                help="An embedding run directory, a sentence-transformers folder, or any "
                                     "encoder / decoder-LM save_pretrained folder."),
    input_: str = typer.Option(..., "--input", "-i", metavar="FILE",
                               help="txt (one text per line), jsonl, csv or tsv file; - reads stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="x.jsonl (one {\"embedding\", \"line\"} per input) or x.npy "
                                              "(one float32 array); default: jsonl on stdout."),
    batch_size: int = batch_size_option(32, "Texts per forward pass (sorted by length)."),
    text_column: str = typer.Option("text", "--text-column", metavar="C",
                                    help="jsonl / csv / tsv: the column holding the text."),
    device: Device = None,
    json_out: bool = json_flag('Print one JSON object {"output", "count", "dimension"} (with --output) '
                               'or {"embeddings": [...]}.'),
):
    """Embed texts: one vector per input, in input order."""
    from llmctl.console import print_json
    from llmctl.core.embed import jsonl_rows, run_embed

    vectors, lines, target = run_embed(model, input_, output=output, batch_size=batch_size,
                                       text_column=text_column, device=device)
    if target is not None:
        print(f"wrote {len(vectors)} vectors of dimension {vectors.shape[1]} to {target}", file=sys.stderr)
        if json_out:
            print_json({"output": str(target), "count": len(vectors), "dimension": int(vectors.shape[1])})
    elif json_out:
        print_json({"embeddings": [[float(x) for x in v] for v in vectors], "lines": lines})
    else:
        sys.stdout.writelines(jsonl_rows(vectors, lines))
