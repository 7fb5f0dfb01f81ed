"""How big a checkpoint's model is, from its config alone, and whether its weights fit in memory.

A config.json (or GGUF header) declaring 100,000 layers would have from_pretrained allocate
until the machine runs out of memory. We count the parameters of the same model built on the
meta device (no memory) with one and two of each repeated layer, extrapolate to the declared
count, and refuse (exit 5) what cannot fit in the memory available now.
"""

from __future__ import annotations

import copy
import os

from llmctl.errors import ModelError

# Config keys that repeat a block; every other size (width, vocabulary) is built as declared.
LAYER_KEYS = ("num_hidden_layers", "num_decoder_layers", "encoder_layers", "decoder_layers")
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int4": 0.5}  # int4: QLoRA's base


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, capped by a cgroup (container) limit."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="ascii").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current", encoding="ascii").read())
        if limit != "max":
            found = min(found, int(limit) - used) if found is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return found


def _count(auto_class, config, layers: dict) -> int:
    import torch

    config = copy.deepcopy(config)
    for key, value in layers.items():
        setattr(config, key, value)
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[:value]  # per-layer lists follow the layer count
    with torch.device("meta"):  # every tensor a shape only: nothing allocated, nothing initialised
        model = auto_class.from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory_needed(auto_class, config, copies: int = 4) -> dict | None:
    """{parameters, layers, bytes, available_bytes} for the dry run and the doctor (None: not countable)."""
    counted = parameter_count(auto_class, config)
    if counted is None:
        return None
    return {"parameters": counted[0], "layers": counted[1], "bytes": 4 * counted[0] * copies,
            "available_bytes": available_bytes()}


def parameter_count(auto_class, config) -> tuple[int, int] | None:
    """(parameters, repeated layers) the config declares, or None when it cannot be built here."""
    layers = {k: getattr(config, k) for k in LAYER_KEYS
              if isinstance(getattr(config, k, None), int) and getattr(config, k) > 0}
    try:
        one = {k: 1 for k in layers}
        base = _count(auto_class, config, one)
        total = base + sum((n - 1) * (_count(auto_class, config, one | {k: 2}) - base) for k, n in layers.items())
    except Exception:
        return None  # an unusual config: from_pretrained reports what it cannot build
    return total, max(layers.values(), default=0)


def check_fits(auto_class, config, where: str, dtype=None, copies: int = 1, error=ModelError) -> None:
    """Refuse, before any allocation, weights larger than the memory available. `copies`: 4 for
    full fine-tuning (weights, gradients and Adam's two moments, all fp32). `error`: what to raise
    (a RecipeError for a model the recipe's own config describes)."""
    counted = parameter_count(auto_class, config)
    free = available_bytes()
    if counted is None or free is None:
        return
    params, layers = counted
    size = int(BYTES.get(str(dtype).replace("torch.", ""), 4) * params) * copies
    if size > free:
        what = "weights" if copies == 1 else "weights, gradients and optimizer state"
        raise error(
            f"{where} declares about {params:,} parameters ({layers:,} layers), {size / 2**30:,.1f} GiB of {what}, "
            f"more than the {free / 2**30:,.1f} GiB of memory available.",
            "Check the config (num_hidden_layers, hidden_size, vocab_size), or use a machine with more memory.")
