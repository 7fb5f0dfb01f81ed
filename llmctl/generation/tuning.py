"""How to decode fastest on this device, measured once and remembered rather than assumed: the
dtype `--precision auto` loads, and the memory layout of the Linear weights.

A decoding step over a few rows is a string of matrix-vector products, bound by how fast the
weights stream from memory and by which kernel the library picks for the shape. On CPUs bf16
halves the bytes but its arithmetic may be slower (faster here, 20% slower per step on another
machine), and an fp32 Linear whose weight lies in memory as [in, out] (column-major [out, in],
the same values) takes a faster matrix-vector path than the [out, in] rows PyTorch keeps (1.15x
per step for GPT-2 and 1.2x for T5 in fp32 where this was written). So, for the model's shapes
(the hidden -> vocabulary head and a hidden -> MLP matrix) and the batch at hand, each candidate
(dtype x layout) is timed on this device, each one's step estimated from its layers, and the
fastest kept. For a decoding batch in fp32 the "numpy" candidate (column-major weights, the
products of a step through numpy's BLAS: generation/blas.py) is timed beside them. The timings
are stored under $LLMCTL_CACHE_DIR/decoding/, one file per device, threads, model shape and batch,
so later runs read them instead of timing again.

Relaying the weights moves no value; a product summed in another order can differ in the last
bit, which flips a greedy choice only on a near-tie (as batching can, README "Generation").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time

_log = logging.getLogger(__name__)

ROUNDS = 5  # each candidate timed this many times, alternating, the fastest kept
MAX_PROBE = 1 << 24  # weight elements timed at most per matrix (a large vocabulary's head is timed in part)
LAYOUTS = ("rows", "columns")


def model_shapes(config) -> dict | None:
    """{hidden, inter, vocab, layers} of the decoder, or None when the config does not say."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    hidden, vocab = getattr(text, "hidden_size", None), getattr(text, "vocab_size", None)
    inter = next((v for v in (getattr(text, k, None) for k in ("intermediate_size", "d_ff", "n_inner", "ffn_dim"))
                  if isinstance(v, int) and v > 0), None)
    layers = next((v for v in (getattr(text, k, None) for k in ("num_decoder_layers", "num_hidden_layers"))
                   if isinstance(v, int) and v > 0), None)
    if not all(isinstance(v, int) and v > 0 for v in (hidden, vocab, layers)):
        return None
    return {"hidden": hidden, "inter": inter or 4 * hidden, "vocab": vocab, "layers": layers}


def plan(requested: str, device: str, kind: str, config, batch: int) -> dict:
    """{"precision", "layout", "chosen_by", "step_ms"?}: the dtype and weight layout to decode with."""
    from llmctl.models.precision import cpu_supports_bf16, generation_precision

    fixed = generation_precision(requested, device, kind)
    shapes = model_shapes(config)
    if device != "cpu" or shapes is None:  # GPUs: the rule in models.precision; layouts are a CPU matter
        return {"precision": fixed, "layout": "rows", "chosen_by": "requested" if requested != "auto" else "device"}
    dtypes = ["fp32", "bf16"] if requested == "auto" and cpu_supports_bf16() else [fixed]
    timings = measured(dtypes, shapes, max(1, batch))
    best = min(timings, key=timings.get)
    precision, layout = best.split("/")
    chosen_by = "measured" if len(dtypes) > 1 else "requested" if requested != "auto" else "device"
    return {"precision": precision, "layout": layout, "chosen_by": chosen_by, "batch": max(1, batch),
            "step_ms": timings}


def measured(dtypes: list[str], shapes: dict, batch: int) -> dict[str, float]:
    """{"fp32/rows": estimated step ms, ...}, from the cache when this device timed it before."""
    import numpy
    import torch

    from llmctl.data.cache import cache_root

    key = {"dtypes": dtypes, "shapes": shapes, "batch": batch, "threads": torch.get_num_threads(),
           "cpu": cpu_name(), "torch": torch.__version__, "numpy": numpy.__version__}
    path = cache_root() / "decoding" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
                                        + ".json")
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["step_ms"]
    except (OSError, ValueError, AttributeError):
        pass
    timings = time_candidates(dtypes, shapes, batch)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"key": key, "step_ms": timings}, indent=1) + "\n")
        temp.replace(path)
    except OSError as exc:  # a read-only cache only costs the timing next time
        _log.debug("could not keep the decoding timings in %s: %s", path, exc)
    return timings


