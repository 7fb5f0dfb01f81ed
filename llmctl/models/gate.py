"""The gate every checkpoint load passes through: `pretrained` for configs and tokenizers,
`load_weights` for models. Custom code never runs unless trusted (transformers would otherwise ask
on stdin), the declared size must fit in memory, missing weights are refused by name, and a
library failure becomes one ModelError that says why. Below load.py and adapters.py, which both
load through here.
"""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import ModelError
from llmctl.models import gguf
from llmctl.models.hub import hub_offline


def is_local(name: str) -> bool:
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~"))


def explain(exc: Exception, name: str) -> BaseException:
    """The one ModelError a failed load becomes. A Ctrl-C that landed inside the library's own
    context managers surfaces as their clean-up error ("pop from empty mode stack"): that is the
    interrupt, and it stays one (exit 130), not a broken model (exit 5)."""
    seen, visited = exc, set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        visited.add(id(seen))
        seen = seen.__context__
    text = str(exc)
    if "trust_remote_code" in text:
        return ModelError(
            f"Model '{name}' needs custom code from its repository, which llmctl does not run by default.",
            "Set model.trust_remote_code: true in the recipe if you trust that code.",
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if hub_offline() and not is_local(name):
        return ModelError(f"Model '{name}' is not in the local cache and HF_HUB_OFFLINE is set: {first}",
                          "Use a local directory, or unset HF_HUB_OFFLINE with network access.")
    return ModelError(f"Cannot load model '{name}': {first}")


def pretrained(loader, name, **kwargs):
    """`loader.from_pretrained(name, **kwargs)` (an Auto class or a model class); a failure becomes
    one ModelError that says why (custom code, offline, or the library's first line).
    trust_remote_code is always passed as a bool: left None, transformers asks on stdin."""
    from llmctl.models.trust import refuse_custom_code

    kwargs["trust_remote_code"] = bool(kwargs.get("trust_remote_code"))
    refuse_custom_code(name, kwargs["trust_remote_code"])
    try:
        return loader.from_pretrained(name, **kwargs)
    except Exception as exc:
        raise explain(exc, str(name)) from exc


def load_weights(auto_class, name_or_path: str, gguf_file: str | None = None, allowed_missing=None,
                 missing_hint: str = "Use a complete checkpoint (every weight its config declares).",
                 size_checked: bool = False, **kwargs):
    """`auto_class.from_pretrained`, or the de-quantized plain model of a GGUF file: the one way
    every command gets a model. Before: no custom code unless trusted, and the size its config
    declares must fit in memory. After: a weight the checkpoint lacks is refused by name, unless
    `allowed_missing(key)` (finetune's new task head). `size_checked`: the caller ran check_fits."""
    from llmctl.models.size import check_fits
    from llmctl.models.trust import missing_weights, refuse_custom_code, refuse_missing

    kwargs["trust_remote_code"] = bool(kwargs.get("trust_remote_code"))
    refuse_custom_code(name_or_path, kwargs["trust_remote_code"])
    where = gguf.path(name_or_path, gguf_file)
    config = kwargs.get("config")
    if config is None:
        from transformers import AutoConfig

        config = kwargs["config"] = pretrained(AutoConfig, name_or_path, trust_remote_code=kwargs["trust_remote_code"],
                                               revision=kwargs.get("revision"), **gguf.load_kwargs(gguf_file))
    if not size_checked:
        check_fits(auto_class, config, where, "int4" if kwargs.get("quantization_config") else kwargs.get("dtype"))
    try:
        if gguf_file:
            kwargs.pop("use_safetensors", None)
            model, info = gguf.load_model(auto_class, name_or_path, gguf_file, **kwargs)
        else:
            mapping = body_key_mapping(auto_class, config)
            if mapping and "key_mapping" not in kwargs:
                kwargs["key_mapping"] = mapping
            model, info = auto_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    except Exception as exc:
        raise explain(exc, str(name_or_path)) from exc
    allowed = allowed_missing(model) if allowed_missing is not None else (lambda key: False)
    refuse_missing(missing_weights(info, allowed), where, missing_hint)
    return model


def new_model(auto_class, config):
    """A model built from `config` with the architecture's own weight initialisation (pre-training from
    scratch: model.config), the other way every command gets a model. Before: the weights, gradients
    and AdamW's two moments must fit in memory (a RecipeError with the figure, exit 2)."""
    from llmctl.errors import RecipeError
    from llmctl.models.size import check_fits

    check_fits(auto_class, config, f"model.config ({config.model_type})", copies=4, error=RecipeError)
    try:
        return auto_class.from_config(config)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"model.config: transformers cannot build this {config.model_type} model: {first}") from exc


def body_key_mapping(auto_class, config) -> dict | None:
    """The checkpoint's body renamed to where the head keeps it, when the two differ. transformers 5's
    Llama and Qwen2 question-answering heads keep the body under `transformer` (for backward
    compatibility) while their family, and so a causal-LM checkpoint, names it `model`: loaded as
    they are, no body weight matches and the body starts at random (the missing-weights check
    refuses that). Only a head whose prefix differs from its family's gets a mapping."""
    mapping = getattr(auto_class, "_model_mapping", None)
    try:
        head = mapping[type(config)] if mapping is not None else auto_class
    except KeyError:
        return None
    family = next((cls for cls in head.__mro__[1:] if cls.__name__.endswith("PreTrainedModel")
                   and cls.__name__ != "PreTrainedModel"), None)
    ours, theirs = getattr(head, "base_model_prefix", ""), getattr(family, "base_model_prefix", "")
    return {rf"^{theirs}\.": f"{ours}."} if ours and theirs and ours != theirs else None
