"""Causal language-model fine-tuning (decoder-only LMs): plain text, prompt/completion pairs,
or chat conversations.

Plain text trains on every token. A prompt/completion pair is the prompt's tokens then
the completion's, then EOS, with the prompt's labels set to -100 so the loss (and the
perplexity) counts only the completion and its EOS, which teaches the model to stop.
Data with a messages column (data.messages_column) is chat: each conversation is rendered
with the tokenizer's chat template and only the assistant turns are learned (llmctl.tasks.chat);
with data.chat_template, prompt/completion pairs become a user and an assistant turn.
`packing` concatenates training examples and cuts the stream into `max_length` blocks: no
padding and no truncation, and one example may straddle two blocks (its second part starts
afresh). Each block carries where its examples start (`example_starts`), from which the
collator makes every example attend only to itself, at positions counted from its own start,
as if it were alone. Validation is never packed, so perplexity means the same with and
without packing. A training file of more than one chunk is read and tokenized a chunk at a
time (causal_lm_file); the features are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split, looks_like_file, read_table, row_location, streamable
from llmctl.errors import DataError
from llmctl.metrics.loss import exact_mean, token_nll
from llmctl.tasks import chat
from llmctl.tasks import generative as gen
from llmctl.tasks.base import Note, Padding, Task
from llmctl.tasks.causal_lm_data import CausalLMData, template_text  # noqa: F401  (the task's data keys)
from llmctl.tasks.causal_lm_file import LMFileSplit, featurize_file, learned_column, open_split, read_chunks
from llmctl.tasks.chat_formats import MESSAGES, chat_format, to_messages, wanted_columns
from llmctl.tasks.labelled_nll import NLLOutputs, labelled_nll


def _frame(columns: dict):
    import pandas

    return pandas.DataFrame(columns)


def _turns(prompts: list[str], completions: list[str]) -> list[list[dict]]:
    """Prompt/completion pairs as conversations of one user and one assistant turn."""
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": c}] for p, c in zip(prompts, completions)]


@dataclass
class LMSplit:
    where: str
    role: str
    prompts: list[str]  # the text itself for plain text, the prompt for pairs; to predict, what is shown
    completions: list[str] | None  # None: plain text, or prediction input
    notes: tuple[Note, ...] = ()
    # Chat: checked conversations, one per row (to predict, None for a row given as a plain prompt).
    conversations: list[list[dict] | None] | None = None
    header: bool = True  # for row_location in messages

    def __len__(self) -> int:
        return len(self.prompts) if self.conversations is None else len(self.conversations)


class _Frame:
    """A pandas frame through the few Dataset methods load_split uses, its cells left as Python objects."""

    def __init__(self, frame):
        self.frame = frame

    @property
    def column_names(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)

    def select(self, rows: range) -> "_Frame":
        return _Frame(self.frame.iloc[rows.start : rows.stop])

    def __getitem__(self, column: str) -> list:
        return self.frame[column].tolist()


# What eval_blocks adds to loss and perplexity: comparable between tokenizers (a char and a BPE model).
PER_TEXT = ("nats_per_character", "bits_per_character", "bits_per_byte")


class CausalLMTask(Task):
    name: ClassVar[str] = "causal-lm"
    data_config: ClassVar[type[DataConfig]] = CausalLMData
    auto_model: ClassVar[str] = "AutoModelForCausalLM"
    cacheable_features: ClassVar[bool] = True
    distill_targets: ClassVar[str | None] = "tokens"

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
        if role == "train" and local and streamable(spec, key):
            # None: it fits in one chunk, read it whole
            split = open_split(Path(spec).expanduser(), key, cfg, self.row_limit(role))
            if split is not None:
                return split
        ds, where = self._read(spec, key, local)
        header = cfg.column_names is None
        fmt = chat_format(ds.column_names, cfg)
        if fmt not in (None, MESSAGES):  # ShareGPT / Alpaca: converted to the messages column
            cells = {c: ds[c] if c in ds.column_names else None for c in wanted_columns(fmt, cfg)}
            ds = _Frame(_frame({cfg.messages_column: to_messages(fmt, cells, cfg)}))
        if cfg.messages_column in ds.column_names:
            ds = gen.limit_rows(ds, self.row_limit(role), key, where)
            values = ds[cfg.messages_column]
            conversations = [chat.conversation(v, row_location(where, i, header), "assistant")
                             for i, v in enumerate(values)]
            return LMSplit(where=where, role=role, prompts=[], completions=None, conversations=conversations,
                           header=header)
        ds = gen.limit_rows(ds, self.row_limit(role), key, where)
        if not self.pairs:
            texts = gen.text_column(ds, cfg.text_column, "data.text_column", where, header, cfg.skip_empty)
            split = LMSplit(where=where, role=role, prompts=texts, completions=None)
        else:
            # An empty prompt is allowed (the completion is then plain text); an empty completion is not.
            prompts = gen.text_column(ds, cfg.prompt_column, "data.prompt_column", where, header, allow_empty=True)
            completions = gen.text_column(ds, cfg.completion_column, "data.completion_column", where, header,
                                          cfg.skip_empty)
            split = LMSplit(where=where, role=role, prompts=prompts, completions=completions)
        split = self._drop_empty(split) if cfg.skip_empty else split
        if cfg.chat_template and self.pairs:
            split = replace(split, prompts=[], completions=None, conversations=_turns(split.prompts, split.completions),
                            header=header)
        return split

    def _read(self, spec: str, key: str, local: bool):
        """(rows, where): a local file as a pandas frame when it holds chat conversations (kept as
        Python lists and dicts, which an Arrow table would coerce or refuse), else a datasets.Dataset."""
        cfg = self.data_cfg
        if not local:
            return load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names, cfg.text_split, cfg.revision)
        import datasets

        path = Path(spec).expanduser()
        frame = read_table(path, key, cfg.column_names, cfg.text_split, nested=True)
        if len(frame) == 0:
            raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
        if chat_format(frame.columns, cfg) is not None:
            return _Frame(frame), str(path)
        return datasets.Dataset.from_pandas(frame, preserve_index=False), str(path)

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

    def corpus(self, split: LMSplit | LMFileSplit):
        if getattr(split, "chat", False) or getattr(split, "conversations", None) is not None:
            from llmctl.errors import RecipeError

            raise RecipeError("model.tokenizer.train: chat data renders through a chat template, which a new "
                              "tokenizer has none of.", "Pre-train on plain text (data.text_column).")
        if isinstance(split, LMFileSplit):
            for _, texts in read_chunks(split.path, "data.train", self.data_cfg, split.limit, split.chat):
                yield from texts[learned_column(self.data_cfg)]
            return
        yield from split.prompts
        yield from split.completions or ()

    def tokenizer_kwargs(self) -> dict:
        template = self.data_cfg.chat_template
        return {"chat_template": template} if isinstance(template, str) else {}

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
        from llmctl.data.features import Features

        cfg = self.data_cfg
        if isinstance(split, LMFileSplit):
            if split.chat or cfg.chat_template:
                chat.require_template(tokenizer, tokenizer.name_or_path)

            def examples(columns: dict, first_row: int):
                ids, labels = self._chunk_examples(split, columns, first_row, tokenizer)
                return (ids, labels) if cfg.packing else self._unpacked(ids, labels)

            return featurize_file(split, cfg, examples, tokenizer, progress)
        if split.conversations is not None and any(c is not None for c in split.conversations):
            chat.require_template(tokenizer, tokenizer.name_or_path)
        if split.role == "predict":
            return self._prompts(split, tokenizer)
        if split.conversations is not None:
            ids, labels = chat.examples(split.conversations, tokenizer, split.where, header=split.header)
        else:
            ids, labels = self._examples(split.prompts, split.completions, tokenizer)
        if cfg.packing and split.role == "train":
            ids, labels, starts = self._pack(ids, labels)
            columns = {"input_ids": ids, "labels": labels, "example_starts": starts}
        elif cfg.eval_blocks and split.role != "train" and split.conversations is None:
            return self._text_blocks(split, ids, labels, tokenizer)
        else:
            ids, labels = self._unpacked(ids, labels)
            columns = {"input_ids": ids, "labels": labels}
        return Features(columns=columns, lengths=[len(x) for x in ids], tokenizer=tokenizer)

    def _chunk_examples(self, split: LMFileSplit, columns: dict, first_row: int, tokenizer):
        """(input ids, labels) of one chunk of a streamed training file, as the whole read makes them."""
        cfg = self.data_cfg
        if split.chat:
            values = columns[cfg.messages_column]
            rows = list(range(first_row, first_row + len(values)))
            conversations = [chat.conversation(v, row_location(split.where, i, split.has_header), "assistant")
                             for i, v in zip(rows, values)]
            return chat.examples(conversations, tokenizer, split.where, rows, split.has_header)
        if not self.pairs:
            return self._examples(columns[cfg.text_column], None, tokenizer)
        prompts, completions = columns[cfg.prompt_column], columns[cfg.completion_column]
        if cfg.chat_template:
            rows = list(range(first_row, first_row + len(prompts)))
            return chat.examples(_turns(prompts, completions), tokenizer, split.where, rows, split.has_header)
        return self._examples(prompts, completions, tokenizer)

    def _prompts(self, split: LMSplit, tokenizer):
        """Prompts to continue: no EOS, and the most recent context is kept. A conversation is
        rendered up to the generation prompt, so the model answers its last user turn."""
        from llmctl.data.features import Features

        conversations = split.conversations or [None] * len(split.prompts)
        chats = [c for c in conversations if c is not None]
        rendered = iter(chat.prompts(chats, tokenizer) if chats else [])
        plain = iter(tokenizer([p for p, c in zip(split.prompts, conversations) if c is None])["input_ids"]
                     if len(chats) < len(conversations) else [])
        ids = [(next(rendered) if c is not None else next(plain))[-self.data_cfg.max_length:] for c in conversations]
        empty = [i + 1 for i, x in enumerate(ids) if not x]
        if empty:
            raise DataError(f"{split.where} row {empty[0]}: the prompt has no tokens.")
        # Decoding generated ids needs the tokenizer: it travels with the features.
        return Features(columns={"input_ids": ids}, lengths=[len(x) for x in ids], tokenizer=tokenizer)

    def _text_blocks(self, split: LMSplit, ids: list[list[int]], labels: list[list[int]], tokenizer):
        """The whole text in consecutive max_length blocks (no attention fence between rows, as nanoGPT
        and run_clm read it), with its characters and UTF-8 bytes for bits per character / byte."""
        from llmctl.data.features import Features
        from llmctl.data.packing import blocks
        from llmctl.data.store import Ragged

        size = self.data_cfg.max_length
        cut = [[row.tolist() for row in blocks(Ragged.from_lists(column), size)] for column in (ids, labels)]
        texts = split.prompts + (split.completions or [])
        meta = {"characters": sum(len(t) for t in texts), "bytes": sum(len(t.encode("utf-8")) for t in texts),
                "tokens": sum(len(x) for x in ids)}
        return Features(columns={"input_ids": cut[0], "labels": cut[1]}, lengths=[len(x) for x in cut[0]],
                        tokenizer=tokenizer, meta=meta)

    def _pack(self, ids: list[list[int]], labels: list[list[int]]) -> tuple[list, list, list]:
        """Blocks of input ids and labels (the last may be shorter; it is kept, not dropped), and
        where each block's examples start: the cuts llmctl.data.packing makes of a streamed file."""
        from llmctl.data.packing import blocks, example_starts
        from llmctl.data.store import Ragged

        size = self.data_cfg.max_length
        examples = Ragged.from_lists(ids)

        def rows(column: Ragged) -> list[list[int]]:
            return [row.tolist() for row in column]

        return (rows(blocks(examples, size)), rows(blocks(Ragged.from_lists(labels), size)),
                rows(example_starts(examples, size)))

    def padding(self, tokenizer) -> Padding:
        # Prompts to continue (no labels) are padded on the left, so generation carries on from real
        # tokens. Padding is masked by position, not token id: GPT-2's pad is its EOS, which is learned.
        return Padding({"input_ids": tokenizer.pad_token_id, "labels": -100}, left_when_missing="labels",
                       segments="example_starts")

    # -- evaluation -----------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        if "labels" in inputs:
            # the loss at labelled positions only: no [batch, length, vocab] logits (labelled_nll.py)
            return labelled_nll(model, inputs)
        out = gen.GenerationOutputs()
        out.generated = gen.greedy_generate(model, inputs, self.data_cfg.max_new_tokens)[:, inputs["input_ids"].shape[1]:]
        return out

    def outputs_to_keep(self, outputs, batch) -> dict:
        if getattr(outputs, "generated", None) is not None:
            return {"generated": outputs.generated}
        if isinstance(outputs, NLLOutputs):
            return {"nll": outputs.nll, "tokens": outputs.tokens}
        return token_nll(outputs.logits, batch["labels"], shift=True)

    def default_metric(self) -> str:
        return "perplexity"

    def metric_names(self) -> list[str]:
        return ["loss", "perplexity"] + (list(PER_TEXT) if self.data_cfg.eval_blocks else [])

    def compute_metrics(self, kept: dict, features, split: LMSplit) -> dict[str, float]:
        import math

        loss = exact_mean(kept["nll"], kept["tokens"])
        metrics = {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp overflows a float past ~709
        meta = getattr(features, "meta", None) or {}
        if meta.get("characters"):
            # The mean loss of a predicted token times the text's tokens: the first token of each block
            # has nothing before it to predict it, so the summed loss alone would leave 1/max_length out.
            nats = loss * meta["tokens"]
            metrics |= {"nats_per_character": nats / meta["characters"],
                        "bits_per_character": nats / math.log(2) / meta["characters"],
                        "bits_per_byte": nats / math.log(2) / meta["bytes"]}
        return metrics

    # -- prediction -----------------------------------------------------------------
    def chat_rows(self, rows: list[dict]) -> tuple[list[dict], int]:
        """(rows, how many were wrapped): each row without a messages column whose prompt is a
        string becomes a conversation of that one user turn (`predict --chat`)."""
        names, out, wrapped = self._prompt_names(), [], 0
        for row in rows:
            value = next((row[c] for c in names if isinstance(row.get(c), str)), None)
            if self.data_cfg.messages_column in row or value is None or not value.strip():
                out.append(row)  # predict_split checks these
                continue
            out.append({self.data_cfg.messages_column: [{"role": "user", "content": value}]})
            wrapped += 1
        return out, wrapped

    def _prompt_names(self) -> list[str]:
        return [c for c in (self.data_cfg.prompt_column, "prompt", self.data_cfg.text_column, "text") if c]

    def predict_split(self, rows: list[dict], where: str) -> LMSplit:
        names = self._prompt_names()
        prompts, conversations = [], []
        for i, row in enumerate(rows):
            if self.data_cfg.messages_column in row:
                messages = chat.conversation(row[self.data_cfg.messages_column], f"{where} row {i + 1}", "user")
                conversations.append(messages)
                prompts.append(messages[-1]["content"])
                continue
            conversations.append(None)
            value = next((row[c] for c in names if isinstance(row.get(c), str)), None)
            if value is None or not value.strip():
                raise DataError(f"{where} row {i + 1}: give the prompt as a non-empty string in "
                                f"'{names[0]}'; fields are: {', '.join(row) or '(none)'}.",
                                f'Plain text lines and jsonl rows like {{"{names[0]}": "..."}} work.')
            prompts.append(value)
        return LMSplit(where=where, role="predict", prompts=prompts, completions=None,
                       conversations=conversations if any(c is not None for c in conversations) else None)

    def format_predictions(self, kept: dict, features, split: LMSplit) -> list[dict]:
        tok = features.tokenizer
        out = []
        for prompt, row in zip(split.prompts, kept["generated"]):
            text, _ = gen.decode(row, tok, {tok.eos_token_id} - {None})
            out.append({"prompt": prompt, "completion": text})
        return out
