"""`llmctl runs list | show | compare` as functions: read run directories back, no torch imported.

    found, skipped = list_runs_in("runs")
    result = compare("runs/a", "runs/b", parse_max_drop(["f1=0.005"]));  gate(result)   # exit 4 on a drop
"""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import GateFailed, UsageError
from llmctl.runs import compare as cmp, view


def list_runs_in(directory: str) -> tuple[list[dict], list[str]]:
    """(one row per run, the lines about what was skipped) for the run directories in `directory`."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UsageError(f"{directory}: no such directory.", "Pass the folder your runs are in (default: runs/).")
    return view.list_runs(root)


def show(run: str) -> dict:
    """One run in detail (llmctl.runs.view.detail)."""
    return view.detail(view.require_run(run))


def parse_max_drop(items: list[str]) -> dict[str, float]:
    """`f1=0.005` -> {"f1": 0.005}, in the style of eval's --fail-under; the amount is >= 0."""
    from llmctl.metrics.thresholds import parse_thresholds

    drops = parse_thresholds(items, "--max-drop", "f1=0.005")
    for name, amount in drops.items():
        if amount < 0:
            raise UsageError(f"--max-drop {name}={amount:g}: the allowed drop cannot be negative.",
                             f"Use 0 to allow no drop at all, e.g. --max-drop {name}=0.")
    return drops


def compare(base_path: str, candidate_path: str, max_drop: dict[str, float]) -> dict:
    """Everything the command shows, as one dict; raises UsageError for what cannot be compared."""
    base, cand = view.require_run(base_path), view.require_run(candidate_path)
    runs = {"base": cmp.read_side(base), "candidate": cmp.read_side(cand)}
    b, c = runs["base"], runs["candidate"]
    if b["task"] != c["task"]:
        raise UsageError(f"Cannot compare runs of different tasks: {base_path} is {b['task']}, "
                         f"{candidate_path} is {c['task']}.", "Compare two runs of the same task.")
    missing = [f"{side['path']} is {cmp.unfinished(side)}" for side in (b, c) if side["metrics"] is None]
    if max_drop and missing:
        raise UsageError(f"--max-drop needs the final metrics of both runs, and {'; '.join(missing)}.",
                         "Gate once both runs have finished (metrics.json written, run.lock released).")
    metrics = cmp.metric_deltas(b["metrics"], c["metrics"]) if not missing else {}
    if max_drop:
        cmp.check_gate_names(max_drop, b["metrics"], c["metrics"])
    failed = [line for name, amount in max_drop.items() if (line := cmp.dropped(name, metrics[name], amount))]
    return {
        "base": cmp.public_fields(b), "candidate": cmp.public_fields(c),
        "differences": {"recipe": cmp.recipe_diff(b["recipe"], c["recipe"]), "data": cmp.data_diff(base, cand, b, c),
                        "versions": cmp.version_diff(b["environment"], c["environment"])},
        "metrics": metrics, "missing_final_metrics": missing,
        "gate": {"passed": not failed, "max_drop": max_drop, "failed": failed},
    }


def gate(result: dict) -> None:
    """Exit with the quality-gate code when a --max-drop limit was exceeded."""
    failed = result["gate"]["failed"]
    if failed:
        raise GateFailed(f"Regression gate failed ({result['candidate']['path']} against {result['base']['path']}): "
                         + "; ".join(failed) + ".")


