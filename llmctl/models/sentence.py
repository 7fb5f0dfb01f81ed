"""Sentence embeddings from a transformers body: pooling, normalising, and the sentence-transformers
module files that say how (modules.json, sentence_bert_config.json, 1_Pooling/config.json,
2_Normalize/), read from a checkpoint and written beside a run's weights so that
`SentenceTransformer(run/model)` gives the vectors llmctl does.

Pooling: `mean` (the average of the real tokens' last hidden states), `cls` (the first token's),
`last` (the last real token's: decoder LMs, which read left to right). The default is what the
checkpoint's sentence-transformers files declare, else `last` for a decoder LM and `mean` for the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.errors import ModelError

POOLINGS = ("mean", "cls", "last")
# sentence-transformers' Pooling names for ours (its classic config flags and its newer pooling_mode)
_ST_MODES = {"mean": "mean", "cls": "cls", "last": "lasttoken"}
_CLASSIC_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_lasttoken": "last"}


def checkpoint_pooling(folder: str | Path) -> tuple[str | None, bool | None]:
    """(pooling, normalize) that a sentence-transformers checkpoint in `folder` declares; (None, None)
    when it has no modules.json (a plain transformers folder, a hub id)."""
    folder = Path(folder).expanduser()
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        pooling = None
        for module in modules:
            kind = str(module.get("type", ""))
            if kind.endswith("Pooling"):
                config = json.loads((folder / module.get("path", "") / "config.json").read_text(encoding="utf-8"))
                pooling = _pooling_from(config)
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ModelError(f"{modules_file}: cannot read its sentence-transformers modules ({exc}).",
                         "Fix or remove modules.json (and its module folders).") from exc
    return pooling, normalize


def _pooling_from(config: dict) -> str | None:
    mode = config.get("pooling_mode")  # sentence-transformers 6: one name
    if isinstance(mode, str):
        return {v: k for k, v in _ST_MODES.items()}.get(mode)
    for flag, name in _CLASSIC_FLAGS.items():  # the classic format: one flag per mode
        if config.get(flag):
            return name
    return None


def is_decoder(config) -> bool:
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = config.model_type
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return False
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def check_encoder(config, name: str) -> None:
    """Refuse, from config.json alone, a model whose body cannot embed a sentence by itself: an
    encoder-decoder (T5, BART) or a type transformers has no plain AutoModel body for."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    kind = getattr(config, "model_type", "unknown")
    if getattr(config, "is_encoder_decoder", False) or kind not in MODEL_MAPPING_NAMES:
        raise ModelError(
            f"Model '{name}' is a '{kind}' checkpoint without an encoder that embeds a sentence alone "
            f"({'an encoder-decoder' if getattr(config, 'is_encoder_decoder', False) else 'no AutoModel body'}).",
            "Use a BERT-family encoder (e.g. all-MiniLM-L6-v2) or a decoder LM (last-token pooling).")


def default_pooling(folder: str | Path, config) -> tuple[str, bool]:
    """(pooling, normalize) when the recipe does not say: the checkpoint's own, else last / mean."""
    pooling, normalize = checkpoint_pooling(folder) if Path(str(folder)).expanduser().is_dir() else (None, None)
    return pooling or ("last" if is_decoder(config) else "mean"), bool(normalize)


def pool(hidden, mask, pooling: str, normalize: bool = False):
    """[n, d] sentence vectors from [n, seq, d] hidden states and the [n, seq] attention mask
    (right or left padded)."""
    import torch

    if pooling == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        out = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    elif pooling == "cls":
        out = hidden[:, 0]
    else:  # last real token: the highest position whose mask is 1
        positions = torch.arange(mask.shape[1], device=mask.device)[None, :]
        last = (positions * mask.long()).argmax(1)
        out = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if normalize:
        out = torch.nn.functional.normalize(out.float(), p=2, dim=-1).to(out.dtype)
    return out


def sentence_transformers_files(pooling: str, normalize: bool, dimension: int, max_length: int) -> dict[str, str]:
    """The module files (relative path -> text) that make a save_pretrained folder a
    sentence-transformers model with this pooling. Written in the classic format that every
    sentence-transformers release reads (6.x included)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    flags = {"word_embedding_dimension": dimension, "pooling_mode_cls_token": pooling == "cls",
             "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
             "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
             "pooling_mode_lasttoken": pooling == "last", "include_prompt": True}
    files = {"modules.json": json.dumps(modules, indent=2) + "\n",
             "sentence_bert_config.json": json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2) + "\n",
             "1_Pooling/config.json": json.dumps(flags, indent=2) + "\n",
             "config_sentence_transformers.json": json.dumps({"similarity_fn_name": "cosine"}, indent=2) + "\n"}
    if normalize:
        files["2_Normalize/config.json"] = "{}\n"
    return files
