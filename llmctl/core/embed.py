"""`llmctl embed MODEL_OR_RUN --input FILE|-` as functions: one sentence vector per input, in input
order, from an embedding run, a sentence-transformers folder (its pooling and normalising) or any
encoder / decoder checkpoint (mean pooling for an encoder, last token for a decoder LM).

    vectors = embed_texts("runs/minilm-sts", ["a text", "another"], batch_size=32)   # [2, d] float32

Texts are tokenized once, sorted by length (longest first, as sentence-transformers' encode does)
and batched, so padding stays small; vectors go back to their input positions.
"""

from __future__ import annotations

import io
from pathlib import Path

from llmctl.errors import DataError, UsageError

OUTPUT_SUFFIXES = (".jsonl", ".npy")


def embedding_settings(folder: Path, config, tokenizer) -> dict:
    """{pooling, normalize, max_length}: an embedding run's own (llmctl.json), else the checkpoint's
    sentence-transformers modules (sentence_bert_config.json's max_seq_length), else the defaults."""
    from llmctl.models.saved import TASK_FILE
    from llmctl.models.sentence import default_pooling
    from llmctl.runs.files import read_json

    saved = read_json(folder / TASK_FILE, root=folder) if folder.is_dir() else None
    if saved and saved.get("task") == "embedding" and saved.get("data", {}).get("pooling"):
        data = saved["data"]
        return {"pooling": data["pooling"], "normalize": bool(data.get("normalize")), "max_length": data["max_length"]}
    pooling, normalize = default_pooling(folder, config)
    st_config = read_json(folder / "sentence_bert_config.json", root=folder) if folder.is_dir() else None
    limit = (st_config or {}).get("max_seq_length")
    if not isinstance(limit, int) or limit <= 0:
        positions = getattr(config, "max_position_embeddings", None) or 512
        limit = min(positions, tokenizer.model_max_length or positions)
    return {"pooling": pooling, "normalize": normalize, "max_length": limit}


def load_encoder(model_path: str, device: str | None = None):
    """(model, tokenizer, settings) for embedding with a saved model or run directory, checked
    from config.json (an encoder or a decoder LM) before any weight loads."""
    from llmctl.config.schema import ModelConfig
    from llmctl.models.devices import device_type
    from llmctl.models.gate import load_weights
    from llmctl.models.load import auto_class, check_source, load_config, load_tokenizer
    from llmctl.models.quiet import quiet_libraries
    from llmctl.models.saved import find_model_dir
    from llmctl.models.sentence import check_encoder
    from llmctl.runs.files import check_run

    check_run(model_path)
    folder = find_model_dir(model_path)
    name = str(folder) if folder.exists() else model_path
    check_source(name)
    dev = device_type(device)
    model_cfg = ModelConfig(name_or_path=name)
    config = load_config(model_cfg)
    check_encoder(config, model_path)
    quiet_libraries()
    tokenizer = load_tokenizer(model_cfg)
    settings = embedding_settings(folder, config, tokenizer)

    def pooler_only(model):  # a checkpoint saved from a masked-LM head has no pooler (unused here)
        return lambda key: key.startswith("pooler.")

    model = load_weights(auto_class("AutoModel"), name, allowed_missing=pooler_only, use_safetensors=True)
    return model.to(dev).eval(), tokenizer, settings


def embed_texts(model_path: str, texts: list[str], batch_size: int = 32, device: str | None = None):
    """[len(texts), d] float32 numpy vectors, in the order of `texts`."""
    model, tokenizer, settings = load_encoder(model_path, device)
    return encode(model, tokenizer, texts, settings, batch_size)


def encode(model, tokenizer, texts: list[str], settings: dict, batch_size: int = 32):
    return encode_ids(model, tokenizer, token_ids(tokenizer, texts, settings), settings, batch_size)


def token_ids(tokenizer, texts: list[str], settings: dict) -> list[list[int]]:
    """What the model sees of each text: its tokens, cut at the model's max_length."""
    return tokenizer(list(texts), truncation=True, max_length=settings["max_length"])["input_ids"]


def encode_ids(model, tokenizer, ids: list[list[int]], settings: dict, batch_size: int = 32):
    import numpy as np
    import torch

    from llmctl.data.collate import pad_sequences
    from llmctl.models.sentence import pool

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = None
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            padded, lengths = pad_sequences([ids[i] for i in chosen], tokenizer.pad_token_id)
            mask = torch.from_numpy((np.arange(padded.shape[1])[None, :] < lengths[:, None]).astype(np.int64)).to(device)
            hidden = model(input_ids=torch.from_numpy(padded).to(device), attention_mask=mask).last_hidden_state
            vectors = pool(hidden.float(), mask, settings["pooling"], settings["normalize"]).cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
            out[chosen] = vectors
    return out


def input_texts(source: str, text_column: str) -> tuple[list[str], list[int]]:
    """The texts of `--input` (jsonl / csv / tsv / txt, or - for stdin) and each one's input line."""
    from llmctl.core.prediction import read_inputs

    rows, where, lines = read_inputs(source)
    texts = []
    for row, line in zip(rows, lines):
        value = row.get(text_column)
        if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
            known = ", ".join(map(str, row)) or "none"
            fix = (f"Fill in that row's '{text_column}'." if text_column in row
                   else f"Pass --text-column with one of its columns ({known}).")
            raise DataError(f"{where}:{line}: no text in column '{text_column}'.", fix)
        texts.append(str(value))
    return texts, lines


def run_embed(model: str, input_: str, output: str | None = None, batch_size: int = 32, text_column: str = "text",
              device: str | None = None) -> tuple:
    """`llmctl embed` without Typer: (vectors, lines, the file written or None). Options and input
    are checked before anything loads; `output` ending .npy gets one float32 array, .jsonl one
    {"embedding": [...], "line": N} object per input."""
    from llmctl.core.checks import at_least_one, writable_file

    at_least_one(batch_size=batch_size)
    if output is not None:
        if Path(output).suffix not in OUTPUT_SUFFIXES:
            raise UsageError(f"--output {output}: write .jsonl or .npy.", "Name the file x.jsonl or x.npy.")
        writable_file(output, "--output")
    texts, lines = input_texts(input_, text_column)
    vectors = embed_texts(model, texts, batch_size=batch_size, device=device)
    if output is None:
        return vectors, lines, None
    from llmctl.files import write_text_atomic

    target = Path(output).expanduser()
    if target.suffix == ".npy":
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, vectors)
        write_text_atomic(target, buffer.getvalue(), "the vectors")
    else:
        write_text_atomic(target, "".join(jsonl_rows(vectors, lines)), "the vectors")
    return vectors, lines, target


def jsonl_rows(vectors, lines):
    import json

    for vector, line in zip(vectors, lines):
        yield json.dumps({"embedding": [float(x) for x in vector], "line": line}) + "\n"


def embedder(model_path: str, device: str | None = None, batch_size: int = 32):
    """For `llmctl serve`: the model loaded once, and a function texts -> (vectors, token count per text)
    that embeds as `llmctl embed` does."""
    model, tokenizer, settings = load_encoder(model_path, device)

    def run(texts: list[str]):
        ids = token_ids(tokenizer, texts, settings)
        return encode_ids(model, tokenizer, ids, settings, batch_size), [len(i) for i in ids]

    return run
