"""Text-to-text fine-tuning (T5 family): source text in, target text out.

One task covers classification as label words, summarisation, translation and
generative QA: they differ only in the data. Training is teacher-forced cross-entropy
on the target tokens; evaluation also generates (greedy, or beam search with
`num_beams`) and scores the generated text against the target with ROUGE, BLEU and
exact-match accuracy, all from local metric modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split, looks_like_file, refuse_plain_text
from llmctl.errors import DataError
from llmctl.metrics.loss import exact_mean, token_nll
from llmctl.tasks import generative as gen
from llmctl.tasks.base import Note, Padding


class Seq2SeqData(DataConfig):
    source_column: str = Field("source", description="Column holding the input text.")
    target_column: str = Field("target", description="Column holding the text the model should produce.")
    source_prefix: str = Field("", description='Prepended to every input, e.g. "summarize: " for T5.')
    max_length: int = Field(256, gt=0, description="Input tokens after truncation.")
    max_target_length: int = Field(64, gt=0, description="Target tokens after truncation (training and loss).")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Tokens generated in eval and predict; default: max_target_length.")
    num_beams: int = Field(1, gt=0, description="Beam search width for generation; 1 is greedy.")
    label_words: list[str] | None = Field(
        None, description="Words for integer targets, in id order (e.g. [negative, positive]); "
                          "default: the names of a Hub ClassLabel column.")


@dataclass
class Seq2SeqSplit:
    where: str
    sources: list[str]
    targets: list[str] | None
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.sources)


def _target_word_notes(values, column: str, key: str, where: str, words, label_words) -> tuple[Note, ...]:
    """A warning when integer targets have no words (a local csv of SST-2: the model would learn to
    write "0" / "1"), or when data.label_words is set but no target is an integer (unused).
    Not an error: a target that is a count or a year is legitimately written as digits."""
    ids = sorted({v for v in values if isinstance(v, int) and not isinstance(v, bool)})
    if not words and ids and len(ids) == len({v for v in values if v is not None}):
        shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        return (Note(f"{key}: column '{column}' of {where} holds integers ({shown}) and there are no label words "
                     "for them, so the model learns to write the digits. Set data.label_words (words in id order, "
                     "e.g. [negative, positive]) to train on words.", warning=True),)
    if label_words and not ids:
        return (Note(f"{key}: data.label_words is set but column '{column}' of {where} holds text, not integer ids; "
                     "the label words are not used.", warning=True),)
    return ()


def _normalise(text: str) -> str:
    return " ".join(text.split())


class Seq2SeqTask(gen.EncoderDecoderTask):
    name: ClassVar[str] = "seq2seq"
    data_config: ClassVar[type[DataConfig]] = Seq2SeqData

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> Seq2SeqSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        if labelled and not (cfg.dataset and not looks_like_file(spec)):
            refuse_plain_text(spec, key, self.name, f"a target (data.target_column: {cfg.target_column})")
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names, cfg.text_split, cfg.revision)
        ds = gen.limit_rows(ds, self.row_limit(role), key, where)
        header = cfg.column_names is None
        sources = gen.text_column(ds, cfg.source_column, "data.source_column", where, header)
        targets, notes = None, ()
        if labelled:
            words = cfg.label_words or getattr(ds.features.get(cfg.target_column), "names", None)
            targets = gen.text_column(ds, cfg.target_column, "data.target_column", where, header, words=words)
            notes = _target_word_notes(ds[cfg.target_column], cfg.target_column, key, where, words, cfg.label_words)
        return Seq2SeqSplit(where=where, sources=sources, targets=targets, notes=notes)

    def model_kwargs(self) -> dict:
        return {}

    # -- features -------------------------------------------------------------------
    def featurize(self, split: Seq2SeqSplit, tokenizer, progress=None):
        from llmctl.data.features import Features

        cfg = self.data_cfg
        enc = tokenizer([cfg.source_prefix + s for s in split.sources], truncation=True, max_length=cfg.max_length)
        columns = {"input_ids": enc["input_ids"]}
        lengths = [len(ids) for ids in enc["input_ids"]]
        if split.targets is not None:
            labels = tokenizer(text_target=split.targets, truncation=True, max_length=cfg.max_target_length)["input_ids"]
            columns["labels"] = labels
            lengths = [a + len(b) for a, b in zip(lengths, labels)]
        # Decoding generated ids (metrics, predictions) needs the tokenizer: it travels with the features.
        return Features(columns=columns, lengths=lengths, tokenizer=tokenizer)

    def padding(self, tokenizer) -> Padding:
        # The model builds its decoder inputs from the labels; -100 keeps their padding out of the loss.
        return Padding({"input_ids": tokenizer.pad_token_id, "labels": -100})

    # -- evaluation -----------------------------------------------------------------
    def _max_new_tokens(self) -> int:
        return self.data_cfg.max_new_tokens or self.data_cfg.max_target_length

    def eval_outputs(self, model, inputs: dict):
        out = gen.GenerationOutputs()
        if "labels" in inputs:
            forward = model(**inputs)
            out.loss, out.logits = forward.loss, forward.logits
        out.generated = gen.greedy_generate(model, inputs, self._max_new_tokens(), self.data_cfg.num_beams)
        return out

    def outputs_to_keep(self, outputs, batch) -> dict:
        kept = {"generated": outputs.generated}
        if outputs.logits is not None:
            kept |= token_nll(outputs.logits, batch["labels"], shift=False)
        return kept

    def default_metric(self) -> str:
        return "rougeL"

    def _texts(self, kept: dict, features) -> tuple[list[str], list[int]]:
        tok = features.tokenizer
        stop = {tok.eos_token_id, tok.pad_token_id} - {None}
        # Generation starts from the decoder start token (T5: pad), which is not output.
        decoded = [gen.decode(row, tok, stop, start=1) for row in kept["generated"]]
        return [text.strip() for text, _ in decoded], [n for _, n in decoded]

    def compute_metrics(self, kept: dict, features, split: Seq2SeqSplit) -> dict[str, float]:
        from llmctl import metrics

        predictions, lengths = self._texts(kept, features)
        references = split.targets
        out = {"loss": exact_mean(kept["nll"], kept["tokens"])}
        out |= metrics.load("rouge").compute(predictions=predictions, references=references, use_stemmer=True)
        out["bleu"] = metrics.load("bleu").compute(predictions=predictions, references=references)["bleu"]
        out["accuracy"] = sum(_normalise(p) == _normalise(r) for p, r in zip(predictions, references)) / len(references)
        out["gen_len"] = sum(lengths) / len(lengths)
        return out

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> Seq2SeqSplit:
        column = self.data_cfg.source_column
        sources = []
        for i, row in enumerate(rows):
            value = row.get(column, row.get("text"))
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where} row {i + 1}: give '{column}' (or 'text') as a non-empty string; "
                                f"fields are: {', '.join(row) or '(none)'}.",
                                f'Plain text lines and jsonl rows like {{"{column}": "..."}} work.')
            sources.append(value)
        return Seq2SeqSplit(where=where, sources=sources, targets=None)

    def references(self, split: Seq2SeqSplit) -> list:
        """Each row's target text."""
        return list(split.targets)

    def format_predictions(self, kept: dict, features, split: Seq2SeqSplit) -> list[dict]:
        predictions, _ = self._texts(kept, features)
        return [{self.data_cfg.source_column: s, "prediction": p} for s, p in zip(split.sources, predictions)]
