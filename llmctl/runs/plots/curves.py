"""curves.png: how the run went, one small panel per quantity, against the optimizer step."""

from __future__ import annotations

import math

# Counts and thresholds that evaluation also reports (entity counts, SQuAD v2's totals and best
# thresholds): constant or not a score, so not worth a panel.
_NOT_CURVES = ("_number", "_total", "_thresh")
_COUNTS = ("total",)
# SQuAD v2's scores at the best no-answer threshold (best_exact, best_f1): tuned on the very rows they
# score, so not a curve to follow, and not a group beside HasAns / NoAns either.
_NOT_CURVE_PREFIXES = ("best_",)
# Another name for a metric drawn already: SQuAD v2's `exact` is `exact_match` (the v1 name, kept for
# gates and metric_for_best), so it gets no second panel.
_ALIASES = {"exact": "exact_match"}
_MAX_PANELS = 12
_BEST = dict(color="0.45", linestyle="--", linewidth=1)


def draw_curves(train_log: list[dict], evals: list[dict], best_step: int | None, metric_for_best: str | None):
    """A Figure, or None when nothing has been logged yet."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not train_log and not evals:
        return None
    if not evals:
        best_step = None  # without evaluations the saved model is just the last one
    panels = _metric_panels(evals, metric_for_best)
    count = min(2 + len(panels), _MAX_PANELS)
    cols = 2 if count <= 4 else 3
    rows = math.ceil(count / cols)
    # Fixed margins rather than a layout engine: constrained layout lays the figure out several
    # times and costs a second or more per evaluation on a many-panel figure.
    height = 3.1 * rows + 0.8
    figure = Figure(figsize=(5.2 * cols, height))
    figure.subplots_adjust(left=0.07 if cols == 2 else 0.05, right=0.98, top=1 - 0.8 / height,
                           bottom=0.4 / height, hspace=0.42, wspace=0.22)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for spare in axes[count:]:
        spare.set_visible(False)

    loss = axes[0]
    if train_log:
        loss.plot(_steps(train_log), [r["loss"] for r in train_log], label="training", color="tab:blue")
    with_loss = [r for r in evals if "loss" in r]
    if with_loss:
        loss.plot(_steps(with_loss), [r["loss"] for r in with_loss], "o-", label="evaluation", color="tab:orange")
    loss.set_title("loss")
    rate = axes[1]
    if train_log:
        rate.plot(_steps(train_log), [r["learning_rate"] for r in train_log], color="tab:green")
    rate.set_title("learning rate")
    rate.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))

    for ax, (title, names) in zip(axes[2:count], panels):
        for name in names:
            points = [r for r in evals if isinstance(r.get(name), (int, float))]
            label = name.rsplit("_", 1)[0] if len(names) > 1 else None
            ax.plot(_steps(points), [r[name] for r in points], "o-", label=label)
            if name == metric_for_best and best_step is not None:
                at = [r[name] for r in points if r["step"] == best_step]
                if at:
                    ax.plot([best_step], at, "*", color="crimson", markersize=14, zorder=3)
        ax.set_title(f"{title} (best: {metric_for_best})" if title == metric_for_best else title)

    steps = _steps(train_log + evals)
    span = max(1, max(steps) - min(steps))
    for ax in axes[:count]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
        ax.set_xlim(min(steps) - 0.03 * span, max(steps) + 0.03 * span)  # one step axis for every panel
        if best_step is not None:
            ax.axvline(best_step, label=f"saved model (step {best_step})" if ax is loss else None, **_BEST)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    figure.suptitle(_headline(train_log, evals) + "; x axis: optimizer step")
    return figure


def _steps(records: list[dict]) -> list[int]:
    return [r["step"] for r in records]


def _metric_panels(evals: list[dict], metric_for_best: str | None) -> list[tuple[str, list[str]]]:
    """(title, metric names) per panel: one metric each, except families that share a suffix
    (PER_f1, LOC_f1, ...; HasAns_exact, NoAns_exact), drawn together as one panel per suffix.
    The metric that picks the best model comes first."""
    names = []
    for record in evals:
        for name, value in record.items():
            if (name not in ("step", "epoch", "loss", *_COUNTS) and name not in names
                    and isinstance(value, (int, float)) and not name.endswith(_NOT_CURVES)
                    and not name.startswith(_NOT_CURVE_PREFIXES) and not _alias(name, evals)):
                names.append(name)
    suffixes = {}
    for name in names:
        if "_" in name:
            suffixes.setdefault(name.rsplit("_", 1)[1], []).append(name)
    panels, grouped = [], set()
    for name in names:
        if name in grouped:
            continue
        family = suffixes.get(name.rsplit("_", 1)[1], []) if "_" in name else []
        if len(family) > 1 and name != metric_for_best:
            members = [n for n in family if n != metric_for_best]
            panels.append((f"{name.rsplit('_', 1)[1]}, per group", members))
            grouped.update(members)
        else:
            panels.append((name, [name]))
            grouped.add(name)
    panels.sort(key=lambda panel: panel[1] != [metric_for_best])
    return panels[: _MAX_PANELS - 2]


def _alias(name: str, evals: list[dict]) -> bool:
    """Whether `name` only repeats the metric it is another name for, at every evaluation."""
    other = _ALIASES.get(name)
    return other is not None and all(record.get(name) == record.get(other) for record in evals)


def _headline(train_log: list[dict], evals: list[dict]) -> str:
    last = max([r["step"] for r in train_log + evals], default=0)
    return f"training curves up to step {last} ({len(evals)} evaluation{'s' if len(evals) != 1 else ''})"