def time_candidates(dtypes: list[str], shapes: dict, batch: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from llmctl.generation.blas import MAX_ROWS

    hidden, inter, vocab, layers = shapes["hidden"], shapes["inter"], shapes["vocab"], shapes["layers"]
    head_rows = min(vocab, max(1, MAX_PROBE // hidden))
    mlp_rows = min(inter, max(1, MAX_PROBE // hidden))
    # A decoder layer holds about 4 h*h attention and 2 h*inter MLP weights (T5's cross-attention, gated MLPs:
    # a little more); the estimate only has to rank the candidates, which all share it.
    per_layer = (4 * hidden * hidden + 2 * hidden * inter) / (hidden * mlp_rows)
    probes = {}
    for name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        x = torch.full((batch, hidden), 0.01, dtype=dtype)
        for layout in LAYOUTS:
            head = torch.full((head_rows, hidden), 0.01, dtype=dtype)
            mlp = torch.full((mlp_rows, hidden), 0.01, dtype=dtype)
            if layout == "columns":
                head, mlp = head.t().contiguous().t(), mlp.t().contiguous().t()
            probes[f"{name}/{layout}"] = (F.linear, x, head, mlp)
        if name == "fp32" and batch <= MAX_ROWS:  # generation/blas.py, timed as it runs
            head, mlp = (torch.full((hidden, rows), 0.01).numpy() for rows in (head_rows, mlp_rows))
            probes["fp32/numpy"] = (_numpy_product, x[0].numpy() if batch == 1 else x.numpy(), head, mlp)
    best = {k: [float("inf"), float("inf")] for k in probes}
    threads = torch.get_num_threads()
    with torch.inference_mode():
        for round_ in range(ROUNDS + 1):  # round 0 warms every kernel up
            order = list(probes) if round_ % 2 == 0 else list(probes)[::-1]  # neither always first
            for k in order:
                product, x, head, mlp = probes[k]
                torch.set_num_threads(1 if product is _numpy_product else threads)
                for slot, weight in enumerate((head, mlp)):
                    start = time.perf_counter()
                    product(x, weight)
                    took = time.perf_counter() - start
                    if round_:
                        best[k][slot] = min(best[k][slot], took)
    torch.set_num_threads(threads)
    return {k: round((h * vocab / head_rows + layers * per_layer * m) * 1000, 3) for k, (h, m) in best.items()}


def _numpy_product(x, weight):
    return x @ weight


def lay_out(model, layout: str) -> str:
    """Store every Linear weight column-major (the same values, [in, out] in memory) for "columns"
    and "numpy"; a weight shared with an embedding (tied heads) is moved once, and still embeds by
    row. "numpy" then routes a decoding step's products through numpy's BLAS (generation/blas.py).
    Returns the layout the model now has: a model class from a checkpoint's own code (trust_remote_code)
    keeps its rows, since such code may view a weight as contiguous."""
    if layout not in ("columns", "numpy") or not type(model).__module__.startswith("transformers."):
        return "rows"
    import torch

    seen = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight is not None and id(weight) not in seen \
                and weight.dim() == 2 and weight.is_floating_point():
            seen.add(id(weight))
            weight.data = weight.data.t().contiguous().t()
    if layout == "numpy":
        from llmctl.generation.blas import install

        return "numpy" if install(model) else "columns"
    return "columns"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(plan_: dict) -> str:
    """A few words for the stats and ready lines: "bf16, measured fastest here, column-major weights"."""
    words = plan_["precision"]
    if plan_.get("chosen_by") == "measured":
        words += ", measured fastest here"
    if plan_.get("layout") in ("columns", "numpy"):
        words += ", column-major weights"
    if plan_.get("layout") == "numpy":
        words += ", decoding products in numpy's BLAS"
    return words
