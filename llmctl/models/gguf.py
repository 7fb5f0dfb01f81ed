"""GGUF checkpoints (llama.cpp's single-file format), read through transformers' GGUF support.

A GGUF model is named either by `model.gguf_file: NAME.gguf` next to `model.name_or_path`
(the folder or hub repo holding it) or by a `name_or_path` ending in `.gguf`. Weights are
de-quantized when they load, so training and saving see an ordinary model: transformers marks
a GGUF-loaded model "quantized with gguf" and refuses to save it, so `plain_model` rebuilds it
without that mark and every run saves plain safetensors.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from llmctl.errors import ModelError

INSTALL_HINT = "Run `pip install gguf` (or `pip install 'llmctl[gguf]'`)."


def locate(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(folder or hub repo, GGUF file name in it, or None for an ordinary checkpoint)."""
    if gguf_file:
        return name_or_path, gguf_file
    if name_or_path.lower().endswith(".gguf"):
        path = Path(name_or_path).expanduser()
        return str(path.parent), path.name
    return name_or_path, None


def path(name_or_path: str, gguf_file: str | None) -> str:
    """One string for a checkpoint: the .gguf file's path when there is one (`locate` reads it back)."""
    return str(Path(name_or_path) / gguf_file) if gguf_file else name_or_path


def load_kwargs(gguf_file: str | None) -> dict:
    """What every `from_pretrained` (config, tokenizer, model) needs to read the file."""
    return {"gguf_file": gguf_file} if gguf_file else {}


def supported_architectures() -> set[str]:
    """llama.cpp architecture names the installed transformers can turn into a model."""
    from transformers.integrations.gguf import GGUF_CONFIG_ARCHS
    from transformers.integrations.gguf.gguf_conversion_mapping import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # the legacy table also holds the "general" and "tokenizer" metadata sections
    return (set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS) | set(GGUF_CONFIG_ARCHS)) - {"general", "tokenizer"}


def check(folder: str, gguf_file: str, local: bool = True) -> None:
    """Before anything heavy: the gguf package is there, the file exists (when `local`, not a
    hub repo) and transformers can read its architecture."""
    try:
        import gguf  # noqa: F401  transformers' reader for most architectures
    except ImportError as exc:
        raise ModelError(f"Reading the GGUF checkpoint {gguf_file} needs the gguf package, which is not installed.",
                         INSTALL_HINT) from exc
    if not local:
        return  # a hub repo: from_pretrained fetches the file (or says it is offline)
    path = Path(folder).expanduser() / gguf_file
    if Path(folder).expanduser().is_file():
        raise ModelError(f"model.name_or_path {folder} is a file; with model.gguf_file set it must be the folder "
                         "holding the .gguf file.", "Set name_or_path to that folder, or drop gguf_file.")
    if not path.is_file():
        raise ModelError(f"GGUF file {path} does not exist.", "Check model.name_or_path (and model.gguf_file).")
    architecture = architecture_of(path)
    known = supported_architectures()
    if architecture not in known:
        raise ModelError(
            f"{path}: GGUF architecture '{architecture}' cannot be read by transformers; it reads "
            f"{', '.join(sorted(known))}.",
            "Use the checkpoint's safetensors release, or a GGUF file of one of those architectures.",
        )


def architecture_of(path: Path) -> str:
    from transformers.integrations.gguf import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
    except Exception as exc:
        raise ModelError(f"{path} is not a readable GGUF file: {exc}") from exc
    return str(metadata.get("general.architecture", "unknown"))


def load_model(auto_class, folder: str, gguf_file: str, **kwargs):
    """(`auto_class.from_pretrained` on the GGUF file, de-quantized, as a plain model; transformers'
    loading info, whose missing_keys name what the file lacks)."""
    from transformers import GgufConfig

    # dequantize=True: without it transformers may keep some layers in packed GGUF blocks,
    # which cannot be trained or saved.
    with _quiet_dequantize():
        model, info = auto_class.from_pretrained(folder, gguf_file=gguf_file, output_loading_info=True,
                                                 quantization_config=GgufConfig(gguf_file=gguf_file, dequantize=True),
                                                 **kwargs)
    return plain_model(model), info


@contextmanager
def _quiet_dequantize():
    """transformers' de-quantize loop draws its own tqdm bar, out of reach of its progress-bar
    switch. Off everywhere: once quiet_libraries has turned the libraries' bars off, that bar draws
    nothing on a terminal but its closing newline, which was a blank line before the text
    `generate` streams (and noise in logs and --json runs)."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as legacy

    original = legacy.tqdm
    legacy.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        legacy.tqdm = original


def plain_model(model):
    """The same weights in a model built from its config without the GGUF quantization mark,
    so save_pretrained writes ordinary safetensors."""
    import copy

    from transformers.initialization import no_init_weights

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with no_init_weights():  # every weight is overwritten next; random init of a 7B model takes minutes
        plain = type(model)(config).to(model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain.train(model.training)
