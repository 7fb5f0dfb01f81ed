"""What the two text-generating tasks (seq2seq, causal-lm) share: reading text columns,
refusing a checkpoint of the wrong architecture, and generation (their exact token-level loss
is llmctl.metrics.loss, shared with the other tasks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from llmctl.data.sources import row_location
from llmctl.errors import DataError, RecipeError
from llmctl.tasks.base import Task


def text_column(ds, column: str, key: str, where: str, header: bool, allow_empty: bool = False,
                words: list[str] | None = None) -> list[str]:
    """The values of one text column as strings; a missing column or an empty cell is a DataError.
    `words` turns integer ids into words (classification as label words)."""
    from llmctl.tasks.classification_data import missing_column

    columns = list(ds.column_names)
    if column not in columns:
        raise missing_column(key, column, where, columns)
    out = []
    for i, value in enumerate(ds[column]):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = ""
        if words and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(words):
                raise DataError(f"{row_location(where, i, header)}: column '{column}' holds id {value}, outside the "
                                f"{len(words)} label words ({', '.join(words)}).", "Fix the row or data.label_words.")
            value = words[value]
        value = str(value)
        if not allow_empty and not value.strip():
            raise DataError(f"{row_location(where, i, header)}: column '{column}' is empty.",
                            "Fill in or remove that row.")
        out.append(value)
    return out


def limit_rows(ds, limit: int | None, key: str, where: str):
    """The first `limit` rows of a split (the task's row_limit: max_train/eval_samples, None for all);
    a split with no rows is a DataError."""
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    if len(ds) == 0:
        raise DataError(f"{key}: {where} is empty.", "Give a split with at least one example.")
    return ds


def check_architecture(task: str, model_cfg) -> None:
    """Refuse, from the config alone (before any weights load), a model that cannot do `task`."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    from llmctl.models.load import load_config

    name = model_cfg.label
    config = load_config(model_cfg)
    kind = config.model_type
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    # BERT-style encoders appear in the causal-LM mapping (BertLMHeadModel) but cannot generate usefully.
    encoder_only = not encoder_decoder and kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.is_decoder
    decoder_only = not encoder_decoder and not encoder_only and kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    fits = "causal-lm" if decoder_only else "seq2seq" if encoder_decoder else "classification, ner or qa"
    if task == "seq2seq" and not encoder_decoder:
        what = "decoder-only" if decoder_only else "encoder-only" if encoder_only else "not an encoder-decoder"
        raise RecipeError(f"model.name_or_path: '{name}' is a {kind} model ({what}); task seq2seq needs an "
                          "encoder-decoder checkpoint (T5 family).", f"For {kind} use task: {fits}.")
    if task == "causal-lm" and not decoder_only:
        what = "encoder-decoder" if encoder_decoder else "encoder-only" if encoder_only else "no causal-LM head"
        raise RecipeError(f"model.name_or_path: '{name}' is a {kind} model ({what}); task causal-lm needs a "
                          "decoder-only checkpoint (GPT-2, Llama, Qwen2, Mistral, Phi, ...).", f"For {kind} use task: {fits}.")


class EncoderDecoderTask(Task):
    """The tasks of T5-family models (seq2seq, denoising): one head, features that depend only on
    data and tokenizer, and a decoder-only or encoder-only checkpoint refused before it loads."""
    auto_model: ClassVar[str] = "AutoModelForSeq2SeqLM"
    cacheable_features: ClassVar[bool] = True

    def check_model(self, model_cfg) -> None:
        check_architecture("seq2seq", model_cfg)


@dataclass
class GenerationOutputs:
    """What `Task.eval_outputs` returns for generating tasks: the teacher-forced forward pass
    (loss, logits; None when there are no labels) and the generated token ids."""

    loss: Any = None
    logits: Any = None
    generated: Any = None


def unwrap(model):
    """The bare transformers model (DistributedDataParallel keeps it in `.module`); it has `generate`."""
    return getattr(model, "module", model)


def greedy_generate(model, inputs: dict, max_new_tokens: int, num_beams: int = 1):
    model = unwrap(model)
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    return model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                          max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                          pad_token_id=pad)


def decode(ids, tokenizer, stop_ids: set[int], start: int = 0) -> tuple[str, int]:
    """Text of generated ids from `start` up to the first stop token; also the token count."""
    out = []
    for token in (int(t) for t in ids[start:]):
        if token in stop_ids:
            break
        out.append(token)
    return tokenizer.decode(out, skip_special_tokens=True), len(out)
