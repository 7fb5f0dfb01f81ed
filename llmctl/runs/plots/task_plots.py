"""The per-task pictures, each drawn from one evaluation's Task.diagnostics (diagnostics.json)."""

from __future__ import annotations

_TOO_MANY_TO_WRITE = 25  # classes past which counts no longer fit inside the cells


def confusion_matrix(diagnostics: dict):
    from matplotlib.figure import Figure

    labels, matrix = diagnostics.get("labels"), diagnostics.get("confusion_matrix")
    if not labels or not matrix:
        return None
    n = len(labels)
    side = min(max(4.5, 0.6 * n + 2.5), 16)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8, label="examples")
    ax.set_xticks(range(n), labels=labels, rotation=45 if max(map(len, labels)) > 6 else 0, ha="right" if max(
        map(len, labels)) > 6 else "center")
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label")
    if n <= _TOO_MANY_TO_WRITE:
        top = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    right = sum(matrix[i][i] for i in range(n))
    total = sum(map(sum, matrix))
    ax.set_title(f"Confusion matrix, {_when(diagnostics)}\n{right} of {total} right ({right / max(total, 1):.1%})")
    return figure


def entity_f1(diagnostics: dict):
    from matplotlib.figure import Figure

    per_entity = diagnostics.get("per_entity")
    if not per_entity:
        return None
    kinds = sorted(per_entity, key=lambda k: per_entity[k]["f1"])
    figure = Figure(figsize=(7.5, max(3.0, 0.75 * len(kinds) + 1.6)), layout="constrained")
    ax = figure.subplots()
    height = 0.27
    for offset, (stat, color) in enumerate((("precision", "tab:blue"), ("recall", "tab:green"), ("f1", "tab:red"))):
        ys = [i + (offset - 1) * height for i in range(len(kinds))]
        bars = ax.barh(ys, [per_entity[k][stat] for k in kinds], height=height, label=stat, color=color,
                       alpha=1.0 if stat == "f1" else 0.55)
        if stat == "f1":
            ax.bar_label(bars, fmt="%.2f", padding=3, fontsize="small")
    ax.set_yticks(range(len(kinds)), labels=[f"{k}  (n={per_entity[k]['number']})" for k in kinds])
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("score (entity level)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Per-entity scores, {_when(diagnostics)}")
    return figure


def qa_answerable(diagnostics: dict):
    from matplotlib.figure import Figure

    groups = [g for g in ("answerable", "unanswerable") if g in diagnostics]
    if not groups:
        return None
    figure = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = figure.subplots()
    width = 0.36
    for offset, (stat, color) in enumerate((("exact", "tab:blue"), ("f1", "tab:orange"))):
        xs = [i + (offset - 0.5) * width for i in range(len(groups))]
        bars = ax.bar(xs, [diagnostics[g][stat] for g in groups], width=width, color=color,
                      label="exact match" if stat == "exact" else "F1")
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
    ax.set_xticks(range(len(groups)), labels=[f"{g}\n({diagnostics[g]['count']} questions)" for g in groups])
    ax.set_ylim(0, 110)
    ax.set_ylabel("score (0-100)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Answerable vs unanswerable questions, {_when(diagnostics)}")
    return figure


def _when(diagnostics: dict) -> str:
    step = diagnostics.get("step")
    return f"saved model (step {step})" if step is not None else "saved model"


DRAWERS = {"classification": confusion_matrix, "ner": entity_f1, "qa": qa_answerable}
