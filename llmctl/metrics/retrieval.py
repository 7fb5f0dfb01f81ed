"""Retrieval metrics over a query x corpus similarity matrix (numpy only), as sentence-transformers'
InformationRetrievalEvaluator computes them: binary relevance, the top k documents by score.

    mrr_at_10     mean over queries of 1 / rank of the first relevant document in the top 10 (0 if none)
    recall_at_k   mean over queries of (relevant documents in the top k) / (relevant documents)
    ndcg_at_10    mean over queries of DCG@10 / ideal DCG@10, gain 1 / log2(rank + 1)
"""

from __future__ import annotations


def retrieval_metrics(scores, relevant: list[set[int]], ks=(1, 10)) -> dict[str, float]:
    """`scores`: [queries, documents]; `relevant[q]`: the indices of query q's relevant documents."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    depth = min(max(max(ks), 10), scores.shape[1])
    # stable order on ties: the lower document index first
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    mrr, ndcg, recall = [], [], {k: [] for k in ks}
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    for q, wanted in enumerate(relevant):
        hits = np.array([doc in wanted for doc in top[q]], dtype=bool)
        first = np.flatnonzero(hits[:10])
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        for k in ks:
            recall[k].append(hits[:k].sum() / len(wanted))
        dcg = float((hits[:10] * discounts[:10][:len(hits[:10])]).sum())
        ideal = float(discounts[:min(len(wanted), 10, depth)].sum())
        ndcg.append(dcg / ideal if ideal else 0.0)
    out = {"mrr_at_10": float(np.mean(mrr)), "ndcg_at_10": float(np.mean(ndcg))}
    out |= {f"recall_at_{k}": float(np.mean(v)) for k, v in recall.items()}
    return out


def cosine_matrix(a, b):
    """[len(a), len(b)] cosine similarities of two sets of vectors."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return a @ b.T
