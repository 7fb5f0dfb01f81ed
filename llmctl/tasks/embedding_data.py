"""Embedding data: the recipe keys of `task: embedding`, and reading a split into groups of texts,
checked row by row before any model loads. Three shapes (docs/tasks/embedding.md):

- pairs: `anchor`, `positive` and optionally `negative` columns (a hard negative); training with
  data.loss mnrl (in-batch negatives), evaluated as retrieval: every anchor a query, the split's
  positives (and negatives) the corpus, each anchor's own positive the relevant document.
- scored pairs: `sentence1`, `sentence2`, `score` (STS); training with cosent or cosine, evaluated
  by the Spearman / Pearson correlation of the two sentences' cosine with the score.
- queries over a corpus (evaluation only, when data.corpus is set): the split's `query` and
  `relevant` columns (one corpus id, or a list of them), the corpus file's `id` and `text`.

Training reads pairs for loss mnrl and scored pairs otherwise; an evaluation split is read as
queries when data.corpus is set, as scored pairs when it has the score column, else as pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import row_location
from llmctl.errors import DataError
from llmctl.tasks.base import Note


class EmbeddingData(DataConfig):
    loss: Literal["mnrl", "cosent", "cosine"] = Field(
        "mnrl", description="mnrl: multiple-negatives ranking (InfoNCE with in-batch negatives) on pairs; cosent or "
                            "cosine (MSE of the cosine against the scaled score) on scored pairs.")
    scale: float = Field(20.0, gt=0, description="Similarity scale of mnrl and cosent (1 / temperature), "
                                                 "sentence-transformers' default 20.")
    pooling: Literal["mean", "cls", "last"] | None = Field(
        None, description="Sentence vector from the token states; null = the checkpoint's sentence-transformers "
                          "pooling, else last for a decoder LM and mean otherwise.")
    normalize: bool | None = Field(
        None, description="Scale every vector to length 1; null = as the checkpoint's sentence-transformers modules say (else no).")
    anchor_column: str = Field("anchor", description="Pairs: the query / first text.")
    positive_column: str = Field("positive", description="Pairs: the text that belongs with the anchor.")
    negative_column: str | None = Field(None, description="Pairs: an optional hard negative for the anchor.")
    sentence1_column: str = Field("sentence1", description="Scored pairs: the first sentence.")
    sentence2_column: str = Field("sentence2", description="Scored pairs: the second sentence.")
    score_column: str = Field("score", description="Scored pairs: how similar the two are, within data.score_range.")
    score_range: list[float] = Field([0.0, 5.0], description="[lowest, highest] score (STS-B: 0 to 5); a score "
                                                             "outside is refused; cosine loss scales it to 0..1.")
    corpus: str | None = Field(None, description="Retrieval evaluation: a file of documents (id, text); the evaluation "
                                                 "split then holds queries and their relevant ids.")
    corpus_id_column: str = Field("id", description="Corpus file: the document id.")
    corpus_text_column: str = Field("text", description="Corpus file: the document text.")
    query_column: str = Field("query", description="Queries: the query text.")
    relevant_column: str = Field("relevant", description="Queries: the relevant corpus id, or a list of ids (jsonl).")

    @field_validator("score_range")
    @classmethod
    def _range(cls, value):
        if len(value) != 2 or not value[0] < value[1]:
            raise ValueError("give [lowest, highest] with lowest < highest, e.g. [0, 5]")
        return value


@dataclass
class EmbeddingSplit:
    where: str
    kind: str  # pairs | scored | queries
    texts: list[list[str]]  # per row: the texts embedded together (anchor, positive[, negative] / s1, s2 / one)
    scores: list[float] | None = None  # scored pairs
    relevant: list[set[int]] | None = None  # queries: the relevant documents' row numbers among the corpus rows
    queries: int = 0  # queries: the first `queries` rows are queries, the rest the corpus
    notes: tuple[Note, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.texts)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _texts(ds, column: str, at) -> list[str]:
    out = []
    for i, value in enumerate(ds[column]):
        if _missing(value) or not str(value).strip():
            raise DataError(f"{at(i)}: column '{column}' is empty.", "Fill in or remove that row.")
        out.append(str(value))
    return out


def _need(columns: list[str], wanted: list[tuple[str, str]], where: str) -> None:
    from llmctl.tasks.classification_data import missing_column

    for key, column in wanted:
        if column not in columns:
            raise missing_column(key, column, where, columns)


def split_kind(cfg: EmbeddingData, role: str, columns: list[str]) -> str:
    if role == "train":
        return "pairs" if cfg.loss == "mnrl" else "scored"
    if cfg.corpus:
        return "queries"
    return "scored" if cfg.score_column in columns and cfg.anchor_column not in columns else "pairs"


def read_split(ds, where: str, cfg: EmbeddingData, role: str, header: bool) -> EmbeddingSplit:
    columns = list(ds.column_names)
    kind = split_kind(cfg, role, columns)

    def at(i: int) -> str:
        return row_location(where, i, header)

    if kind == "pairs":
        wanted = [("data.anchor_column", cfg.anchor_column), ("data.positive_column", cfg.positive_column)]
        wanted += [("data.negative_column", cfg.negative_column)] if cfg.negative_column else []
        _need(columns, wanted, where)
        parts = [_texts(ds, column, at) for _, column in wanted]
        return EmbeddingSplit(where, kind, [list(row) for row in zip(*parts)])
    if kind == "scored":
        wanted = [("data.sentence1_column", cfg.sentence1_column), ("data.sentence2_column", cfg.sentence2_column),
                  ("data.score_column", cfg.score_column)]
        _need(columns, wanted, where)
        firsts, seconds = _texts(ds, cfg.sentence1_column, at), _texts(ds, cfg.sentence2_column, at)
        return EmbeddingSplit(where, kind, [[a, b] for a, b in zip(firsts, seconds)],
                              scores=_scores(ds[cfg.score_column], cfg, at))
    return _queries(ds, where, cfg, at)


def _scores(values, cfg: EmbeddingData, at) -> list[float]:
    low, high = cfg.score_range
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if _missing(value) or math.isnan(number):
            raise DataError(f"{at(i)}: score {value!r} ('{cfg.score_column}') is not a number.",
                            "Give every row a numeric score.")
        if not low <= number <= high:
            raise DataError(f"{at(i)}: score {number:g} ('{cfg.score_column}') is outside data.score_range "
                            f"[{low:g}, {high:g}].", "Fix the row, or set data.score_range to the scores' range.")
        out.append(number)
    return out


def _ids(value) -> list[str]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()
            for v in values if not _missing(v) and str(v).strip()]


def _queries(ds, where: str, cfg: EmbeddingData, at) -> EmbeddingSplit:
    from llmctl.data.sources import load_split

    columns = list(ds.column_names)
    _need(columns, [("data.query_column", cfg.query_column), ("data.relevant_column", cfg.relevant_column)], where)
    corpus, corpus_where = load_split(cfg.corpus, "data.corpus", None, None)

    def corpus_at(i: int) -> str:
        return row_location(corpus_where, i, True)

    _need(list(corpus.column_names), [("data.corpus_id_column", cfg.corpus_id_column),
                                      ("data.corpus_text_column", cfg.corpus_text_column)], corpus_where)
    documents = _texts(corpus, cfg.corpus_text_column, corpus_at)
    index: dict[str, int] = {}
    for i, value in enumerate(corpus[cfg.corpus_id_column]):
        ids = _ids(value)
        if len(ids) != 1:
            raise DataError(f"{corpus_at(i)}: the document id ('{cfg.corpus_id_column}') is empty.", "Give every document an id.")
        if ids[0] in index:
            raise DataError(f"{corpus_at(i)}: document id '{ids[0]}' repeats {corpus_at(index[ids[0]])}.",
                            "Give every document its own id.")
        index[ids[0]] = i
    queries = _texts(ds, cfg.query_column, at)
    relevant = []
    for i, value in enumerate(ds[cfg.relevant_column]):
        ids = _ids(value)
        if not ids:
            raise DataError(f"{at(i)}: no relevant id ('{cfg.relevant_column}').", "Give each query at least one relevant corpus id.")
        unknown = [x for x in ids if x not in index]
        if unknown:
            raise DataError(f"{at(i)}: relevant id '{unknown[0]}' is not in data.corpus {corpus_where}.",
                            f"Fix the id, or add that document to the corpus (column '{cfg.corpus_id_column}').")
        relevant.append({index[x] for x in ids})
    return EmbeddingSplit(where, "queries", [[q] for q in queries] + [[d] for d in documents],
                          relevant=relevant, queries=len(queries))
