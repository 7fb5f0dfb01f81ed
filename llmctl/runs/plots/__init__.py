"""The pictures a run leaves in its directory, redrawn by the main process at each evaluation
(llmctl.train.tracking calls `draw_run`):

    curves.png             training loss and learning rate against step, every evaluation metric
                           against step, the saved (best) model's step marked
    confusion_matrix.png   classification: gold against predicted label, with counts
    entity_f1.png          NER: precision, recall and F1 per entity type
    qa_answerable.png      QA with unanswerable questions: exact match and F1 on each kind

The per-task pictures draw `diagnostics.json` (Task.diagnostics of the saved model's evaluation).
matplotlib is imported here only, never at CLI start, and drawn through its Agg canvas directly
(no pyplot): no display, no global state. Each file is written under a temporary name and renamed,
so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

TASK_PICTURES = {"classification": "confusion_matrix.png", "ner": "entity_f1.png", "qa": "qa_answerable.png"}
PICTURES = ("curves.png", *TASK_PICTURES.values())


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw_run(run_dir: Path, diagnostics: dict | None = None, metric_for_best: str | None = None) -> list[Path]:
    """Redraw curves.png from the run's logs and, given `diagnostics`, its task picture; returns the
    files written (none without matplotlib)."""
    if not available():
        return []
    from llmctl.runs.plots.curves import draw_curves
    from llmctl.runs.plots.task_plots import DRAWERS

    run_dir = Path(run_dir)
    written = []
    figure = draw_curves(_jsonl(run_dir / "train_log.jsonl"), _jsonl(run_dir / "metrics.jsonl"),
                         _saved_step(run_dir), metric_for_best)
    if figure is not None:
        written.append(save(figure, run_dir / "curves.png"))
    kind = (diagnostics or {}).get("task")
    if kind in DRAWERS:
        figure = DRAWERS[kind](diagnostics)
        if figure is not None:
            written.append(save(figure, run_dir / TASK_PICTURES[kind]))
    return written


def save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from llmctl.files import replace_file

    FigureCanvasAgg(figure)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    replace_file(path, png.getvalue())  # never through a link planted at the picture's name
    return path


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a crash: the rest still draws
            continue
    return records


def _saved_step(run_dir: Path) -> int | None:
    """The step of the saved model (the best evaluation so far), from model/llmctl.json."""
    try:
        return json.loads((run_dir / "model" / "llmctl.json").read_text())["saved_at"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
