"""Causal language-model fine-tuning (GPT-2 family): plain text, or prompt/completion pairs.

Plain text trains on every token. A prompt/completion pair is the prompt's tokens then
the completion's, then EOS, with the prompt's labels set to -100 so the loss (and the
perplexity) counts only the completion and its EOS, which teaches the model to stop.
`packing` concatenates training examples, each ending in EOS, and cuts the stream into
`max_length` blocks: no padding and no truncation, but an example may attend to the one
before it in its block, and one may straddle two blocks. Validation is never packed, so
perplexity means the same with and without packing. A training file of more than one chunk
is read and tokenized a chunk at a time (causal_lm_file); the features are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split, looks_like_file
from llmctl.errors import DataError
from llmctl.metrics.loss import exact_mean, token_nll
from llmctl.tasks import generative as gen
from llmctl.tasks.base import Note, Padding, Task
from llmctl.tasks.causal_lm_file import STREAMED, LMFileSplit, featurize_file, open_split


class CausalLMData(DataConfig):
    text_column: str = Field("text", description="Column holding plain training text (when no completion_column).")
    prompt_column: str | None = Field(None, description="Column holding the prompt of prompt/completion pairs.")
    completion_column: str | None = Field(
        None, description="Column holding the completion; set it (with prompt_column) to train on completions only.")
    packing: bool = Field(False, description="Concatenate training examples with EOS into max_length blocks.")
    skip_empty: bool = Field(
        False, description="Drop rows whose text (or completion) is empty, with a counted note, instead of "
                           "failing (wikitext has blank lines).")
    max_new_tokens: int = Field(64, gt=0, description="Tokens `llmctl predict` generates after each prompt (greedy).")

    @model_validator(mode="after")
    def _pairs(self):
        if (self.prompt_column is None) != (self.completion_column is None):
            raise ValueError("data.prompt_column and data.completion_column go together: set both for "
                             "prompt/completion pairs, or neither for plain text")
        return self


@dataclass
class LMSplit:
    where: str
    role: str
    prompts: list[str]  # the text itself for plain text, the prompt for pairs
    completions: list[str] | None  # None: plain text, or prediction input
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.prompts)


class CausalLMTask(Task):
    name: ClassVar[str] = "causal-lm"
    data_config: ClassVar[type[DataConfig]] = CausalLMData
    auto_model: ClassVar[str] = "AutoModelForCausalLM"
    cacheable_features: ClassVar[bool] = True

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "CausalLMTask":
        return cls(CausalLMData.model_validate(meta["data"]))

    def check_model(self, model_cfg) -> None:
        gen.check_architecture(self.name, model_cfg)

    @property
    def pairs(self) -> bool:
        return self.data_cfg.completion_column is not None

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> LMSplit | LMFileSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        local = not (cfg.dataset and not looks_like_file(spec))
        if role == "train" and local and Path(spec).suffix.lower() in STREAMED:
            # None: it fits in one chunk, read it whole
            split = open_split(Path(spec).expanduser(), key, cfg, self.row_limit(role))
            if split is not None:
                return split
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names)
        ds = gen.limit_rows(ds, self.row_limit(role), key, where)
        header = cfg.column_names is None
        if not self.pairs:
            texts = gen.text_column(ds, cfg.text_column, "data.text_column", where, header, cfg.skip_empty)
            split = LMSplit(where=where, role=role, prompts=texts, completions=None)
        else:
            # An empty prompt is allowed (the completion is then plain text); an empty completion is not.
            prompts = gen.text_column(ds, cfg.prompt_column, "data.prompt_column", where, header, allow_empty=True)
            completions = gen.text_column(ds, cfg.completion_column, "data.completion_column", where, header,
                                          cfg.skip_empty)
            split = LMSplit(where=where, role=role, prompts=prompts, completions=completions)
        return self._drop_empty(split) if cfg.skip_empty else split

    def _drop_empty(self, split: LMSplit) -> LMSplit:
        learned = split.completions if split.completions is not None else split.prompts
        keep = [i for i, text in enumerate(learned) if text.strip()]
        if not keep:
            raise DataError(f"{split.where}: every row is empty.", "Check data.text_column / data.completion_column.")
        if len(keep) == len(split):
            return split
        return replace(split, prompts=[split.prompts[i] for i in keep],
                       completions=None if split.completions is None else [split.completions[i] for i in keep],
                       notes=(Note(f"{split.where}: skipped {len(split) - len(keep)} empty row(s) (data.skip_empty)."),))

    def model_kwargs(self) -> dict:
        return {}

    # -- features -------------------------------------------------------------------
    def _examples(self, prompts: list[str], completions: list[str] | None,
                  tokenizer) -> tuple[list[list[int]], list[list[int]]]:
        """(input ids, labels) per example, each ending in EOS; not yet truncated."""
        eos = tokenizer.eos_token_id
        first = tokenizer(prompts)["input_ids"]  # with the tokenizer's own BOS, if it adds one
        if completions is None:
            ids = [x + [eos] for x in first]
            return ids, [list(x) for x in ids]
        rest = tokenizer(completions, add_special_tokens=False)["input_ids"]
        ids = [p + c + [eos] for p, c in zip(first, rest)]
        labels = [[-100] * len(p) + c + [eos] for p, c in zip(first, rest)]
        return ids, labels

    def _truncate(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        """Fit max_length: drop the prompt's start first (the completion is what is learned), then the end."""
        limit = self.data_cfg.max_length
        excess = len(ids) - limit
        if excess <= 0:
            return ids, labels
        prompt = next((i for i, label in enumerate(labels) if label != -100), len(labels))
        cut = min(excess, prompt)
        ids, labels = ids[cut:], labels[cut:]
        return ids[:limit], labels[:limit]

    def _unpacked(self, ids: list[list[int]], labels: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        pairs = [self._truncate(i, lab) for i, lab in zip(ids, labels)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def featurize(self, split: LMSplit | LMFileSplit, tokenizer, progress=None):
        from llmctl.train.batching import Features

        cfg = self.data_cfg
        if isinstance(split, LMFileSplit):
            def examples(prompts, completions):
                ids, labels = self._examples(prompts, completions, tokenizer)
                return (ids, labels) if cfg.packing else self._unpacked(ids, labels)

            return featurize_file(split, cfg, examples, tokenizer, progress)
        if split.completions is None and split.role == "predict":
            # Prompts to continue: no EOS, and the most recent context is kept.
            ids = [x[-cfg.max_length:] for x in tokenizer(split.prompts)["input_ids"]]
            empty = [i + 1 for i, x in enumerate(ids) if not x]
            if empty:
                raise DataError(f"{split.where} row {empty[0]}: the prompt has no tokens.")
            # Decoding generated ids needs the tokenizer: it travels with the features.
            return Features(columns={"input_ids": ids}, lengths=[len(x) for x in ids], tokenizer=tokenizer)
        ids, labels = self._examples(split.prompts, split.completions, tokenizer)
        if cfg.packing and split.role == "train":
            ids, labels = self._pack(ids, labels)
        else:
            ids, labels = self._unpacked(ids, labels)
        return Features(columns={"input_ids": ids, "labels": labels}, lengths=[len(x) for x in ids],
                        tokenizer=tokenizer)

    def _pack(self, ids: list[list[int]], labels: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        size = self.data_cfg.max_length
        stream = [t for x in ids for t in x]
        label_stream = [t for x in labels for t in x]
        blocks = range(0, len(stream), size)  # the last block may be shorter; it is kept, not dropped
        return [stream[i : i + size] for i in blocks], [label_stream[i : i + size] for i in blocks]

    def padding(self, tokenizer) -> Padding:
        # Prompts to continue (no labels) are padded on the left, so generation carries on from real
        # tokens. Padding is masked by position, not token id: GPT-2's pad is its EOS, which is learned.
        return Padding({"input_ids": tokenizer.pad_token_id, "labels": -100}, left_when_missing="labels")

    # -- evaluation -----------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        if "labels" in inputs:
            return model(**inputs)
        out = gen.GenerationOutputs()
        out.generated = gen.greedy_generate(model, inputs, self.data_cfg.max_new_tokens)[:, inputs["input_ids"].shape[1]:]
        return out

    def outputs_to_keep(self, outputs, batch) -> dict:
        if getattr(outputs, "generated", None) is not None:
            return {"generated": outputs.generated}
        return token_nll(outputs.logits, batch["labels"], shift=True)

    def default_metric(self) -> str:
        return "perplexity"

    def metric_names(self) -> list[str]:
        return ["loss", "perplexity"]

    def compute_metrics(self, kept: dict, features, split: LMSplit) -> dict[str, float]:
        import math

        loss = exact_mean(kept["nll"], kept["tokens"])
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp overflows a float past ~709

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> LMSplit:
        names = [c for c in (self.data_cfg.prompt_column, "prompt", self.data_cfg.text_column, "text") if c]
        prompts = []
        for i, row in enumerate(rows):
            value = next((row[c] for c in names if isinstance(row.get(c), str)), None)
            if value is None or not value.strip():
                raise DataError(f"{where} row {i + 1}: give the prompt as a non-empty string in "
                                f"'{names[0]}'; fields are: {', '.join(row) or '(none)'}.",
                                f'Plain text lines and jsonl rows like {{"{names[0]}": "..."}} work.')
            prompts.append(value)
        return LMSplit(where=where, role="predict", prompts=prompts, completions=None)

    def format_predictions(self, kept: dict, features, split: LMSplit) -> list[dict]:
        tok = features.tokenizer
        out = []
        for prompt, row in zip(split.prompts, kept["generated"]):
            text, _ = gen.decode(row, tok, {tok.eos_token_id} - {None})
            out.append({"prompt": prompt, "completion": text})
        return out
