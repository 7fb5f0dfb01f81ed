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
                                   model card); a LoRA run saves the adapter + base config instead (llmctl/models/adapters.py)
               checkpoints/        full training state for --resume
               run.lock            held while a run writes here
               report.html         `llmctl report` (llmctl/runs/report/)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from llmctl import faults
from llmctl.errors import UsageError
from llmctl.files import append_line, disk_full, replace_file
from llmctl.models.saved import MODEL_DIR, TASK_FILE

# What a run writes first (the lock, then the recipe): a directory with none of these is not ours.
OUR_FILES = {"run.lock", "recipe.yaml", "environment.json", "checkpoints", "metrics.jsonl", "metrics.json"}
# Everything a run writes; --overwrite removes these and nothing else.
RUN_ENTRIES = OUR_FILES | {MODEL_DIR, MODEL_DIR + ".partial", MODEL_DIR + ".old", "report.html"} | {
    "train_log.jsonl", "diagnostics.json", "trackers", "curves.png", "confusion_matrix.png", "entity_f1.png",
    "qa_answerable.png"}
MODES = ("fresh", "resume", "overwrite")
ENV_LIMIT = 1 << 20  # environment.json is a few KB; a bigger one was not written by llmctl


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_handle = None
        self._seen = None  # what check() saw, compared again under the lock by open()

    model = property(lambda self: self.path / MODEL_DIR)
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics_log = property(lambda self: self.path / "metrics.jsonl")

    def check(self, mode: str, force: bool = False, inputs: dict[str, Path] | None = None,
              recipe_file: Path | None = None) -> None:
        """Every refusal about the run directory, before any data or model loads; changes nothing.

        fresh: the directory must be missing or empty; resume: see check_resume; overwrite: only a
        directory llmctl made, and never one that holds this run's own model, data or recipe (`inputs`:
        what -> path, e.g. {"model.name_or_path": Path("runs/x/model")}). What it saw is compared
        again by open(), under the lock: another run may have used the directory meanwhile."""
        assert mode in MODES, mode
        if self.path.is_symlink() and not self.path.exists():  # mkdir would fail only after the model loaded
            raise UsageError(f"Output directory {self.path} is a symlink to {os.readlink(self.path)}, which does not "
                             "exist.", "Create the folder it points to, or choose another --output-dir.")
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"Output directory {self.path} is a file, not a directory.",
                             "Choose another --output-dir (or output_dir in the recipe).")
        self.ensure_free()
        self._seen = self._state()
        if not self.entries():
            return
        if mode == "fresh":
            raise UsageError(
                f"Run directory {self.path} already exists.",
                "Pass --resume to continue it, --overwrite to replace it, or --output-dir for a new one.",
            )
        if mode == "resume":
            self.check_resume(force, recipe_file)
            return
        if recipe_file is not None:
            inputs = (inputs or {}) | {"recipe file": Path(recipe_file)}
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
        """Make the directory this run's: create it, take the lock, check that the directory is still
        what check() saw (else exit 2, nothing written), and for overwrite remove what an
        earlier run wrote; for resume, remove partial checkpoints and forget the evaluations logged
        after `resume_from` (all of them when starting afresh), which the run redoes. Called once,
        after every check (recipe, data, model) has passed, so a failed start leaves nothing behind."""
        if not is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        try:
            self._recheck()
        except UsageError:
            self.unlock()  # the directory is another run's now: leave it, run.lock included, as it is
            raise
        self._write_pid()
        if mode == "overwrite":
            for child in self.path.iterdir():
                if child.name != "run.lock" and (child.name in RUN_ENTRIES or _our_temp_file(child.name)):
                    _remove(child)
        if mode == "resume":
            # Training continues from here: a finished run's final record (metrics.json, which
            # `runs list` reads as "finished" and `runs compare` gates on) no longer describes
            # model/, so it goes before anything else changes; the run writes a new one at its end.
            (self.path / "metrics.json").unlink(missing_ok=True)
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
        """environment.json with llmctl's version in it: written by every run right after it starts.
        A link or an outsized file is not llmctl's (and is not read: it may point at /dev/zero)."""
        try:
            return "llmctl" in (self._environment() or {}).get("packages", {})
        except TypeError:  # packages that is not a collection
            return False

    def first_argv(self) -> list | None:
        """The command that started this run, as its environment.json remembers it (a resume rewrites
        argv with its own command line)."""
        env = self._environment() if self.is_ours() else None
        first = (env.get("first_argv") or env.get("argv")) if env else None
        return first if isinstance(first, list) else None

    def _environment(self) -> dict | None:
        """environment.json through the one reader of run files (a regular file inside the run, at
        most ENV_LIMIT bytes), or None when it is absent, a link, too big or not a JSON object."""
        from llmctl.runs.files import BadRunFile, read_bytes

        try:
            raw = read_bytes(self.path / "environment.json", ENV_LIMIT, self.path)
            env = json.loads(raw) if raw is not None else None
        except (BadRunFile, OSError, ValueError):
            return None
        return env if isinstance(env, dict) else None

    def check_resume(self, force: bool, recipe_file: Path | None = None) -> None:
        """`--resume [auto]` continues a run of ours or starts one in an empty place; it never
        retrains a finished run (unless forced), never writes into a directory llmctl did not make
        (files named like ours are not enough: another tool's checkpoints/ and metrics.jsonl, a
        hand-written recipe.yaml), nor through a symbolic link, nor over the recipe it reads."""
        names = self.entries()
        if not names:
            return
        for link in self.links():  # first: is_ours() must not read environment.json through a link
            raise UsageError(
                f"--resume: {link} is a symbolic link; llmctl never writes through a link in a run directory.",
                "Replace it with a copy of the file it points to (or remove it), then rerun.",
            )
        if not self.is_ours():
            raise UsageError(
                f"--resume: {self.path} is not an llmctl run directory (no environment.json written by llmctl), "
                "so nothing in it is touched.",
                "Choose another --output-dir; llmctl only resumes runs it made.",
            )
        if recipe_file is not None and _inside(Path(recipe_file), self.path):
            raise UsageError(
                f"--resume: the recipe {recipe_file} lives inside the run directory {self.path}, which the run rewrites.",
                "Copy the recipe out of the run directory and pass the copy.",
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

    def links(self) -> list[Path]:
        """Symbolic links where a run writes (a run never makes one): its entries and checkpoints."""
        found = [self.path / name for name in sorted(RUN_ENTRIES) if (self.path / name).is_symlink()]
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            found += sorted(p for p in self.checkpoints.iterdir() if p.is_symlink())
        return found

    def lock(self) -> None:
        """Take run.lock (flock; the file's content is written by open() once the directory is ours).
        A link at run.lock is replaced, never opened: the lock file must be the run's own."""
        if self._lock_handle is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock_file = self.path / "run.lock"
        if lock_file.is_symlink():
            lock_file.unlink()  # the link only; an llmctl process never locks through one (O_NOFOLLOW)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:  # ELOOP: a link planted again in between
            raise UsageError(f"Cannot take the lock {lock_file}: {exc.strerror}.",
                             "Remove that file (a run directory holds no links), then rerun.") from None
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _busy(self.path) from None
        self._lock_handle = handle

    def _write_pid(self) -> None:
        handle = self._lock_handle
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()

    def _state(self) -> dict:
        """The directory as check() judged it: each entry's type, identity, size and time (lstat, so
        a link put in place of a file counts as a change), and the checkpoint folders; {} when it is
        missing or holds only run.lock."""
        seen = {}
        if not self.path.is_dir():
            return seen
        for entry in self.path.iterdir():
            if entry.name != "run.lock":
                st = entry.lstat()
                seen[entry.name] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            seen["checkpoints/"] = sorted(p.name for p in self.checkpoints.iterdir())
        return seen

    def _recheck(self) -> None:
        """Under the lock: is the directory still what check() approved? Two runs started on one new
        directory both pass check() while loading; the slower must not take over what the faster made."""
        if self._seen is None or self._state() == self._seen:
            return
        raise UsageError(
            f"Run directory {self.path} changed while this run was starting (another llmctl run wrote to it); "
            "this run wrote nothing.",
            f"Look at it with `llmctl runs show {self.path}`, then rerun with --resume, --overwrite or another "
            "--output-dir.",
        )

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def write_json(self, name: str, data) -> None:
        replace_file(self.path / name, json.dumps(data, indent=2) + "\n")

    def write_text(self, name: str, text: str) -> None:
        replace_file(self.path / name, text)

    def append_metrics(self, record: dict) -> None:
        append_line(self.metrics_log, json.dumps(record))

    @staticmethod
    def _truncate_log_after(log: Path, step: int) -> None:
        """Forget what a log (metrics.jsonl, train_log.jsonl) says about steps the resumed run redoes.
        A line that does not parse (the half-written last line of a killed run) is dropped, as
        `runs show` skips it, rather than failing the resume."""
        if not log.is_file() or log.is_symlink():
            return
        keep = []
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step", 0), (int, float)) \
                    and record.get("step", 0) <= step:
                keep.append(line)
        replace_file(log, "".join(line + "\n" for line in keep))

    def save_model(self, model, tokenizer, task_meta: dict, info: dict, state_dict: dict | None = None,
                   extra_files: dict[str, str] | None = None) -> None:
        """save_pretrained into model.partial, then swap it in: the old best survives a failed save.
        `state_dict`: the weights gathered from a sharded (FSDP) model, which holds only shards.
        `extra_files`: relative path -> text written beside the weights (Task.model_files)."""
        from safetensors import SafetensorError

        from llmctl.errors import TrainingError
        from llmctl.runs.model_card import write_model_card

        partial, old = self.path / (MODEL_DIR + ".partial"), self.path / (MODEL_DIR + ".old")
        _remove(partial, missing_ok=True)  # a link there is removed, never written through
        try:
            faults.hook("write", step=info.get("step", 0), name=MODEL_DIR + "/")
            if hasattr(model, "peft_config"):  # a LoRA run: the adapter (and head), not the whole model
                from llmctl.models.adapters import save_adapter

                save_adapter(model, partial, state_dict)
            else:
                # safetensors (the only format in transformers 5)
                model.save_pretrained(partial, **({"state_dict": state_dict} if state_dict is not None else {}))
            tokenizer.save_pretrained(partial)
            (partial / TASK_FILE).write_text(json.dumps(task_meta | {"saved_at": info}, indent=2) + "\n")
            for name, text in (extra_files or {}).items():
                (partial / name).parent.mkdir(parents=True, exist_ok=True)
                (partial / name).write_text(text)
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
    held only for the instant between taking and releasing it. A link at run.lock is not followed
    (no llmctl process locks through one)."""
    try:
        handle = os.fdopen(os.open(Path(run_dir) / "run.lock", os.O_RDONLY | os.O_NOFOLLOW), "rb")
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


def _inside(path: Path, root: Path) -> bool:
    where, root = path.expanduser().resolve(), root.expanduser().resolve()
    return where == root or root in where.parents


def _remove(path: Path, missing_ok: bool = False) -> None:
    """Remove a file, a folder or a link (the link only, never what it points to)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif not missing_ok:
        raise FileNotFoundError(path)


def _our_temp_file(name: str) -> bool:
    """Temporary files of atomic writes (`.metrics.json.tmp`, `.curves.png.tmp`)."""
    return name.startswith(".") and name.endswith(".tmp") and name[1:-4] in RUN_ENTRIES
