"""What the saved model gets wrong: its predictions on the validation split, scored row by row.

The model runs through `llmctl.core.prediction.predict` (on CPU, the first `max_examples`
validation rows), and each task's rows are compared with their gold labels here:
classification ranks by the probability given to the gold label, NER by each sentence's
entity F1, QA by each question's answer F1. The same comparison gives per-class (per-entity,
answerable/unanswerable) scores for runs whose evaluation wrote no diagnostics.json.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Worst:
    """`rows`: worst first, each {"text", "gold", "predicted", "score"}; `score_name` says what the
    score is; `per_class`: name -> {precision, recall, f1, support} (or the task's own columns)."""

    task: str
    where: str
    examples: int
    score_name: str
    rows: list[dict]
    per_class: dict[str, dict] = field(default_factory=dict)


SUPPORTED = ("classification", "ner", "qa")


def worst_predictions(run_dir: Path, max_examples: int, limit: int = 10) -> Worst:
    """Run the run's saved model over its validation split; LlmctlError when that cannot be done."""
    from llmctl.core.prediction import predict
    from llmctl.models.quiet import quiet_libraries
    from llmctl.tasks.restore import task_for_model
    from llmctl.errors import UsageError
    from llmctl.models.saved import find_model_dir

    model_dir = find_model_dir(str(run_dir))
    quiet_libraries()
    task, _ = task_for_model(model_dir)
    if task.name not in SUPPORTED:
        raise UsageError(f"worst predictions are not computed for task {task.name} (only {', '.join(SUPPORTED)}).")
    spec = task.data_cfg.validation
    if not spec:
        raise UsageError("the run has no validation split (data.validation), so there is nothing to compare with.")
    # The rows the run's metrics were computed on (data.max_eval_samples), at most max_examples of them,
    # so the per-class table and the metrics agree on the same rows.
    run_limit = task.data_cfg.max_eval_samples
    limit = min(max_examples, run_limit) if run_limit else max_examples
    task = task.with_data(task.data_cfg.model_copy(update={"max_eval_samples": limit}))
    split = task.load_split("validation", spec)
    rows = _rows_for(task, split)
    predicted = predict(str(run_dir), rows, split.where, device="cpu")
    score = {"classification": _classification, "ner": _ner, "qa": _qa}[task.name]
    return score(task, split, predicted, limit)


def _rows_for(task, split) -> list[dict]:
    """The validation rows as `predict` input rows (the gold labels stay in `split`)."""
    if task.name == "classification":
        columns = task.data_cfg.text_columns
        return [{column: split.texts[k][i] for k, column in enumerate(columns)} for i in range(len(split))]
    if task.name == "ner":
        return [{"tokens": words} for words in split.tokens]
    return [{"id": i, "question": q, "context": c} for i, q, c in zip(split.ids, split.questions, split.contexts)]


def _classification(task, split, predicted: list[dict], limit: int) -> Worst:
    from llmctl.tasks.classification_data import encode_labels

    gold_ids = encode_labels(split.labels, task.labels, split.where, split.has_header)
    scored = []
    for i, (gold_id, p) in enumerate(zip(gold_ids, predicted)):
        text = " || ".join(texts[i] for texts in split.texts)
        if task.labels.regression:
            error = abs(p["prediction"] - float(gold_id))
            scored.append((-error, {"text": text, "gold": f"{float(gold_id):g}", "predicted": f"{p['prediction']:.4g}",
                                    "score": round(error, 4)}))
            continue
        gold = task.labels.names[gold_id]
        probability = p["scores"][gold]
        scored.append((probability, {"text": text, "gold": gold, "predicted": f"{p['label']} ({p['score']:.3f})",
                                     "score": round(probability, 4)}))
    scored.sort(key=lambda pair: pair[0])
    per_class = {} if task.labels.regression else _per_class(
        [task.labels.names[g] for g in gold_ids], [p["label"] for p in predicted], task.labels.names)
    name = "absolute error" if task.labels.regression else "gold-label probability"
    return Worst("classification", split.where, len(split), name, [row for _, row in scored[:limit]], per_class)


def _per_class(gold: list[str], predicted: list[str], names) -> dict[str, dict]:
    """Precision, recall, F1 and support of each label, in the model's label order."""
    out = {}
    for name in names:
        hits = sum(g == p == name for g, p in zip(gold, predicted))
        out[name] = _prf(hits, predicted.count(name), gold.count(name))
    return out


def _prf(hits: int, guessed: int, support: int) -> dict:
    precision = hits / guessed if guessed else 0.0
    recall = hits / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": support}


def _ner(task, split, predicted: list[dict], limit: int) -> Worst:
    from llmctl.tasks.ner_utils import entities

    scored, hits, guessed, support = [], Counter(), Counter(), Counter()
    for words, tags, p in zip(split.tokens, split.tags, predicted):
        gold, found = set(entities(tags)), set(entities(p["tags"]))
        for kind, *_ in gold:
            support[kind] += 1
        for kind, *_ in found:
            guessed[kind] += 1
        for kind, *_ in gold & found:
            hits[kind] += 1
        if not gold and not found:
            continue  # nothing to find and nothing found: a perfect sentence
        both = len(gold & found)
        f1 = 2 * both / (len(gold) + len(found))
        scored.append((f1, {"text": " ".join(words), "gold": _spans(words, gold), "predicted": _spans(words, found),
                            "score": round(f1, 4)}))
    scored.sort(key=lambda pair: pair[0])
    per_entity = {kind: _prf(hits[kind], guessed[kind], support[kind]) for kind in sorted(support | guessed)}
    return Worst("ner", split.where, len(split), "sentence entity F1", [row for _, row in scored[:limit]], per_entity)


def _spans(words: list[str], found: set) -> str:
    return "; ".join(f"{kind}: {' '.join(words[a:b])}" for kind, a, b in sorted(found, key=lambda e: e[1])) or "(none)"


def _qa(task, split, predicted: list[dict], limit: int) -> Worst:
    from llmctl.metrics.squad.squad import exact_match_score, f1_score

    scored, groups = [], {}
    for question, answers, p in zip(split.questions, split.answers, predicted):
        golds = [text for text, _ in answers]
        if golds:
            f1 = float(max(f1_score(p["answer"], g) for g in golds))
            exact = max(float(exact_match_score(p["answer"], g)) for g in golds)
        else:  # unanswerable: right only when the model declines to answer
            f1 = exact = float(p["answer"] == "")
        groups.setdefault("answerable" if golds else "unanswerable", []).append((f1, exact))
        scored.append((f1, {"text": question, "gold": " | ".join(golds) or "(no answer)",
                            "predicted": f"{p['answer'] or '(no answer)'} ({p['score']:.3f})", "score": round(f1, 4)}))
    scored.sort(key=lambda pair: pair[0])
    per_group = {name: {"f1": round(100 * sum(f for f, _ in v) / len(v), 2),
                        "exact_match": round(100 * sum(e for _, e in v) / len(v), 2), "support": len(v)}
                 for name, v in sorted(groups.items())}
    return Worst("qa", split.where, len(split), "answer F1", [row for _, row in scored[:limit]], per_group)
