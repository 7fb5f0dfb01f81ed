"""The run directory: what a finished (or interrupted) run leaves behind.

    runs/<name>/recipe.yaml        the resolved recipe (after --set and flags)
               environment.json    versions, device, git sha, command line
               metrics.jsonl       one line per evaluation
               metrics.json        final metrics of the saved model + training stats
               train_log.jsonl     one line per logged training step (loss, learning rate, samples/s)
               diagnostics.json    the saved model's evaluation in detail (Task.diagnostics)
               *.png               curves.png and the task's picture (llmctl/plots)
               trackers/           TensorBoard / MLflow / W&B files (train.report_to)
               model/              best model + tokenizer (save_pretrained) + llmctl.json + README.md (the
                                   model card); a LoRA run saves the adapter + base config instead (llmctl/adapters.py)
               checkpoints/        full training state for --resume
               run.lock            held while a run writes here
               report.html         `llmctl report` (llmctl/report/)
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from llmctl import faults
from llmctl.errors import UsageError
from llmctl.files import disk_full

MODEL_DIR = "model"
TASK_FILE = "llmctl.json"
# What a run writes first (the lock, then the recipe): a directory with none of these is not ours.
OUR_FILES = {"run.lock", "recipe.yaml", "environment.json", "checkpoints", "metrics.jsonl", "metrics.json"}
# Everything a run writes; --overwrite removes these and nothing else.
RUN_ENTRIES = OUR_FILES | {MODEL_DIR, MODEL_DIR + ".partial", MODEL_DIR + ".old", "report.html"} | {
    "train_log.jsonl", "diagnostics.json", "trackers", "curves.png", "confusion_matrix.png", "entity_f1.png",
    "qa_answerable.png"}
MODES = ("fresh", "resume", "overwrite")


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_handle = None

    model = property(lambda self: self.path / MODEL_DIR)
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics_log = property(lambda self: self.path / "metrics.jsonl")

    def check(self, mode: str, force: bool = False, inputs: dict[str, Path] | None = None) -> None:
        """Every refusal about the run directory, before any data or model loads; changes nothing.

        fresh: the directory must be missing or empty; resume: see check_resume; overwrite: only a
        directory llmctl made, and never one that holds this run's own model or data (`inputs`:
        what -> path, e.g. {"model.name_or_path": Path("runs/x/model")})."""
        assert mode in MODES, mode
        if self.path.is_symlink() and not self.path.exists():  # mkdir would fail only after the model loaded
            raise UsageError(f"Output directory {self.path} is a symlink to {os.readlink(self.path)}, which does not "
                             "exist.", "Create the folder it points to, or choose another --output-dir.")
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"Output directory {self.path} is a file, not a directory.",
                             "Choose another --output-dir (or output_dir in the recipe).")
        self.ensure_free()
        if not self.entries():
            return
        if mode == "fresh":
            raise UsageError(
                f"Run directory {self.path} already exists.",
                "Pass --resume to continue it, --overwrite to replace it, or --output-dir for a new one.",
            )
        if mode == "resume":
            self.check_resume(force)
            return
        if not self.is_ours():
            raise UsageError(
                f"--overwrite: {self.path} is not an llmctl run directory (no environment.json written by llmctl), "
                "so nothing in it is removed.",
                "Choose another --output-dir; llmctl only replaces runs it made.",
            )
        root = self.path.resolve()
        for what, path in (inputs or {}).items():
            where = path.expanduser().resolve()
            if where == root or root in where.parents:
                raise UsageError(
                    f"--overwrite would delete {path}, this run's {what}, which lives inside {self.path}.",
                    "Copy it out of the run directory first, or choose another --output-dir.",
                )

    def open(self, mode: str, is_main: bool, resume_from: Path | None = None) -> None:
        """Make the directory this run's: create it, take the lock, and for overwrite remove what an
        earlier run wrote; for resume, remove partial checkpoints and forget the evaluations logged
        after `resume_from` (all of them when starting afresh), which the run redoes. Called once,
        after every check (recipe, data, model) has passed, so a failed start leaves nothing behind."""
        if not is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if mode == "overwrite":
            for child in self.path.iterdir():
                if child.name != "run.lock" and (child.name in RUN_ENTRIES or _our_temp_file(child.name)):
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if mode == "resume":
            remove_partial_checkpoints(self.checkpoints)
            step = checkpoint_step(resume_from) if resume_from is not None else 0
            self._truncate_log_after(self.metrics_log, step)
            self._truncate_log_after(self.path / "train_log.jsonl", step)

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, the one --resume continues from (reads only)."""
        complete = complete_checkpoints(self.checkpoints)
        return complete[-1] if complete else None

    def entries(self) -> set[str]:
        """What the directory holds; a lone run.lock (left by a start that failed) counts as empty."""
        if not self.path.is_dir():
            return set()
        return {p.name for p in self.path.iterdir()} - {"run.lock"}

    def is_ours(self) -> bool:
        """environment.json with llmctl's version in it: written by every run right after it starts."""
        try:
            return "llmctl" in json.loads((self.path / "environment.json").read_text()).get("packages", {})
        except (OSError, ValueError, AttributeError):
            return False

    def check_resume(self, force: bool) -> None:
        """`--resume [auto]` continues a run of ours or starts one in an empty place; it never
        retrains a finished run (unless forced) nor writes into a directory llmctl did not make."""
        names = self.entries()
        if not names:
            return
        if not names & OUR_FILES:
            raise UsageError(
                f"{self.path} is not an llmctl run directory (no recipe.yaml, checkpoints/ or run.lock).",
                "--resume will not write into it; choose another --output-dir.",
            )
        if (self.path / "metrics.json").is_file() and not force:
            raise UsageError(
                f"Run {self.path} already finished (it has metrics.json).",
                "Use --overwrite to train it again, or --output-dir for a new run.",
            )

    def ensure_free(self) -> None:
        """Refuse at once, before any data or model loads, when another llmctl process holds the lock.
        Only rank 0 probes: under torchrun the other ranks would collide with it."""
        if os.environ.get("RANK", "0") == "0" and lock_held(self.path):
            raise _busy(self.path)

    def lock(self) -> None:
        if self._lock_handle is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / "run.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _busy(self.path) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def write_json(self, name: str, data) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path / name)

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    @staticmethod
    def _truncate_log_after(log: Path, step: int) -> None:
        """Forget what a log (metrics.jsonl, train_log.jsonl) says about steps the resumed run redoes."""
        if not log.is_file():
            return
        lines = [l for l in log.read_text().splitlines() if l.strip()]
        keep = [l for l in lines if json.loads(l).get("step", 0) <= step]
        log.write_text("".join(l + "\n" for l in keep))

    def save_model(self, model, tokenizer, task_meta: dict, info: dict, state_dict: dict | None = None) -> None:
        """save_pretrained into model.partial, then swap it in: the old best survives a failed save.
        `state_dict`: the weights gathered from a sharded (FSDP) model, which holds only shards."""
        from safetensors import SafetensorError

        from llmctl.errors import TrainingError
        from llmctl.model_card import write_model_card

        partial, old = self.path / (MODEL_DIR + ".partial"), self.path / (MODEL_DIR + ".old")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            faults.hook("write", step=info.get("step", 0), name=MODEL_DIR + "/")
            if hasattr(model, "peft_config"):  # a LoRA run: the adapter (and head), not the whole model
                from llmctl.adapters import save_adapter

                save_adapter(model, partial, state_dict)
            else:
                # safetensors (the only format in transformers 5)
                model.save_pretrained(partial, **({"state_dict": state_dict} if state_dict is not None else {}))
            tokenizer.save_pretrained(partial)
            (partial / TASK_FILE).write_text(json.dumps(task_meta | {"saved_at": info}, indent=2) + "\n")
            write_model_card(self.path, partial, saved_at=info)  # rewritten with final metrics at the end
        except (OSError, SafetensorError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise TrainingError(
                f"Could not write the best model to {self.model}: {'disk full' if disk_full(exc) else 'write failed'} "
                f"({getattr(exc, 'strerror', None) or exc}).",
                "Free disk space; the previous best model and the checkpoints are intact, and --resume continues.",
            ) from exc
        shutil.rmtree(old, ignore_errors=True)
        if self.model.exists():
            os.replace(self.model, old)
        os.replace(partial, self.model)
        shutil.rmtree(old, ignore_errors=True)


# -- checkpoints/: which folders count (their contents: llmctl/train/checkpoint.py) ---------
CHECKPOINT_PREFIX = "step-"
MANIFEST = "manifest.json"  # written last: a folder without it is an interrupted save


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def checkpoint_step(path: Path) -> int:
    return int(path.name[len(CHECKPOINT_PREFIX) :])


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (partial ones are skipped)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and "." not in p.name]
    return sorted((p for p in found if (p / MANIFEST).is_file()), key=lambda p: p.name)


