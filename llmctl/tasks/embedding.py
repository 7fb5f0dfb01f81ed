"""Sentence embeddings by contrastive fine-tuning (`task: embedding`): a transformers body
(AutoModel: a BERT-family encoder, or a decoder LM read at its last token) pooled into one vector
per text, trained with

- mnrl: multiple-negatives ranking loss (InfoNCE): each anchor's cosine with every positive (and
  hard negative) of the batch, times `scale`, is a softmax over which one is its own positive;
- cosent: log(1 + sum over pairs (i, j) with score_i < score_j of exp(scale * (cos_i - cos_j)));
- cosine: mean squared error between a pair's cosine and its score scaled to 0..1,

each as sentence-transformers defines it (MultipleNegativesRankingLoss, CoSENTLoss,
CosineSimilarityLoss). Evaluation: Spearman / Pearson of the cosine on scored pairs, MRR@10,
recall@1/10 and nDCG@10 on retrieval (llmctl.tasks.embedding_data: the split shapes). The run's
model/ is also a sentence-transformers model (llmctl.models.sentence writes its module files).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split
from llmctl.errors import UsageError
from llmctl.tasks import generative as gen
from llmctl.tasks.base import Labels, Task
from llmctl.tasks.embedding_data import EmbeddingData, EmbeddingSplit, read_split

RETRIEVAL_METRICS = ["mrr_at_10", "recall_at_1", "recall_at_10", "ndcg_at_10"]


# -- the losses, on pooled vectors (a hand computation in the tests checks each) ---------------
def _cos(a, b):
    import torch

    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def mnrl_loss(anchors, candidates, scale: float):
    """anchors [B, d]; candidates [B * k, d]: the positives first (row i belongs to anchor i), then hard negatives."""
    import torch

    logits = _cos(anchors, candidates) * scale
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))


def cosent_loss(first, second, scores, scale: float):
    import torch

    cos = torch.nn.functional.cosine_similarity(first, second, dim=-1) * scale
    diff = cos[:, None] - cos[None, :]
    diff = diff - (1 - (scores[:, None] < scores[None, :]).to(diff.dtype)) * 1e12
    return torch.logsumexp(torch.cat([torch.zeros(1, dtype=diff.dtype, device=diff.device), diff.view(-1)]), dim=0)


def cosine_loss(first, second, targets):
    import torch

    cos = torch.nn.functional.cosine_similarity(first, second, dim=-1)
    return torch.nn.functional.mse_loss(cos, targets.to(cos.dtype))


class EmbeddingTask(Task):
    name: ClassVar[str] = "embedding"
    data_config: ClassVar[type[DataConfig]] = EmbeddingData
    auto_model: ClassVar[str] = "AutoModel"

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "EmbeddingTask":
        return cls(EmbeddingData.model_validate(meta["data"])).for_model(model_config)

    def for_model(self, model_config) -> "EmbeddingTask":
        """Pooling and normalising settled once the checkpoint is known (its sentence-transformers
        modules, else last-token for a decoder LM, mean otherwise), so the run records them."""
        from llmctl.models.sentence import default_pooling

        cfg = self.data_cfg
        if cfg.pooling is not None and cfg.normalize is not None:
            return self
        pooling, normalize = default_pooling(getattr(model_config, "name_or_path", "") or "", model_config)
        update = {"pooling": cfg.pooling or pooling, "normalize": cfg.normalize if cfg.normalize is not None else normalize}
        return self._replaced(data_cfg=cfg.model_copy(update=update))

    def check_model(self, model_cfg):
        from llmctl.models.load import load_config
        from llmctl.models.sentence import check_encoder

        check_encoder(load_config(model_cfg), model_cfg.name_or_path)
        return ()

    def model_kwargs(self) -> dict:
        return {}

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> EmbeddingSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names)
        ds = gen.limit_rows(ds, self.row_limit(role), key, where)
        return read_split(ds, where, cfg, role, header=cfg.column_names is None)

    def predict_split(self, rows: list[dict], where: str):
        raise UsageError("An embedding model has no predictions to make.",
                         "Use `llmctl embed RUN_DIR --input FILE` for its vectors, or `llmctl eval RUN_DIR` for its scores.")

    # -- features and batches --------------------------------------------------------
    def featurize(self, split: EmbeddingSplit, tokenizer, progress=None):
        from llmctl.data.features import Features

        n = len(split.texts[0]) if len(split) else 1
        flat = [t for row in split.texts for t in row] if split.kind != "queries" else [row[0] for row in split.texts]
        ids = tokenizer(flat, truncation=True, max_length=self.data_cfg.max_length)["input_ids"]
        if split.kind == "queries":
            n = 1
        groups = [ids[k:k + n] for k in range(0, len(ids), n)]
        columns = {"input_ids": [sum(group, []) for group in groups],
                   "widths": [[len(x) for x in group] for group in groups]}
        if split.scores is not None:
            columns["score"] = list(split.scores)
        return Features(columns=columns, lengths=[len(row) for row in columns["input_ids"]])

    def collate(self, rows: list[dict], tokenizer) -> dict:
        """Every row's texts, one padded batch per position: all first texts (anchors) as
        `input_ids.0` / `attention_mask.0`, all second texts (positives) as `.1`, ... Each is padded
        to its own longest text, as sentence-transformers pads each column: a short question is
        never padded to its paragraph's length (one batch for all cost ~1.3x the tokens here)."""
        import numpy as np
        import torch

        from llmctl.data.collate import pad_sequences

        n = len(rows[0]["widths"])
        split = [np.split(np.asarray(r["input_ids"]), np.cumsum(r["widths"])[:-1]) for r in rows]
        batch = {"group_size": torch.tensor(n)}  # texts per row
        for j in range(n):
            padded, lengths = pad_sequences([split[i][j] for i in range(len(rows))], tokenizer.pad_token_id)
            mask = np.arange(padded.shape[1])[None, :] < lengths[:, None]
            batch[f"input_ids.{j}"] = torch.from_numpy(padded)
            batch[f"attention_mask.{j}"] = torch.from_numpy(mask.astype(np.int64))
        if "score" in rows[0]:
            batch["scores"] = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float32)
        batch["index"] = torch.tensor([r["index"] for r in rows])
        return batch

    def embed(self, model, inputs: dict):
        """[texts, d] pooled vectors of a collated batch, position-major (all first texts, then all
        second texts, ...), one forward per position."""
        import torch

        from llmctl.models.sentence import pool

        vectors = []
        for j in range(int(inputs["group_size"])):
            mask = inputs[f"attention_mask.{j}"]
            hidden = model(input_ids=inputs[f"input_ids.{j}"], attention_mask=mask).last_hidden_state
            vectors.append(pool(hidden.float(), mask, self.data_cfg.pooling or "mean", bool(self.data_cfg.normalize)))
        return torch.cat(vectors)

    def training_loss(self, model, inputs: dict):
        return self.contrastive_loss(model, inputs), {}

    def contrastive_loss(self, model, inputs: dict):
        cfg = self.data_cfg
        vectors = self.embed(model, inputs)
        rows = len(vectors) // int(inputs["group_size"])  # anchor, positive[, negative] or sentence1, sentence2
        groups = vectors.view(-1, rows, vectors.shape[-1])
        if cfg.loss == "mnrl":
            return mnrl_loss(groups[0], groups[1:].reshape(-1, vectors.shape[-1]), cfg.scale)
        scores = inputs["scores"]
        if cfg.loss == "cosent":
            return cosent_loss(groups[0], groups[1], scores, cfg.scale)
        low, high = cfg.score_range
        return cosine_loss(groups[0], groups[1], (scores - low) / (high - low))

    # -- evaluation -----------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        vectors = self.embed(model, inputs)
        rows = len(vectors) // int(inputs["group_size"])
        return SimpleNamespace(loss=None, embeddings=vectors.view(-1, rows, vectors.shape[-1]).transpose(0, 1))

    def outputs_to_keep(self, outputs, batch) -> dict:
        return {"embeddings": outputs.embeddings.float()}

    def compute_metrics(self, kept: dict, features, split: EmbeddingSplit) -> dict[str, float]:
        import numpy as np

        from llmctl.metrics import load
        from llmctl.metrics.retrieval import cosine_matrix, retrieval_metrics

        vectors = np.stack(kept["embeddings"]).astype(np.float64)  # [rows, texts, d]
        if split.kind == "scored":
            a, b = vectors[:, 0], vectors[:, 1]
            cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
            refs = list(split.scores)
            return {"spearman": load("spearmanr").compute(predictions=cos.tolist(), references=refs)["spearmanr"],
                    "pearson": load("pearsonr").compute(predictions=cos.tolist(), references=refs)["pearson"]}
        if split.kind == "queries":
            queries, documents = vectors[:split.queries, 0], vectors[split.queries:, 0]
            return retrieval_metrics(cosine_matrix(queries, documents), split.relevant)
        # pairs: the split's positives (and negatives), each distinct text once, are the corpus
        position: dict[str, int] = {}
        docs = []
        for i, row in enumerate(split.texts):
            for j, text in enumerate(row[1:], start=1):
                if text not in position:
                    position[text] = len(docs)
                    docs.append(vectors[i, j])
        relevant = [{position[row[1]]} for row in split.texts]
        return retrieval_metrics(cosine_matrix(vectors[:, 0], np.stack(docs)), relevant)

    def default_metric(self) -> str:
        return "ndcg_at_10" if self.data_cfg.loss == "mnrl" else "spearman"

    def metric_names(self) -> list[str] | None:
        return None  # retrieval or correlation: the evaluation split's shape decides

    # -- the saved model ---------------------------------------------------------------
    def model_files(self, model_config) -> dict[str, str]:
        from llmctl.models.sentence import sentence_transformers_files

        cfg = self.data_cfg
        return sentence_transformers_files(cfg.pooling or "mean", bool(cfg.normalize), model_config.hidden_size,
                                           cfg.max_length)

    def format_predictions(self, kept: dict, features, split) -> list[dict]:
        return [{"embedding": [float(x) for x in row[0]]} for row in kept["embeddings"]]


__all__ = ["EmbeddingTask", "Labels", "cosent_loss", "cosine_loss", "mnrl_loss"]
