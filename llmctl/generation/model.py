"""Which checkpoints generate, and loading them for generation or scoring.

Decoder-only (GPT-2 family) and encoder-decoder (T5 family) models generate; an encoder-only
checkpoint (BERT family) has no language-model head that continues text, so it is refused by
name before its weights load.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmctl.errors import ModelError, UsageError

FAMILIES_HINT = "GPT-2-family (decoder-only) and T5-family (encoder-decoder) checkpoints generate; give one of those."


@dataclass
class Generator:
    model: object
    tokenizer: object
    kind: str  # "causal" | "seq2seq"
    name: str
    precision: str
    device: str
    pad_added: bool  # the tokenizer had no pad token and now pads with eos


def resolve_source(model: str) -> str:
    """A run directory's model/ folder, a saved-model folder, or a hub id (checked fast when offline)."""
    from llmctl.models import check_source
    from llmctl.runs import find_model_dir

    path = find_model_dir(model)
    source = str(path) if path.exists() else model
    check_source(source)
    return source


def load_config(source: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    from llmctl.models import _explain

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _explain(exc, source) from exc


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
    """Fast tokenizer padded on the side generation needs; returns (tokenizer, pad_added)."""
    from transformers import AutoTokenizer

    from llmctl.models import _explain

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _explain(exc, source) from exc
    pad_added = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"Tokenizer of '{source}' has neither a pad nor an eos token, so prompts cannot be batched.")
        # GPT-2 has no pad token; padded positions are masked out, so eos is safe to reuse.
        tokenizer.pad_token = tokenizer.eos_token
        pad_added = True
    # Decoder-only models continue the last position, so padding must go on the left.
    tokenizer.padding_side = "left" if kind == "causal" else "right"
    return tokenizer, pad_added


def resolve_precision(requested: str, device: str, kind: str) -> str:
    """auto: bf16 where the CPU (AVX512-BF16/AMX) or GPU has it; fp16 on older GPUs except T5 (it overflows)."""
    from llmctl.train.precision import resolve_precision as resolve_train_precision

    precision = resolve_train_precision(requested, device)
    if requested == "auto" and precision == "fp16" and kind == "seq2seq":
        return "fp32"
    if precision == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 is not supported on CPU.", "Use bf16 or fp32 (or auto).")
    return precision


def load_generator(model: str, precision: str = "auto", device: str | None = None,
                   trust_remote_code: bool = False) -> Generator:
    """Check the family and load tokenizer + model in eval mode on the device, in the resolved dtype."""
    source = resolve_source(model)
    return load_checked(source, generation_kind(load_config(source, trust_remote_code), source),
                        precision, device, trust_remote_code)


def load_checked(source: str, kind: str, precision: str = "auto", device: str | None = None,
                 trust_remote_code: bool = False, tokenizer=None, pad_added: bool = False) -> Generator:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from llmctl.core.setup import device_type
    from llmctl.models import _explain

    dev = device_type(device)  # an unknown or absent device is a UsageError, before any weights load
    precision = resolve_precision(precision, dev, kind)
    if tokenizer is None:
        tokenizer, pad_added = load_tokenizer(source, kind, trust_remote_code)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    try:
        model = auto.from_pretrained(source, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _explain(exc, source) from exc
    model.to(dev).eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Generator(model, tokenizer, kind, source, precision, dev, pad_added)


def context_limit(config, tokenizer, kind: str) -> int | None:
    """Most tokens the model can attend to: positions for decoder-only models, the tokenizer's
    model_max_length for T5 (relative positions, so the limit is what it was trained on)."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0 and kind == "causal":
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None

