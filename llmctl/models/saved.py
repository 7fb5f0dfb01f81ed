"""What llmctl keeps beside a model's weights, and where a run keeps its model: the names every
part that loads a run's model needs (models, generation, export, runs), at the bottom so that
loading a model never has to import the run directory's code."""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = "model"  # a run directory's best model: runs/x/model
TASK_FILE = "llmctl.json"  # beside the weights: the task, columns, labels and training settings


def find_model_dir(path: str) -> Path:
    """A run directory's model/ folder, or the path itself when it is a saved model."""
    p = Path(path).expanduser()
    if (p / MODEL_DIR / "config.json").is_file():
        return p / MODEL_DIR
    return p
