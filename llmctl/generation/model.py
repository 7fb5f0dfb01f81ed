"""Which checkpoints generate, and loading them for generation or scoring.

Decoder-only LMs (GPT-2, Llama, Qwen2, Mistral, Phi, GPT-NeoX, ...) and encoder-decoder models
(T5 family) generate; an encoder-only checkpoint (BERT family) has no language-model head that
continues text, so it is refused by name before its weights load. A `source` is a saved-model
folder, a hub id or a .gguf file (llmctl/models/gguf.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llmctl.errors import ModelError

FAMILIES_HINT = ("Decoder-only LMs (GPT-2, Llama, Qwen2, Mistral, Phi, ...) and T5-family (encoder-decoder) "
                 "checkpoints generate; give one of those.")


@dataclass
class Generator:
    model: object
    tokenizer: object
    kind: str  # "causal" | "seq2seq"
    name: str
    precision: str
    device: str
    pad_added: bool  # the tokenizer had no pad token and now pads with eos
    plan: dict | None = None  # tuning.plan(): how the dtype and weight layout were chosen (decoding only)


def resolve_source(model: str) -> str:
    """A run directory's model/ folder, a saved-model folder, or a hub id (checked fast when offline)."""
    from llmctl.models.load import check_source
    from llmctl.models.saved import find_model_dir

    path = find_model_dir(model)
    source = str(path) if path.exists() else model
    check_source(source)
    return source


def model_config(source: str, trust_remote_code: bool = False):
    """The recipe's model section for a bare source, so generation loads through llmctl.models.load."""
    from llmctl.config.schema import ModelConfig

    return ModelConfig(name_or_path=source, trust_remote_code=trust_remote_code)


def load_config(source: str, trust_remote_code: bool = False):
    from llmctl.models.load import load_config as load_model_config

    return load_model_config(model_config(source, trust_remote_code))


def generation_kind(config, name: str) -> str:
    """"causal" or "seq2seq"; a ModelError naming the model type for anything else."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    model_type = getattr(config, "model_type", "unknown")
    if getattr(config, "is_encoder_decoder", False) and model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    # BERT is registered as a causal LM too (BertLMHeadModel), but a BERT checkpoint is an
    # encoder: only a config saved with is_decoder=True was trained to continue text.
    encoder_only = model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False)
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not encoder_only:
        return "causal"
    what = "an encoder-only" if encoder_only else "a non-generative"
    raise ModelError(f"Model '{name}' is {what} '{model_type}' checkpoint and cannot generate text.", FAMILIES_HINT)


def load_tokenizer(source: str, kind: str, trust_remote_code: bool = False):
    """The tokenizer padded on the side generation needs; returns (tokenizer, pad_added)."""
    from llmctl.models.load import load_tokenizer as load_model_tokenizer
    from llmctl.models.load import pad_with_eos

    tokenizer = load_model_tokenizer(model_config(source, trust_remote_code), for_generation=True)
    pad_added = pad_with_eos(tokenizer, source, why=", so prompts cannot be batched")
    # Decoder-only models continue the last position, so padding must go on the left.
    tokenizer.padding_side = "left" if kind == "causal" else "right"
    return tokenizer, pad_added


def check_size(source: str, config, kind: str) -> None:
    """Refuse, from the config alone and before the tokenizer loads, a model too big for memory."""
    from llmctl.models.load import check_size as check_model_size

    check_model_size(model_config(source), "AutoModelForCausalLM" if kind == "causal" else "AutoModelForSeq2SeqLM",
                     config=config)


def prepare(model: str) -> tuple[str, object, str, object, bool]:
    """What generating from `model` needs before its weights load: (source, config, kind, tokenizer,
    pad_added), with the model's family and size checked from its config alone."""
    quiet_transformers()
    source = resolve_source(model)
    config = load_config(source)
    kind = generation_kind(config, source)
    check_size(source, config, kind)
    tokenizer, pad_added = load_tokenizer(source, kind)
    return source, config, kind, tokenizer, pad_added


def load_checked(source: str, kind: str, precision: str = "auto", device: str | None = None,
                 trust_remote_code: bool = False, tokenizer=None, pad_added: bool = False,
                 size_checked: bool = False, decode_batch: int | None = None, config=None) -> Generator:
    """`decode_batch`: the rows decoded together; given, the dtype (for auto) and the weights' layout are
    chosen by timing this device for that batch (generation/tuning.py). Scoring leaves it out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from llmctl.models.devices import device_type
    from llmctl.models.gate import load_weights
    from llmctl.models.precision import generation_precision

    dev = device_type(device)  # an unknown or absent device is a UsageError, before any weights load
    plan = None
    if decode_batch is not None:
        from llmctl.generation.tuning import plan as decoding_plan

        plan = decoding_plan(precision, dev, kind, config or load_config(source, trust_remote_code), decode_batch)
        precision = plan["precision"]
    precision = generation_precision(precision, dev, kind)
    if tokenizer is None:
        tokenizer, pad_added = load_tokenizer(source, kind, trust_remote_code)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    from llmctl.models.adapters import load_merged

    from llmctl.models import gguf

    folder, gguf_file = gguf.locate(source)
    # A LoRA run: base + adapter, merged once so generation runs the plain model.
    model = load_merged(auto, source, dtype=dtype) or load_weights(
        auto, folder, gguf_file, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code,
        size_checked=size_checked)
    model.to(dev).eval()
    if plan is not None:
        from llmctl.generation.tuning import lay_out

        plan["layout"] = lay_out(model, plan["layout"])
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Generator(model, tokenizer, kind, source, precision, dev, pad_added, plan)


def context_limit(config, tokenizer, kind: str) -> int | None:
    """Most tokens the model can attend to: positions for decoder-only models, the tokenizer's
    model_max_length for T5 (relative positions, so the limit is what it was trained on)."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0 and kind == "causal":
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def quiet_transformers() -> None:
    """Before loading for generation or scoring: the libraries' own advisories and progress bars would
    interleave with llmctl's output (the streamed text, the rows)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
