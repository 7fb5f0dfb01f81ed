"""Reading run directories back for `llmctl runs list / show / compare`.

Only reads: a run that is still being written is never disturbed (its lock is probed, not
held), and a file it has not written yet, or a metrics.jsonl line it is halfway through,
is simply not there yet. Imports no torch, so listing a hundred runs is instant. Every file
is read through llmctl.runs.files (regular files inside the run, size limits, shapes checked):
a malformed one is a BadRunFile naming it, which `list_runs` turns into a skipped run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from llmctl.runs import files as run_files
from llmctl.errors import UsageError
from llmctl.runs.files import BadRunFile
from llmctl.runs.directory import OUR_FILES, complete_checkpoints, lock_held
from llmctl.models.saved import MODEL_DIR
from llmctl.models.saved import TASK_FILE

FINISHED, INTERRUPTED, RUNNING = "finished", "interrupted", "running"


def is_run(path: Path) -> bool:
    """A directory holding what an llmctl run writes; a lone unheld run.lock (a start that
    failed before writing anything) does not count, a held one does (a run just starting)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if names & (OUR_FILES - {"run.lock"}):
        return True
    return "run.lock" in names and lock_held(path)


def require_run(path: str | Path) -> Path:
    run = Path(path).expanduser()
    if not run.exists():
        raise UsageError(f"{path}: no such run directory.", "Pass a directory made by `llmctl finetune`.")
    if not is_run(run):
        raise UsageError(f"{path} is not an llmctl run directory (no recipe.yaml, environment.json, metrics.json "
                         "or checkpoints/).", "Pass a directory made by `llmctl finetune` (see `llmctl runs list`).")
    run_files.check_run(run)
    return run


def status(run: Path) -> str:
    if lock_held(run):
        return RUNNING
    return FINISHED if (run / "metrics.json").is_file() else INTERRUPTED


def read_json(path: Path, root: Path | None = None) -> dict | None:
    """A run's JSON file checked for the shape llmctl writes; None when absent, BadRunFile when
    malformed. `root`: the run it must lie inside (default: the folder holding it)."""
    return run_files.read_json(path, root=root or path.parent)


def read_recipe(run: Path) -> dict:
    return run_files.read_yaml(run / "recipe.yaml", root=run) or {}


def read_task_meta(run: Path) -> dict | None:
    return run_files.read_json(run / MODEL_DIR / TASK_FILE, root=run)


def evaluations(run: Path) -> list[dict]:
    """metrics.jsonl, one dict per evaluation; a line being written right now is left out."""
    raw = run_files.read_bytes(run / "metrics.jsonl", run_files.MAX_JSON_BYTES, run)
    lines = raw.decode("utf-8", errors="replace").splitlines() if raw is not None else []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def final_metrics(run: Path, state: str | None = None) -> dict | None:
    """The saved model's metrics (validation, then `test.NAME` for the test split) of a finished
    run; None while it runs or when it never finished."""
    if (state or status(run)) != FINISHED:
        return None
    result = read_json(run / "metrics.json") or {}
    metrics = {k: v for k, v in (result.get("metrics") or {}).items() if _number(v)}
    metrics |= {f"test.{k}": v for k, v in (result.get("test_metrics") or {}).items() if _number(v)}
    return metrics


def best_metric_name(recipe: dict, task_meta: dict | None) -> str | None:
    """train.metric_for_best, else the task's default (what the training loop used)."""
    wanted = (recipe.get("train") or {}).get("metric_for_best")
    if wanted:
        return wanted
    from llmctl.tasks import TASKS
    from llmctl.tasks.base import Labels

    task = TASKS.get(recipe.get("task") or (task_meta or {}).get("task"))
    if task is None:
        return None
    try:
        data = task.data_config.model_validate(recipe.get("data") or (task_meta or {}).get("data") or {})
    except ValueError:
        return None
    return task(data, Labels(regression=bool((task_meta or {}).get("regression")))).default_metric()


def best(run: Path, recipe: dict, task_meta: dict | None, final: dict | None) -> dict | None:
    """{"name", "value", "step"}: the saved model's value when finished, else the best
    evaluation logged so far."""
    from llmctl.metrics import lower_is_better

    name = best_metric_name(recipe, task_meta)
    if name is None:
        return None
    if final is not None and name in final:
        return {"name": name, "value": final[name], "step": (read_json(run / "metrics.json") or {}).get("best_step")}
    logged = [e for e in evaluations(run) if _number(e.get(name))]
    if not logged:
        return None
    greater = (recipe.get("train") or {}).get("greater_is_better")
    greater = (not lower_is_better(name)) if greater is None else greater
    top = (max if greater else min)(logged, key=lambda e: e[name])
    return {"name": name, "value": top[name], "step": top.get("step")}


