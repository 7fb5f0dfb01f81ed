"""What a run reports about itself while it trains, besides metrics.jsonl: a line per logged step
in train_log.jsonl, the trackers of `train.report_to` (TensorBoard, MLflow, W&B, through
accelerate's tracking API) and the pictures (llmctl.runs.plots).

    check_installed(recipe.train.report_to)                 # before any model loads
    accelerator = make_accelerator(..., trackers=accelerator_options(names, run_dir))
    tracking = RunTracking.start(accelerator, recipe, run_dir, resume_step, metric_for_best)
    for event in train_loop(setup):
        tracking.record(event)                              # Progress, Evaluated, Stopped
    tracking.end()

Everything lands in the run directory (trackers/), so `--overwrite` removes it with the run,
except MLflow when MLFLOW_TRACKING_URI names a server and W&B when the user configured it
(WANDB_MODE or WANDB_API_KEY set): then their own settings decide. Files are written by the main
process only; accelerate's trackers log on it alone.

Tracker names: train/loss, train/learning_rate, train/samples_per_second, train/epoch at each
logged step; eval/<metric> at each evaluation; the recipe, flattened (train.learning_rate), as
hyperparameters on a fresh start. A resumed run continues the same runs at the checkpoint's step:
TensorBoard drops what was logged after it (purge_step), MLflow and W&B keep those points.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from llmctl.errors import UsageError
from llmctl.events import Evaluated, Progress, Stopped
from llmctl.files import append_line, replace_file

_log = logging.getLogger(__name__)  # rendered by llmctl.console: the loop never prints

TRACKERS_DIR = "trackers"
TRAIN_LOG = "train_log.jsonl"
DIAGNOSTICS = "diagnostics.json"
REDRAW_EVERY_S = 30.0  # the least time between two drawings of the pictures during training
_RUN_IDS = "run_ids.json"  # in trackers/: the MLflow and W&B runs a resume continues


def check_installed(names: list[str]) -> None:
    """Refuse a tracker whose package is missing, naming the extra that installs it. Each tracker's
    module is named like the tracker, and is imported the way accelerate will import it."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(
                f"train.report_to: {name} is not installed.",
                f"Install it with `pip install 'llmctl[{name}]'` (all trackers: `pip install 'llmctl[trackers]'`), "
                f"or remove {name} from train.report_to.",
            ) from None


def accelerator_options(names: list[str], run_dir: Path) -> dict:
    """Accelerator(...) keywords for `names`; TensorBoard writes under trackers/tensorboard/<run>/."""
    if not names:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {"log_with": list(names),
            "project_config": ProjectConfiguration(project_dir=str(run_dir),
                                                   logging_dir=str(run_dir / TRACKERS_DIR / "tensorboard"))}


def hyperparameters(recipe) -> dict:
    """The resolved recipe as flat, JSON-safe scalars: every tracker takes bool, int, float, str."""
    from llmctl.train.fingerprint import flatten

    flat = flatten(recipe.model_dump(mode="json"))
    return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in flat.items()}


