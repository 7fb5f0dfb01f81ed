"""Load a tokenizer, config and model by hub id, local directory or GGUF file through the Auto
classes, for every command: finetune, eval, predict and the doctor call these directly; generate,
zero-shot and serving through llmctl/generation/model.py, which adds what generation needs on top
(the model family, padding side, precision, adapters merged) and loads through the same functions.

Handled here, once: the "cannot load" explanation (`pretrained`); decoder LMs without a pad
token (GPT-2, Llama / SmolLM2, Mistral, ...) pad with eos, recorded in the saved config so a
sequence classifier can find each row's last token; a task head transformers lacks for a model
type is named before training; weights load from safetensors (or GGUF, llmctl/models/gguf.py) only
unless the recipe opts into pickle weights; custom code runs only with trust_remote_code.
"""

from __future__ import annotations

from pathlib import Path

from llmctl.models import gguf
from llmctl.errors import ModelError
from llmctl.models.gate import is_local, load_weights, pretrained
from llmctl.models.hub import ensure_hub_reachable


def check_source(name_or_path: str, allow_pickle: bool = False, gguf_file: str | None = None) -> None:
    """Fail early, before anything heavy loads, when the model cannot be found."""
    folder, gguf_file = gguf.locate(name_or_path, gguf_file)
    if gguf_file:
        gguf.check(folder, gguf_file, local=is_local(folder))
        if not is_local(folder):
            ensure_hub_reachable(f"model '{folder}'", "a local .gguf file")
        return
    path = Path(name_or_path).expanduser()
    if is_local(name_or_path):
        if not path.is_dir():
            raise ModelError(f"Model directory {path} does not exist.", "Give a directory made by save_pretrained or a hub id.")
        if not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            if ggufs:
                raise ModelError(f"{path} holds {', '.join(ggufs)} but no config.json: a GGUF model is named by its file.",
                                 f"Pass the file itself, e.g. {path / ggufs[0]}.")
            raise ModelError(f"{path} has no config.json, so it is not a saved model.", "Point at the folder save_pretrained wrote.")
        has_safe = any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json"))
        has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth"))
        if not has_safe and has_pickle and not allow_pickle:
            raise ModelError(
                f"{path} has only pickle weights (.bin), which can run arbitrary code when loaded.",
                "Convert them to safetensors, or set model.allow_pickle_weights: true if you trust the file.",
            )
        return
    if "/" in name_or_path.strip("/") and name_or_path.count("/") > 1:
        raise ModelError(f"Model '{name_or_path}' is neither a local directory nor a hub id (owner/name).")
    ensure_hub_reachable(f"model '{name_or_path}'", "a local model directory (a save_pretrained folder or a run directory)")


def check_model_source(model_cfg) -> None:
    """check_source for a pretrained model; for a new one (model.config), its config and a tokenizer
    directory, before anything heavy loads."""
    if not model_cfg.scratch:
        check_source(model_cfg.name_or_path, model_cfg.allow_pickle_weights, model_cfg.gguf_file)
        return
    from llmctl.models.scratch import build_config

    build_config(model_cfg)
    if isinstance(model_cfg.tokenizer, str):
        path = Path(model_cfg.tokenizer).expanduser()
        if not (path / "tokenizer.json").is_file():
            raise ModelError(f"model.tokenizer: {path} holds no tokenizer.json.",
                             "Give a folder save_pretrained wrote (a run's model/), or {train: char|bpe|unigram|wordpiece}.")


def pad_with_eos(tokenizer, name: str, why: str = "") -> bool:
    """Many decoder LMs (GPT-2, Llama / SmolLM2, Mistral) have no pad token. Padding positions
    are masked out, so eos is safe to reuse. True when the pad token was added."""
    if tokenizer.pad_token is not None:
        return False
    if tokenizer.eos_token is None:
        raise ModelError(f"Tokenizer of '{name}' has neither a pad nor an eos token{why}.")
    tokenizer.pad_token = tokenizer.eos_token
    return True


def source(model_cfg) -> tuple[str, dict]:
    """(what from_pretrained is given, the keyword arguments every from_pretrained of it needs)."""
    folder, gguf_file = gguf.locate(model_cfg.name_or_path, model_cfg.gguf_file)
    return folder, {"trust_remote_code": model_cfg.trust_remote_code, "revision": model_cfg.revision,
                    **gguf.load_kwargs(gguf_file)}


def load_config(model_cfg, **overrides):
    from transformers import AutoConfig

    if model_cfg.scratch:
        from llmctl.models.scratch import build_config, estimated_vocab

        config = build_config(model_cfg)
        config.vocab_size = estimated_vocab(model_cfg, config)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config
    name, common = source(model_cfg)
    return pretrained(AutoConfig, name, **common, **overrides)


def load_tokenizer(model_cfg, add_prefix_space: bool | None = None, for_generation: bool = False,
                   chat_template: str | None = None):
    """The one tokenizer loader. Training and scoring need a fast tokenizer (offsets) that pads;
    generation (`for_generation`) takes any tokenizer and decides about padding itself, since it
    must say when it pads with eos. `chat_template` (data.chat_template's text) replaces its chat
    template, and save_pretrained keeps it with the trained model."""
    from transformers import AutoTokenizer

    if model_cfg.scratch:  # a tokenizer directory (a trained one: llmctl.data.tokenizer_cache)
        name, kwargs = str(Path(str(model_cfg.tokenizer)).expanduser()), {}
    else:
        name, kwargs = source(model_cfg)
    if add_prefix_space is not None:
        kwargs["add_prefix_space"] = add_prefix_space
    tokenizer = pretrained(AutoTokenizer, name, **kwargs)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if for_generation:
        return tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"Model '{model_cfg.label}' has no fast tokenizer (tokenizer.json), which llmctl needs for offsets.")
    pad_with_eos(tokenizer, model_cfg.label)
    return tokenizer


