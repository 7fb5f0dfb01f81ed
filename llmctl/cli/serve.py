"""`llmctl serve MODEL`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) over a text model,
or /v1/predict over a task model. Prints one line when it listens, one per request after that."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import json_flag


@app.command()
def serve(
    model: str = typer.Argument(..., metavar="MODEL_OR_RUN",
                                help="What `llmctl generate` takes (hub id, folder, run directory, .gguf file, LoRA "
                                "run), or a classification / NER / QA / multiple-choice / masked-LM run for /v1/predict."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST",
                             help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", metavar="PORT", help="Port to listen on (0: any free one)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", metavar="KEY", envvar="LLMCTL_API_KEY",
                                          show_envvar=True, help="Require 'Authorization: Bearer KEY' on every "
                                          "route but /health (default: $LLMCTL_API_KEY; unset: no key)."),
    max_batch: int = typer.Option(16, "--max-batch", metavar="N", help="Most sequences decoded together."),
    max_queue: int = typer.Option(64, "--max-queue", metavar="N",
                                  help="Most sequences waiting for a batch slot; beyond that: 429 with Retry-After."),
    max_tokens: int = typer.Option(512, "--max-tokens", metavar="N",
                                   help="Largest max_tokens a request may ask for (and the default)."),
    max_body: int = typer.Option(1 << 20, "--max-body", metavar="BYTES", help="Largest request body (413 above)."),
    precision: str = typer.Option("auto", "--precision", metavar="PRECISION",
                                  help="auto (bf16 where supported), fp32, bf16 or fp16; fp32 for answers equal "
                                  "to `llmctl generate --precision fp32` under any load."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE",
                                         help="cpu, cuda or mps (default: cuda when available)."),
    json_out: bool = json_flag("Print the ready line and one access-log line per request as JSON objects."),
):
    """Serve a model over HTTP: OpenAI's /v1/chat/completions, /v1/completions and /v1/models,
    /v1/predict for task models, /health and /metrics. SIGINT / SIGTERM finish the requests in flight, then exit 0."""
    from llmctl.core.serve import serve as run_server

    def line(data: dict, text: str) -> None:
        print(json.dumps(data) if json_out else text, flush=True)

    def ready(url: str, service) -> None:
        what = "text generation" if service.engine is not None else "predictions"
        line({"event": "ready", "url": url, "model": service.name, "kind": service.kind, "pid": os.getpid()},
             f"llmctl serve: {service.name} ({what}) ready on {url} (pid {os.getpid()}; Ctrl-C stops)")

    def access(record: dict) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line({"event": "request", "time": stamp} | record,
             f"{stamp} {record['client']} {record['method']} {record['path']} {record['status']} "
             f"{record['duration_ms']}ms")

    def drain(signal_name: str) -> None:
        print(f"llmctl serve: {signal_name}: finishing the requests in flight, refusing new ones (503)",
              file=sys.stderr, flush=True)

    run_server(model, host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
               max_tokens=max_tokens, max_body=max_body, precision=precision, device=device, on_ready=ready,
               on_access=access, on_drain=drain)
    print("llmctl serve: stopped", file=sys.stderr, flush=True)