def data_source(data: dict, split: str) -> str | None:
    """Where a split came from: `DATASET[:CONFIG]:SPLIT` for hub data, else the file."""
    spec = data.get(split)
    if spec is None:
        return None
    from llmctl.data.sources import looks_like_file

    if data.get("dataset") and not looks_like_file(str(spec)):
        return f"{data['dataset']}{':' + data['config'] if data.get('config') else ''}:{spec}"
    return str(spec)


def summary(run: Path) -> dict:
    """One row of `llmctl runs list`; BadRunFile when any of the run's files is malformed (the
    same check show / compare / report / eval make, so a run lists only if they can read it)."""
    run_files.check_run(run)
    state = status(run)
    recipe, meta = read_recipe(run), read_task_meta(run)
    data = data_section(recipe, meta)
    started, ended = _mtime(run / "environment.json"), _mtime(run / "metrics.json") if state == FINISHED else None
    row = {"name": run.name, "path": str(run), "task": recipe.get("task") or (meta or {}).get("task"),
           "model": model_label(recipe), "data": data_source(data, "train"),
           "best": best(run, recipe, meta, final_metrics(run, state)), "status": state,
           "started": started, "finished": ended}
    if state == RUNNING:
        row["pid"] = lock_pid(run)
    return row


def detail(run: Path) -> dict:
    """Everything `llmctl runs show` prints."""
    state = status(run)
    recipe, meta = read_recipe(run), read_task_meta(run)
    return summary(run) | {
        "recipe": recipe, "environment": read_json(run / "environment.json"),
        "final": read_json(run / "metrics.json") if state == FINISHED else None,
        "evaluations": evaluations(run), "model_dir": _model(run, meta), "checkpoints": checkpoints(run)}


def list_runs(root: Path) -> tuple[list[dict], list[str]]:
    """(one row per run, a warning per run skipped): one malformed run must not hide the others."""
    rows, skipped = [], []
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        if not is_run(path):
            continue
        try:
            rows.append(summary(path))
        except BadRunFile as exc:
            skipped.append(f"skipped run {path}: {exc}")
    return rows, skipped


def checkpoints(run: Path) -> list[dict]:
    """Every checkpoint folder; an incomplete one (no manifest: a save that was cut off) is
    listed as such, since --resume skips it."""
    root = run / "checkpoints"
    if not root.is_dir():
        return []
    complete = set(complete_checkpoints(root))
    return [{"name": p.name, "complete": p in complete, "bytes": _size(p)}
            for p in sorted(root.iterdir()) if p.is_dir()]


def train_fingerprint(run: Path) -> str | None:
    """sha256 of the tokenized training features, as the newest complete checkpoint recorded it
    (the fingerprint that --resume checks)."""
    found = complete_checkpoints(run / "checkpoints")
    loop = run_files.read_json(found[-1] / "loop.json", root=run) if found else None
    return ((loop or {}).get("fingerprint") or {}).get("data_sha256")


def _model(run: Path, meta: dict | None) -> dict | None:
    from llmctl.models.adapters import is_adapter_dir

    folder = run / MODEL_DIR
    if not folder.is_dir():
        return None
    return {"path": str(folder), "kind": "adapter" if is_adapter_dir(folder) else "full",
            "bytes": _size(folder), "saved_at": (meta or {}).get("saved_at")}


def model_label(recipe: dict) -> str | None:
    """The model a run's recipe names: its name_or_path, or "new gpt2" for one pre-trained from model.config."""
    model = recipe.get("model") or {}
    if model.get("name_or_path") or not model.get("config"):
        return model.get("name_or_path")
    config = model["config"]
    return f"new {config.get('model_type', '?')}" if isinstance(config, dict) else f"new, from {config}"


def data_section(recipe: dict, meta: dict | None) -> dict:
    """The recipe's data section, with the absolute file paths the saved model recorded (a
    recipe's relative paths meant the directory the run was started from)."""
    data = dict(recipe.get("data") or {})
    saved = (meta or {}).get("data") or {}
    for split in ("train", "validation", "test"):
        if saved.get(split) is not None and data.get(split) is not None:
            data[split] = saved[split]
    return data


def _number(value) -> bool:
    # inf and nan stay: a perplexity of inf is a result, and a gate must see it to fail it.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mtime(path: Path) -> str | None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="seconds")


def lock_pid(run: Path) -> int | None:
    try:
        return int(run_files.read_bytes(run / "run.lock", 64, run) or b"")
    except (BadRunFile, ValueError):
        return None


def _size(path: Path) -> int:
    # lstat: a link to a big file outside the run is not the run's size, and a linked folder
    # (checkpoints/step-1 -> /) is not walked at all
    if path.is_symlink():
        return 0
    return sum(f.lstat().st_size for f in path.rglob("*") if run_files.regular_file(f))
