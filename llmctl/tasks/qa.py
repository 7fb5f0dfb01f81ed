"""Extractive question answering (SQuAD v1.1 / v2.0 style) for BERT, GPT-2 and T5 families.

One example (question + context) becomes one or more *windows*: the question in full,
then as much context as fits in `max_length`; long contexts continue in further
windows that overlap the previous one by `doc_stride` tokens (transformers' `stride`,
as run_qa.py uses it). A window whose context does not hold the whole gold answer is
labelled with the null position (index 0: BERT's [CLS], the first token for GPT-2 and
T5). Evaluation gathers start/end logits per window; `qa_postprocess` (plain numpy)
turns them into answer text cut from the original context, and the local `squad` /
`squad_v2` metrics score it as the official scripts do.

Reading and checking the data lives in `qa_data`, post-processing in `qa_postprocess`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from llmctl.config.schema import DataConfig
from llmctl.errors import DataError
from llmctl.tasks.base import Padding, Task
from llmctl.tasks.qa_data import QASplit, load_qa_split, predict_rows

CHUNK = 1000  # examples tokenized per call (bounds memory on the full SQuAD train set)


class QAData(DataConfig):
    max_length: int = Field(384, gt=0, description="Tokens per window: question + special tokens + context.")
    doc_stride: int = Field(128, ge=0, description="Tokens of context shared by consecutive windows of a long context.")
    max_answer_length: int = Field(30, gt=0, description="Longest answer, in tokens, that post-processing considers.")
    n_best: int = Field(20, gt=0, description="Start and end candidates per window searched for the best span.")
    version_2_with_negative: bool = Field(False, description="SQuAD v2.0: questions may have no answer in the context.")
    null_score_diff_threshold: float = Field(
        0.0, description="v2: predict no answer when null score - best span score exceeds this.")
    question_column: str = Field("question", description="Column (flat files / hub) holding the question.")
    context_column: str = Field("context", description="Column holding the context passage.")
    answers_column: str = Field("answers", description="Column holding {text: [...], answer_start: [...]}.")
    id_column: str = Field("id", description="Column holding the question id (row number when absent).")
    realign_answers: bool = Field(
        False, description="Move an answer_start that does not match its text to the nearest occurrence (counted).")
    skip_unanswerable: bool = Field(
        False, description="With version_2_with_negative false: drop unanswerable questions (counted) instead of failing.")

    @model_validator(mode="after")
    def _stride_fits(self):
        if self.doc_stride >= self.max_length:
            raise ValueError(f"data.doc_stride ({self.doc_stride}) must be smaller than data.max_length ({self.max_length})")
        return self


def _char_span_to_tokens(offsets, context_ids: list[int], start_char: int, end_char: int) -> tuple[int, int]:
    """Token span covering [start_char, end_char) within a window, or (0, 0) when it is not inside."""
    first, last = context_ids[0], context_ids[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


class QATask(Task):
    name: ClassVar[str] = "qa"
    data_config: ClassVar[type[DataConfig]] = QAData
    auto_model: ClassVar[str] = "AutoModelForQuestionAnswering"
    cacheable_features: ClassVar[bool] = True

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> QASplit:
        return load_qa_split(spec, f"data.{role}", self.data_cfg, role, self.row_limit(role), labelled)

    def model_kwargs(self) -> dict:
        return {}

    def default_metric(self) -> str:
        return "f1"

    def metric_names(self) -> list[str]:
        if not self.data_cfg.version_2_with_negative:
            return ["loss", "exact_match", "f1"]
        return ["loss", "exact_match", "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                "NoAns_exact", "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]

    # -- features -------------------------------------------------------------------
    def _check_question_lengths(self, split: QASplit, questions: list[str], tokenizer) -> None:
        """Questions are never truncated: each must leave the context more than doc_stride tokens."""
        cfg = self.data_cfg
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        bad = []
        for i, q_len in enumerate(lengths):
            room = cfg.max_length - specials - q_len
            if room > cfg.doc_stride:
                continue
            # Too little room only matters when the context must be split into windows.
            c_len = len(tokenizer(split.contexts[i], add_special_tokens=False)["input_ids"])
            if room <= 0 or c_len > room:
                bad.append((i, q_len, room))
        if bad:
            i, q_len, room = bad[0]
            more = f" ({len(bad) - 1} more questions like it)" if len(bad) > 1 else ""
            raise DataError(
                f"{split.where}: question {split.ids[i]} has {q_len} tokens, which leaves {max(room, 0)} of "
                f"data.max_length {cfg.max_length} for its context, not more than data.doc_stride {cfg.doc_stride}{more}.",
                "Raise data.max_length, lower data.doc_stride, or shorten the question (questions are never truncated).",
            )

    def featurize(self, split: QASplit, tokenizer, progress=None):
        import numpy as np

        from llmctl.data.features import Features

        cfg = self.data_cfg
        questions = [q.lstrip() for q in split.questions]  # leading spaces only waste window room
        self._check_question_lengths(split, questions, tokenizer)
        keep_types = "token_type_ids" in tokenizer.model_input_names
        train = split.role == "train"
        labelled = split.answers is not None
        columns: dict[str, list] = {"input_ids": []}
        if keep_types:
            columns["token_type_ids"] = []
        example, offsets_out, starts, ends = [], [], [], []
        for lo in range(0, len(split), CHUNK):
            enc = tokenizer(questions[lo:lo + CHUNK], split.contexts[lo:lo + CHUNK], truncation="only_second",
                            max_length=cfg.max_length, stride=cfg.doc_stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True)
            for f, sample in enumerate(enc["overflow_to_sample_mapping"]):
                ex = lo + sample
                offsets = enc["offset_mapping"][f]
                sequence_ids = enc.sequence_ids(f)
                context_ids = [t for t, s in enumerate(sequence_ids) if s == 1]
                columns["input_ids"].append(enc["input_ids"][f])
                if keep_types:
                    columns["token_type_ids"].append(enc["token_type_ids"][f])
                example.append(ex)
                if not train:
                    array = np.full((len(offsets), 2), -1, dtype=np.int32)
                    if context_ids:  # (a context of characters the tokenizer drops has none)
                        array[context_ids] = [offsets[t] for t in context_ids]
                    offsets_out.append(array)
                if labelled:
                    gold = split.answers[ex]
                    if gold and context_ids:
                        text, start_char = gold[0]
                        s, e = _char_span_to_tokens(offsets, context_ids, start_char, start_char + len(text))
                    else:
                        s, e = 0, 0  # unanswerable: the null position
                    starts.append(s)
                    ends.append(e)
        meta = {"example": example}
        if not train:
            meta["offsets"] = offsets_out
        if labelled and train:
            columns["start_positions"], columns["end_positions"] = starts, ends
        elif labelled:
            meta["start_positions"], meta["end_positions"] = starts, ends
        return Features(columns=columns, lengths=[len(ids) for ids in columns["input_ids"]], meta=meta)

    def padding(self, tokenizer) -> Padding:
        # A left-padding tokenizer (GPT-2 family) moves each row's answer positions with its tokens.
        return Padding({"input_ids": tokenizer.pad_token_id, "token_type_ids": 0},
                       values={"start_positions": "long", "end_positions": "long"},
                       positions=("start_positions", "end_positions"), left=tokenizer.padding_side == "left")

    # -- evaluation -----------------------------------------------------------------
    def outputs_to_keep(self, outputs, batch) -> dict:
        import torch

        start, end = outputs.start_logits.float(), outputs.end_logits.float()
        # Move each row's tokens back to positions 0..n-1 so logits line up with offsets. The
        # batch's mask says where they start (after the padding of a left-padding tokenizer, else
        # at 0), so no pad side has to be remembered between collate and here.
        mask = batch["attention_mask"].to(start.device)
        first = mask.argmax(1)  # the first real token of each row
        width = start.shape[1]
        index = (torch.arange(width, device=start.device)[None, :] + first[:, None]).clamp(max=width - 1)
        return {"start_logits": start.gather(1, index), "end_logits": end.gather(1, index)}

    def predictions(self, kept: dict, features, split: QASplit):
        """Post-processed predictions (qa_postprocess.Prediction), one per example."""
        from llmctl.tasks.qa_postprocess import postprocess

        cfg = self.data_cfg
        return postprocess(split.contexts, features.meta["example"], kept["start_logits"], kept["end_logits"],
                           features.meta["offsets"], n_best=cfg.n_best, max_answer_length=cfg.max_answer_length,
                           version_2=cfg.version_2_with_negative, null_threshold=cfg.null_score_diff_threshold)

    def _loss(self, kept: dict, features) -> float | None:
        """Mean over windows of the start/end cross-entropy on the window's real tokens."""
        from llmctl.metrics.loss import cross_entropy, exact_mean

        if "start_positions" not in features.meta:
            return None
        meta = features.meta
        per_window = [(cross_entropy(kept["start_logits"][i][:n], meta["start_positions"][i])
                       + cross_entropy(kept["end_logits"][i][:n], meta["end_positions"][i])) / 2
                      for i, n in enumerate(features.lengths)]
        return exact_mean(per_window, [1] * len(per_window))

    def compute_metrics(self, kept: dict, features, split: QASplit) -> dict[str, float]:
        from llmctl import metrics

        preds = self.predictions(kept, features, split)
        references = [{"id": qid, "answers": {"text": [t for t, _ in gold], "answer_start": [s for _, s in gold]}}
                      for qid, gold in zip(split.ids, split.answers)]
        out = {}
        loss = self._loss(kept, features)
        if loss is not None:
            out["loss"] = loss
        if self.data_cfg.version_2_with_negative:
            predictions = [{"id": qid, "prediction_text": p.text, "no_answer_probability": p.null_score_diff}
                           for qid, p in zip(split.ids, preds)]
            scores = metrics.load("squad_v2").compute(predictions=predictions, references=references,
                                                      na_prob_thresh=self.data_cfg.null_score_diff_threshold)
            out["exact_match"] = scores["exact"]  # the same name as v1, for gates and metric_for_best
            out |= scores
        else:
            predictions = [{"id": qid, "prediction_text": p.text} for qid, p in zip(split.ids, preds)]
            out |= metrics.load("squad").compute(predictions=predictions, references=references)
        return out

    def diagnostics(self, kept: dict, features, split: QASplit) -> dict:
        """SQuAD v2: exact match and F1 (0-100) on answerable and unanswerable questions apart,
        with their counts; SQuAD v1 has only answerable questions, so nothing to add."""
        if not self.data_cfg.version_2_with_negative:
            return {}
        scores = self.compute_metrics(kept, features, split)
        groups = {}
        for group, prefix in (("answerable", "HasAns"), ("unanswerable", "NoAns")):
            if f"{prefix}_total" in scores:
                groups[group] = {"exact": float(scores[f"{prefix}_exact"]), "f1": float(scores[f"{prefix}_f1"]),
                                 "count": int(scores[f"{prefix}_total"])}
        return {"task": self.name, **groups}

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> QASplit:
        return predict_rows(rows, where, self.data_cfg)

    def references(self, split: QASplit) -> list:
        """Each question's reference answer texts (none for an unanswerable SQuAD v2 question)."""
        return [[text for text, _ in gold] for gold in split.answers]

    def format_predictions(self, kept: dict, features, split: QASplit) -> list[dict]:
        out = []
        for qid, question, p in zip(split.ids, split.questions, self.predictions(kept, features, split)):
            row = {"id": qid, "question": question}
            if p.no_answer or p.start is None:
                row |= {"answer": "", "start": None, "end": None, "score": round(p.probability, 6)}
            else:
                row |= {"answer": p.text, "start": p.start, "end": p.end, "score": round(p.probability, 6)}
            if self.data_cfg.version_2_with_negative:
                row["no_answer"] = bool(p.no_answer)
            out.append(row)
        return out