def remove_partial_checkpoints(root: Path) -> list[Path]:
    """Delete leftovers of interrupted saves; returns what was removed."""
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (
                    p.name.endswith(".partial") or not (p / MANIFEST).is_file()):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def lock_held(run_dir: Path) -> bool:
    """Whether a live process holds run_dir/run.lock (the kernel drops the lock when its holder
    dies, so a stale file reads as free). A probe: the file is left as it is, and a free lock is
    held only for the instant between taking and releasing it."""
    try:
        handle = open(Path(run_dir) / "run.lock", "rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _busy(path: Path) -> UsageError:
    return UsageError(f"Run directory {path} is in use by another llmctl process.",
                      "Wait for it to finish or choose another --output-dir.")


def _our_temp_file(name: str) -> bool:
    """Temporary files of atomic writes (`.metrics.json.tmp`, `.curves.png.tmp`)."""
    return name.startswith(".") and name.endswith(".tmp") and name[1:-4] in RUN_ENTRIES


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str | None = None, num_processes: int | None = None) -> dict:
    """Versions and hardware, for reproducing a run (also `llmctl env`)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("llmctl", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers", "safetensors"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    if device is not None:
        info["device"] = device
    if num_processes is not None:
        info["num_processes"] = num_processes
    return info


def find_model_dir(path: str) -> Path:
    """A run directory's model/ folder, or the path itself when it is a saved model."""
    p = Path(path).expanduser()
    if (p / MODEL_DIR / "config.json").is_file():
        return p / MODEL_DIR
    return p