class RunTracking:
    """Records a run's events as they come (`record`), on every process: the trackers log on the
    main one only (accelerate), and only the main one writes files."""

    def __init__(self, accelerator, run_dir: Path, metric_for_best: str | None):
        self.acc, self.run_dir, self.metric_for_best = accelerator, Path(run_dir), metric_for_best
        self.main = accelerator.is_main_process
        self.trackers_on = bool(getattr(accelerator, "log_with", None))
        self.told_no_plots = False
        self.drawn_at = -float("inf")  # time.monotonic() of the last drawing
        self.pending = None  # the saved model's diagnostics not drawn yet

    @classmethod
    def start(cls, accelerator, recipe, run_dir: Path, resume_step: int, metric_for_best: str) -> "RunTracking":
        """Start the trackers (after the run directory is open): fresh runs log the recipe as
        hyperparameters, resumed ones continue the runs they started. `metric_for_best` is
        starred in curves.png."""
        tracking = cls(accelerator, run_dir, metric_for_best)
        names = recipe.train.report_to
        if not names:
            return tracking
        folder = Path(run_dir) / TRACKERS_DIR
        ids_file = folder / _RUN_IDS
        ids = json.loads(ids_file.read_text()) if resume_step and ids_file.is_file() else {}
        ids.setdefault("wandb", uuid.uuid4().hex[:12])
        options = {}
        if "tensorboard" in names and resume_step:
            # A marker at this step makes TensorBoard drop what the interrupted run logged after the
            # checkpoint, so the redone steps do not show twice.
            options["tensorboard"] = {"purge_step": resume_step + 1}
        if "mlflow" in names:
            options["mlflow"] = _mlflow_options(folder, ids.get("mlflow"), run_dir)
        if "wandb" in names:
            options["wandb"] = _wandb_options(folder, ids["wandb"], run_dir)
        if accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
        # Hyperparameters once, at the start: MLflow refuses to change a logged parameter, and a
        # resumed run trains on the same recipe (the checkpoint's fingerprint says so).
        config = None if resume_step else hyperparameters(recipe)
        accelerator.init_trackers(Path(run_dir).resolve().name, config=config, init_kwargs=options)
        if accelerator.is_main_process:
            if "mlflow" in names:
                ids["mlflow"] = accelerator.get_tracker("mlflow", unwrap=True).info.run_id
            replace_file(ids_file, json.dumps(ids, indent=2) + "\n")
        return tracking

    def record(self, event) -> None:
        if isinstance(event, Progress) and event.log:
            values = {"loss": event.loss, "learning_rate": event.learning_rate,
                      "samples_per_second": event.samples_per_second, "epoch": event.epoch} | event.metrics
            if self.main:
                append_line(self.run_dir / TRAIN_LOG, json.dumps({"step": event.step} | values))
            self._log({f"train/{k}": v for k, v in values.items()}, event.step)
        elif isinstance(event, Evaluated):
            self._log({f"eval/{k}": v for k, v in event.metrics.items()}, event.step)
            # diagnostics.json and the task picture describe the saved (best) model, like metrics.json.
            saved = {"step": event.step} | event.diagnostics if event.is_best and event.diagnostics else None
            if self.main and saved:
                _write_json(self.run_dir / DIAGNOSTICS, saved)
            if self.main:
                self.pending = saved or self.pending
                # Drawing takes about a second: with evaluations seconds apart it would slow training
                # down, so between redraws at least REDRAW_EVERY_S passes; the end draws what is left.
                if time.monotonic() - self.drawn_at >= REDRAW_EVERY_S:
                    self._draw(self.pending)
        elif isinstance(event, Stopped) and self.main:
            self._draw(self.pending)  # the curves up to the last step, after the last evaluation

    def end(self, outcome: str = "finished") -> None:
        """Close the trackers (also when training failed or was interrupted: files are flushed).
        `outcome` ("finished", "interrupted" or "failed") becomes the MLflow run's status
        (FINISHED, KILLED, FAILED) and W&B's exit code, so a tracker UI never shows a run that
        stopped half-way as a finished one; a resume sets it running again."""
        if not self.trackers_on:
            return
        if outcome != "finished":
            for tracker in self.acc.trackers:
                try:
                    if tracker.name == "mlflow":
                        import mlflow

                        mlflow.end_run(status="KILLED" if outcome == "interrupted" else "FAILED")
                    elif tracker.name == "wandb":
                        tracker.run.finish(exit_code=1)
                except Exception as error:  # closing a tracker must not hide why training stopped
                    _log.warning(f"could not mark the {tracker.name} run as {outcome}: {error}")
        self.acc.end_training()

    def _log(self, values: dict, step: int) -> None:
        if self.trackers_on:
            self.acc.log(values, step=step)

    def _draw(self, diagnostics: dict | None) -> None:
        """Pictures are a view of the run, never a reason to lose it: a failure is said once."""
        from llmctl.runs import plots

        why = None if plots.available() else "matplotlib is not installed (`pip install matplotlib`; llmctl declares it)"
        if why is None:
            try:
                plots.draw_run(self.run_dir, diagnostics, self.metric_for_best)
                self.drawn_at, self.pending = time.monotonic(), None
                return
            except (OSError, ValueError) as exc:  # a full disk, a value matplotlib cannot draw
                why = f"drawing failed ({exc})"
        if not self.told_no_plots:
            _log.warning(f"no pictures in the run directory: {why}; training goes on.")
            self.told_no_plots = True


def _mlflow_options(folder: Path, run_id: str | None, run_dir: Path) -> dict:
    options = {"run_name": Path(run_dir).resolve().name, "run_id": run_id}
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        # A local store in the run directory. mlflow 3 refuses its file store unless told it is
        # wanted; it is what lets MLflow work with nothing but the skinny package installed.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store = (folder / "mlflow").resolve()
        mlflow.set_tracking_uri(store.as_uri())
        options["logging_dir"] = str(store / "artifacts")
    return options


def _wandb_options(folder: Path, run_id: str, run_dir: Path) -> dict:
    options = {"dir": str(folder.resolve()), "id": run_id, "resume": "allow", "name": Path(run_dir).resolve().name}
    if not (os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY")):
        # Nothing leaves the machine unless the user set W&B up. The variables, not only the run's
        # mode: wandb's process-wide usage telemetry and error reports read them, and would
        # otherwise post to the W&B server even for an offline run.
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        options["mode"] = "offline"
    return options


def _write_json(path: Path, data: dict) -> None:
    replace_file(path, json.dumps(data, indent=2) + "\n")
