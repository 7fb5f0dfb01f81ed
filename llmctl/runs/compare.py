"""The parts of `llmctl runs compare BASE CANDIDATE` (llmctl.core.runs): what differs between two runs,
metric by metric, and what counts as a drop for the --max-drop gate.

A "drop" is a move in the worse direction: a fall for accuracy / f1 / rouge, a rise for the
lower-is-better metrics of llmctl.metrics.lower_is_better (loss, perplexity, mse, ...).
"""

from __future__ import annotations

from pathlib import Path

from llmctl.runs import view
from llmctl.errors import UsageError

# Recipe keys that differ between any two runs without changing what they trained.
NOT_A_DIFFERENCE = {"output_dir"}
SPLITS = ("train", "validation", "test")


def read_side(run: Path) -> dict:
    state = view.status(run)
    recipe, meta = view.read_recipe(run), view.read_task_meta(run)
    evals = view.evaluations(run)
    return {"path": str(run), "name": run.name, "status": state, "task": recipe.get("task") or (meta or {}).get("task"),
            "recipe": recipe, "meta": meta, "environment": view.read_json(run / "environment.json") or {},
            "metrics": view.final_metrics(run, state), "latest_eval": evals[-1] if evals else None,
            "pid": view.lock_pid(run)}


def public_fields(side: dict) -> dict:
    return {k: side[k] for k in ("path", "name", "task", "status", "latest_eval")}


def unfinished(side: dict) -> str:
    if side["status"] == view.RUNNING:
        return f"still running (run.lock held by pid {side['pid']}): no final metrics yet"
    return "interrupted: no metrics.json (resume it with `llmctl finetune --resume`)"


def check_gate_names(max_drop: dict, base: dict, cand: dict) -> None:
    shared = [name for name in base if name in cand]
    for name in max_drop:
        if name not in shared:
            lacking = " and ".join(label for label, m in (("the base", base), ("the candidate", cand)) if name not in m)
            raise UsageError(f"--max-drop {name}: no final metric '{name}' in {lacking}; "
                             f"both runs have {', '.join(shared) or 'no metrics in common'}.",
                             "Gate on one of those names.")


def metric_deltas(base: dict, cand: dict) -> dict:
    from llmctl.metrics import lower_is_better

    names = list(base) + [n for n in cand if n not in base]
    return {name: {"base": base.get(name), "candidate": cand.get(name),
                   "delta": cand[name] - base[name] if name in base and name in cand else None,
                   "lower_is_better": lower_is_better(name.removeprefix("test."))}
            for name in names}


def dropped(name: str, row: dict, amount: float) -> str | None:
    """The failure line when the candidate is worse than the base by more than `amount`."""
    b, c = row["base"], row["candidate"]
    if row["lower_is_better"]:
        if c <= b + amount:
            return None
        return f"{name} rose {c - b:.4g} ({b:.4f} -> {c:.4f}; allowed {amount:g})"
    if c >= b - amount:
        return None
    return f"{name} fell {b - c:.4g} ({b:.4f} -> {c:.4f}; allowed {amount:g})"


def recipe_diff(base: dict, cand: dict) -> dict:
    from llmctl.train.fingerprint import flatten

    old, new = flatten(base), flatten(cand)
    return {key: {"base": old.get(key), "candidate": new.get(key)} for key in sorted(set(old) | set(new))
            if key not in NOT_A_DIFFERENCE and old.get(key) != new.get(key)}


def data_diff(base: Path, cand: Path, b: dict, c: dict) -> dict:
    """Per split: the training data by the fingerprint its checkpoints recorded (the tokenized
    features, so a different tokenizer or max_length counts); evaluation splits, and training
    data without a checkpoint, only by where they came from."""
    found = {}
    data_b, data_c = view.data_section(b["recipe"], b["meta"]), view.data_section(c["recipe"], c["meta"])
    for split in SPLITS:
        src_b, src_c = view.data_source(data_b, split), view.data_source(data_c, split)
        if src_b is None and src_c is None:
            continue
        found[split] = {"base": src_b, "candidate": src_c, "same": src_b == src_c, "compared": "by path only"}
        if split == "train":
            sha_b, sha_c = view.train_fingerprint(base), view.train_fingerprint(cand)
            if sha_b and sha_c:
                found[split] |= {"same": sha_b == sha_c, "compared": "by sha256 of the tokenized features",
                                 "sha256": {"base": sha_b, "candidate": sha_c}}
    return found


def version_diff(base: dict, cand: dict) -> dict:
    old = (base.get("packages") or {}) | {"python": base.get("python"), "llmctl git sha": base.get("git_sha")}
    new = (cand.get("packages") or {}) | {"python": cand.get("python"), "llmctl git sha": cand.get("git_sha")}
    return {name: {"base": old.get(name), "candidate": new.get(name)} for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)}
