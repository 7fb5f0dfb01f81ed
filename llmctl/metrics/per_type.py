"""Per-type scores inside a flat metrics dict: seqeval's `PER_precision, PER_recall, PER_f1,
PER_number` keys (NER) grouped into one table row per entity type. The console's tables and the
HTML report both show them this way."""

from __future__ import annotations

PER_TYPE_FIELDS = ("precision", "recall", "f1", "number")


def split_per_type(metrics: dict) -> tuple[dict, dict]:
    """Split `PER_precision, PER_recall, PER_f1, PER_number` style keys (NER) into a per-type
    table {type: {precision, recall, f1, number}}; everything else stays overall."""
    kinds = [k[: -len("_number")] for k in metrics if k.endswith("_number")]
    kinds = [t for t in kinds if all(f"{t}_{f}" in metrics for f in PER_TYPE_FIELDS)]
    grouped = {f"{t}_{f}" for t in kinds for f in PER_TYPE_FIELDS}
    overall = {k: v for k, v in metrics.items() if k not in grouped}
    return overall, {t: {f: metrics[f"{t}_{f}"] for f in PER_TYPE_FIELDS} for t in kinds}
