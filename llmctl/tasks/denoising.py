"""Denoising pre-training of an encoder-decoder (T5's span corruption, `run_t5_mlm_flax.py`'s job):
plain text is tokenized once, concatenated and cut into `max_length`-token blocks; when a batch is
made, each block loses noise_density of its tokens in spans of mean_span_length on average, each span
replaced by a sentinel (<extra_id_N>), and the model learns to write the hidden spans after their
sentinels (llmctl.tasks.span_corruption). The corruption is drawn from (seed, epoch, block index),
like masked-lm's masks, so resume is exact and a new epoch draws anew; evaluation uses a stream of
its own, the same at every evaluation. The metrics are the loss and perplexity of the target tokens.

A task of its own rather than an objective of seq2seq: seq2seq reads a source and a target column
and generates; denoising reads plain text like masked-lm and draws its inputs at batch time. They
share the model head, nothing of their data path.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from llmctl.config.schema import DataConfig
from llmctl.errors import ModelError, UsageError
from llmctl.metrics.loss import exact_mean, token_nll
from llmctl.tasks import generative as gen
from llmctl.tasks import masking
from llmctl.tasks.base import Padding
from llmctl.tasks.masked_lm import CHUNK_ROWS, TextSplit, read_texts
from llmctl.tasks.span_corruption import corrupt, noise_mask, span_count


class DenoisingData(DataConfig):
    text_column: str = Field("text", description="Column holding the text.")
    noise_density: float = Field(0.15, gt=0, lt=1, description="Share of each block's tokens hidden (T5: 0.15).")
    mean_span_length: float = Field(3.0, ge=1, description="Mean length of a hidden span (T5: 3).")
    max_length: int = Field(128, gt=1, description="Tokens of text per block, before corruption.")


def sentinel_ids(tokenizer, needed: int) -> np.ndarray:
    ids = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(needed)]
    if any(i is None or i == tokenizer.unk_token_id for i in ids) or tokenizer.eos_token_id is None:
        raise ModelError(f"The tokenizer of '{tokenizer.name_or_path}' lacks the {needed} sentinel tokens "
                         "(<extra_id_0>, ...) or the EOS token that span corruption needs.",
                         "Use a T5 tokenizer, or model.tokenizer: {train: unigram, vocab_size: N} with a t5 model.config.")
    return np.asarray(ids, dtype=np.int64)


class DenoisingTask(gen.EncoderDecoderTask):
    name: ClassVar[str] = "denoising"
    data_config: ClassVar[type[DataConfig]] = DenoisingData

    def load_split(self, role: str, spec: str, labelled: bool = True) -> TextSplit:
        return read_texts(self.data_cfg, role, spec, self.row_limit(role))  # plain text rows, as masked-lm's

    def corpus(self, split: TextSplit):
        return iter(split.texts)

    def model_kwargs(self) -> dict:
        return {}

    def featurize(self, split: TextSplit, tokenizer, progress=None):
        from llmctl.data.features import Features
        from llmctl.data.packing import blocks
        from llmctl.data.store import Writer

        cfg = self.data_cfg
        sentinel_ids(tokenizer, span_count(cfg.max_length, cfg.noise_density, cfg.mean_span_length))
        tokens = Writer()
        for start in range(0, len(split.texts), CHUNK_ROWS):
            chunk = split.texts[start : start + CHUNK_ROWS]
            encoded = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False)["input_ids"]
            tokens.extend([row + [tokenizer.eos_token_id] for row in encoded])  # documents end in EOS
            if progress is not None:
                progress(start + len(chunk), len(split.texts))
        column = blocks(tokens.finish(), cfg.max_length)
        return Features(columns={"tokens": column}, lengths=column.lengths(), tokenizer=tokenizer)

    def padding(self, tokenizer) -> Padding:
        return Padding({"input_ids": tokenizer.pad_token_id, "labels": -100})

    def collate(self, rows: list[dict], tokenizer) -> dict:
        return self._corrupted(rows, tokenizer, masking.EVAL_STREAM, masking.EVAL_SEED, masking.EVAL_EPOCH)

    def collate_for_training(self, rows: list[dict], tokenizer, seed: int, epoch: int) -> dict:
        return self._corrupted(rows, tokenizer, masking.TRAIN_STREAM, seed, epoch)

    def _corrupted(self, rows: list[dict], tokenizer, stream: int, seed: int, epoch: int) -> dict:
        cfg = self.data_cfg
        sentinels = sentinel_ids(tokenizer, span_count(cfg.max_length, cfg.noise_density, cfg.mean_span_length))
        out = []
        for row in rows:
            tokens = np.asarray(row["tokens"], dtype=np.int64)
            rng = masking.example_rng(stream, seed, epoch, int(row["index"]))
            ids, labels = corrupt(tokens, noise_mask(len(tokens), cfg.noise_density, cfg.mean_span_length, rng),
                                  sentinels, tokenizer.eos_token_id)
            out.append({"input_ids": ids, "labels": labels, "index": row["index"]})
        return super().collate(out, tokenizer)

    def outputs_to_keep(self, outputs, batch) -> dict:
        return token_nll(outputs.logits, batch["labels"], shift=False)

    def compute_metrics(self, kept: dict, features, split) -> dict[str, float]:
        import math

        loss = exact_mean(kept["nll"], kept["tokens"])
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}

    def default_metric(self) -> str:
        return "perplexity"

    def metric_names(self) -> list[str]:
        return ["loss", "perplexity"]

    def predict_split(self, rows: list[dict], where: str):
        raise UsageError("task denoising has no predict: it pre-trains.",
                         "Sample from the model with `llmctl generate RUN`, or fine-tune it with task seq2seq.")

    def format_predictions(self, kept: dict, features, split) -> list[dict]:
        return []