def load_trained(auto_class, model_dir: Path, trust_remote_code: bool = False):
    """A fine-tuned model for eval / predict (safetensors only). Refused when a weight is missing
    from the checkpoint: transformers would start it at random (typically the task head of a
    plain pretrained encoder) and every score would be noise with exit 0. A LoRA run (adapter_config.json)
    loads its base model, then the adapter."""
    from llmctl.models.adapters import is_adapter_dir, load_adapter_model

    if is_adapter_dir(model_dir):
        return load_adapter_model(auto_class, model_dir)
    hint = (f"Fine-tune it first (`llmctl finetune RECIPE --model {model_dir}`), then eval the run directory; "
            "to score a generative model without training, use `llmctl eval MODEL --recipe` with a zero_shot section.")
    return load_weights(auto_class, str(model_dir), use_safetensors=True, trust_remote_code=trust_remote_code,
                        missing_hint=hint)


def model_max_positions(model_cfg) -> int | None:
    """Longest input the checkpoint's position table covers (None: relative positions, e.g. T5).
    Read from config.json alone, so data.max_length is checked before any weight loads."""
    config = load_config(model_cfg)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and config.model_type in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= 2  # their position ids start after the padding index
    return limit


def head_name(auto_class_name: str) -> str:
    """AutoModelForQuestionAnswering -> "question-answering"."""
    import re

    words = re.findall(r"[A-Z][a-z]+|[A-Z]+(?![a-z])", auto_class_name.replace("AutoModelFor", ""))
    return "-".join(w if w.isupper() else w.lower() for w in words)


def check_head(auto_class_name: str, model_cfg, config=None) -> None:
    """Refuse, from config.json alone, a model type for which transformers has no such head
    (Phi has no question-answering head, CodeGen no classification heads)."""
    import transformers

    config = config if config is not None else load_config(model_cfg)
    auto_class = getattr(transformers, auto_class_name)
    if type(config) in auto_class._model_mapping or auto_class_name in (getattr(config, "auto_map", None) or {}):
        return
    model_type = getattr(config, "model_type", "unknown")
    raise ModelError(
        f"Model '{model_cfg.label}' is a '{model_type}' checkpoint, and transformers has no "
        f"{head_name(auto_class_name)} head for '{model_type}' ({auto_class_name} cannot load it).",
        "Choose a checkpoint whose model type has that head (Llama, Qwen2, Mistral, GPT-2, BERT and T5 "
        "families have them all), or a task this model supports.",
    )


def load_model(auto_class, model_cfg, tokenizer, quantization_config=None, **config_overrides):
    """`auto_class.from_pretrained` with our safety defaults; pad id written into the config.
    `quantization_config`: 4-bit base weights for QLoRA (llmctl.models.adapters)."""
    from llmctl.models.trust import new_head_only

    config = load_config(model_cfg, **config_overrides)
    if model_cfg.scratch:
        from llmctl.models.gate import new_model
        from llmctl.models.scratch import fit_tokenizer

        config, _ = fit_tokenizer(config, tokenizer)
        check_head(auto_class.__name__, model_cfg, config)
        return new_model(auto_class, config)
    # Decoder classifiers score each row at its last non-pad token, found through this id.
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    check_head(auto_class.__name__, model_cfg, config)
    folder, gguf_file = gguf.locate(model_cfg.name_or_path, model_cfg.gguf_file)
    return load_weights(auto_class, folder, gguf_file, config=config, allowed_missing=new_head_only,
                        use_safetensors=None if model_cfg.allow_pickle_weights else True,
                        trust_remote_code=model_cfg.trust_remote_code, revision=model_cfg.revision,
                        **({"quantization_config": quantization_config} if quantization_config is not None else {}))


def check_size(model_cfg, auto_class_name: str, full_finetune: bool = False, config=None) -> None:
    """Refuse, from the config (or GGUF header) alone, a model whose weights (and, for a full
    fine-tune, gradients and optimizer state) cannot fit in this machine's memory."""
    import transformers

    from llmctl.models.size import check_fits

    config = config if config is not None else load_config(model_cfg)
    if model_cfg.scratch:
        from llmctl.errors import RecipeError

        check_fits(getattr(transformers, auto_class_name), config, f"model.config ({config.model_type})", copies=4,
                   error=RecipeError)
        return
    check_fits(getattr(transformers, auto_class_name), config, gguf.path(model_cfg.name_or_path, model_cfg.gguf_file),
               copies=4 if full_finetune else 1)


def check_head_size(recipe, task) -> None:
    """A checkpoint that already has this task's head (a fine-tuned classifier) with another number of
    labels: transformers refuses to load a head of another size, which finetune would meet only
    after the run started."""
    from llmctl.errors import ModelError

    names = getattr(task.labels, "names", ())
    if not names or getattr(task.labels, "regression", False) or recipe.model.scratch:
        return
    config = load_config(recipe.model)
    suffix = task.auto_model.replace("AutoModel", "")
    if any(a.endswith(suffix) for a in (config.architectures or [])) and config.num_labels != len(names):
        raise ModelError(
            f"Model {recipe.model.name_or_path} already has a {config.num_labels}-label head "
            f"({', '.join(map(str, config.id2label.values()))}); the data has {len(names)} labels "
            f"({', '.join(names[:10])}), and transformers refuses to load a head of another size.",
            "Start from the checkpoint's base model, or give data the labels the head was trained on.",
        )


def auto_class(name: str):
    import transformers

    return getattr(transformers, name)
