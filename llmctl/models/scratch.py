"""A new model from a config (`model.config`), for pre-training from scratch: the config is built and
checked from the recipe alone (model type, keys, positions), and the model through gate.new_model
with the architecture's own initialisation. Everything here runs before a weight is allocated.

    config = build_config(model_cfg)          # a transformers config; RecipeError on a bad one
    config = fit_tokenizer(config, tokenizer) # vocabulary size and special-token ids from the tokenizer
"""

from __future__ import annotations

import difflib
import inspect
import json
from pathlib import Path

from llmctl.errors import RecipeError

# model_type -> the family its tokenizer's special tokens follow (llmctl.models.tokenizer_train).
FAMILIES = {"gpt2": "decoder", "llama": "decoder", "qwen2": "decoder", "mistral": "decoder",
            "bert": "bert", "roberta": "bert", "t5": "t5"}


def raw_config(spec) -> tuple[dict, str]:
    """(the mapping, where it came from): model.config inline, or read from a config.json path."""
    if isinstance(spec, dict):
        return dict(spec), "model.config"
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"model.config: {path} does not exist.", "Give a config.json path or an inline mapping.") from None
    except (OSError, ValueError) as exc:
        raise RecipeError(f"model.config: {path} is not a readable JSON config ({exc}).") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise RecipeError(f"model.config: {path} has no model_type.", "Add \"model_type\": \"gpt2\" (or llama, bert, t5...).")
    return raw, str(path)


def accepted_keys(config_class) -> set[str]:
    """The keys a config class takes: its __init__'s (and the base class's) and its aliases."""
    keys = set()
    for cls in config_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            keys |= {n for n, p in inspect.signature(init).parameters.items()
                     if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return keys | set(getattr(config_class, "attribute_map", {}) or {}) | {"model_type", "transformers_version"}


def build_config(model_cfg):
    """The transformers config model.config describes; an unknown model type or key is a RecipeError."""
    from transformers import CONFIG_MAPPING

    raw, where = raw_config(model_cfg.config)
    kind = raw.pop("model_type")
    if kind not in FAMILIES:
        close = difflib.get_close_matches(kind, list(FAMILIES), n=1)
        raise RecipeError(f"{where}: model_type '{kind}' is not one llmctl builds from scratch; known: "
                          f"{', '.join(FAMILIES)}.", f"Did you mean '{close[0]}'?" if close else "Use one of those.")
    config_class = CONFIG_MAPPING[kind]
    known = accepted_keys(config_class)
    unknown = [k for k in raw if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise RecipeError(f"{where}: '{unknown[0]}' is not a {kind} config key.",
                          f"Did you mean '{close[0]}'?" if close else f"See {config_class.__name__}'s keys.")
    try:
        return config_class(**raw)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"{where}: transformers refuses this {kind} config: {first}") from None


def family(config) -> str:
    return FAMILIES.get(config.model_type, "decoder")


def fit_tokenizer(config, tokenizer) -> tuple[object, str | None]:
    """(config, note): the vocabulary size and special-token ids set from the tokenizer, which decides
    them; the note says so once when the config declared another vocabulary size."""
    note = None
    size = len(tokenizer)
    declared = getattr(config, "vocab_size", None)
    if "vocab_size" in config.to_diff_dict() and declared != size:
        note = f"model.config.vocab_size {declared} set to {size}, the tokenizer's vocabulary (the tokenizer decides)."
    config.vocab_size = size
    for name in ("pad", "eos", "bos"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            setattr(config, f"{name}_token_id", token_id)
    if config.model_type == "t5":
        config.decoder_start_token_id = tokenizer.pad_token_id
    return config, note


def positions(config) -> int | None:
    """Longest input the config's position table covers (None: relative positions, T5)."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and config.model_type == "roberta":
        limit -= 2
    return limit


CHAR_VOCAB = 256  # a char tokenizer's size before it is trained: what --dry-run counts with


def estimated_vocab(model_cfg, config) -> int:
    """The vocabulary the model will have, before the tokenizer is trained (for the size check and the
    dry run): the tokenizer's requested size, a tokenizer directory's, else the config's or a char guess."""
    spec = model_cfg.tokenizer
    if getattr(spec, "vocab_size", None):
        return spec.vocab_size
    if isinstance(spec, str):
        try:
            data = json.loads((Path(spec).expanduser() / "tokenizer.json").read_text(encoding="utf-8"))
            return len(data["model"]["vocab"]) + len(data.get("added_tokens") or [])
        except (OSError, ValueError, KeyError, TypeError):
            return config.vocab_size
    raw, _ = raw_config(model_cfg.config)
    return raw.get("vocab_size") or CHAR_VOCAB
