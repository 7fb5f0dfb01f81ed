"""`llmctl serve` as a function: check the options, bind the port, load the model the way
`generate` (text models) or `predict` (task models) does, and answer HTTP until a signal."""

from __future__ import annotations

import logging

from llmctl.errors import UsageError

_log = logging.getLogger(__name__)

PREDICT_TASKS = {"classification", "ner", "qa", "multiple-choice", "masked-lm"}
API_KEY_ENV = "LLMCTL_API_KEY"


def check_options(port: int, max_batch: int, max_queue: int, max_tokens: int, max_body: int, precision: str,
                  device: str | None) -> str:
    from llmctl.models.devices import device_type
    from llmctl.models.precision import PRECISIONS

    problems = []
    if not 0 <= port <= 65535:
        problems.append("--port must be between 0 (any free port) and 65535")
    if max_batch < 1:
        problems.append("--max-batch must be at least 1")
    if max_queue < 0:
        problems.append("--max-queue must be 0 or more")
    if max_tokens < 1:
        problems.append("--max-tokens must be at least 1")
    if max_body < 1024:
        problems.append("--max-body must be at least 1024 bytes")
    if precision not in PRECISIONS:
        problems.append(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if problems:
        raise UsageError("; ".join(problems) + ".")
    return device_type(device)


def task_of(model: str) -> str | None:
    """The task a run (or saved folder) was trained for, when it is one /v1/predict or /v1/embeddings
    answers: "embedding" too for a sentence-transformers folder (its modules.json) that no run wrote."""
    from llmctl.models.saved import TASK_FILE, find_model_dir
    from llmctl.runs.files import read_json

    folder = find_model_dir(model)
    saved = read_json(folder / TASK_FILE, root=folder) if (folder / TASK_FILE).is_file() else None
    task = (saved or {}).get("task")
    if task is None and (folder / "modules.json").is_file():
        return "embedding"
    return task if task in PREDICT_TASKS or task == "embedding" else None


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, max_batch: int = 16,
          max_queue: int = 64, max_tokens: int = 512, max_body: int = 1 << 20, precision: str = "auto",
          device: str | None = None, on_ready=None, on_access=None, on_drain=None, warn=_log.warning) -> dict:
    """Blocks until SIGINT / SIGTERM has drained the requests in flight; returns a summary.
    `on_ready(url, service)` once the server listens, `on_access(record)` once per request."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"llmctl serve needs {' and '.join(missing)}, which are not installed.",
                         "pip install 'llmctl[serve]'")
    from llmctl.serve.app import build_app
    from llmctl.serve.service import Service
    from llmctl.serve.engine import Engine
    from llmctl.serve.server import bind, run

    device = check_options(port, max_batch, max_queue, max_tokens, max_body, precision, device)
    if api_key is not None and not api_key.strip():
        raise UsageError(f"--api-key (or {API_KEY_ENV}) is empty.", "Give a key, or unset it to serve without one.")
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.",
                         "Pick another --port (0 takes any free one) or stop what holds it.") from None
    try:
        task = task_of(model)
        kind = "embedding" if task == "embedding" else "predict" if task else ""
        service = Service(name=model, kind=kind, api_key=api_key, max_tokens=max_tokens,
                          max_body=max_body, on_access=on_access)
        if task == "embedding":
            from llmctl.core.embed import embedder
            from llmctl.serve.predict import BatchedPredictor

            embed = embedder(model, device=device)

            def embed_rows(rows, where):
                vectors, tokens = embed([row["text"] for row in rows])
                return [{"embedding": v, "tokens": n} for v, n in zip(vectors, tokens)]

            service.embedder = BatchedPredictor(embed_rows)
        elif task:
            from llmctl.core.prediction import Predictor
            from llmctl.serve.predict import BatchedPredictor

            predictor = Predictor(model, device=device, precision=None if precision == "auto" else precision)
            service.predictor = BatchedPredictor(predictor)
        else:
            gen = load_generator(model, precision, device, warn)
            service.kind, service.gen = gen.kind, gen
            service.context = context_of(gen)
            service.engine = Engine(gen, max_batch=max_batch, max_queue=max_queue, metrics=service.metrics).start()
            service.metrics.gauges = {
                "llmctl_queue_length": ("Sequences waiting to join the batch.", lambda: service.engine.queued),
                "llmctl_running_sequences": ("Sequences in the running batch.", lambda: service.engine.running),
                "llmctl_batched_forward": ("1: each decoding step is one forward pass over the whole batch; 0: each "
                                           "sequence runs its own (chunked-attention and linear-attention caches).",
                                           lambda: int(service.engine.shared_forward))}
        app = build_app(service)
        run(app, sock, service, lambda url: on_ready(url, service) if on_ready else None, on_drain)
    finally:
        sock.close()
    if service.engine is not None:
        service.engine.close()
    for worker in (service.predictor, service.embedder):
        if worker is not None:
            worker.close()
    return {"model": model, "kind": service.kind}


def load_generator(model: str, precision: str, device: str, warn):
    """The model and tokenizer, loaded and checked as `llmctl generate` loads them."""
    from llmctl.generation.decoding import describe_dropped, token_ids_only
    from llmctl.generation.model import load_checked, prepare

    source, config, kind, tokenizer, pad_added = prepare(model)
    # Timed for one client: the latency a lone request sees (the batch grows only under load). With
    # numpy's BLAS chosen, steps of more rows than it takes (generation/blas.py) keep PyTorch's kernels.
    gen = load_checked(source, kind, precision, device, tokenizer=tokenizer, pad_added=pad_added, size_checked=True,
                       decode_batch=1, config=config)
    gen.config = config
    dropped = token_ids_only(gen.model)
    if dropped:
        warn(describe_dropped(dropped).replace("llmctl generate", "llmctl serve").replace(
            "pass e.g. --sample / --temperature / --top-k / --top-p", "send temperature / top_p in the request"))
    return gen


def context_of(gen) -> int | None:
    from llmctl.generation.model import context_limit

    return context_limit(gen.config, gen.tokenizer, gen.kind)
