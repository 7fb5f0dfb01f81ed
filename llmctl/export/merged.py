"""Writing an exported model (`llmctl export RUN --output DIR`, llmctl.core.export): a run's model as a
plain transformers checkpoint, or (--format onnx, llmctl/export/onnx.py) as model.onnx for onnxruntime.

A LoRA run is merged into its base (peft's merge_and_unload), so the result loads with the
Auto classes and no peft; a full fine-tune is rewritten as it is. Either way DIR holds
safetensors weights (or model.onnx and export.json, the check against PyTorch), config,
tokenizer and llmctl.json (so `llmctl eval DIR` / `llmctl predict DIR` still work).
DIR is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from llmctl import faults
from llmctl.errors import LlmctlError, ModelError, TrainingError, UsageError
from llmctl.files import disk_full

FORMATS = ("safetensors", "onnx")
# Written first into `.DIR.partial`: only a folder holding it is llmctl's own leftover, safe to remove.
PARTIAL_MARKER = ".llmctl-export-partial"


def check_output(output: Path) -> None:
    if output.is_symlink():  # the folder is created by renaming a new one onto the path: never through a link
        raise UsageError(f"--output {output} is a symlink (to {os.readlink(output)}); export writes a new directory "
                         "and never writes through a link.",
                         f"Give the folder itself (--output {output.resolve()}) or a new path.")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"--output {output} already exists and is not empty; export never overwrites.",
                         "Choose a new --output directory, or remove that one first.")


def partial_dir(target: Path) -> Path:
    """Where DIR is written before the rename: `.DIR.partial` next to it. A leftover of an earlier
    export (marked) is removed; anything else there is the user's, so export refuses."""
    partial = target.with_name(f".{target.name}.partial")
    if os.path.lexists(partial):
        if partial.is_symlink() or not (partial / PARTIAL_MARKER).is_file():
            raise UsageError(f"{partial} exists and was not made by llmctl export, so export will not delete it.",
                             f"Move or remove {partial}, or choose another --output.")
        shutil.rmtree(partial)
    return partial


def write_export(model, task, model_dir: Path, target: Path, fmt: str, adapter: bool,
                 finish=None) -> tuple[dict | None, dict | None]:
    """Write `model` (merged or plain), model_dir's tokenizer, llmctl.json and the model card to
    `target`, through `.DIR.partial` renamed into place; returns (the ONNX check or None, what
    `finish` returned). `finish(folder)`, when given, runs on the complete folder before the card
    and the rename (--quantize: llmctl.export.quantize); what it returns is recorded in llmctl.json,
    export.json and the card; an error it raises leaves nothing behind."""
    from llmctl.models.gate import pretrained
    from llmctl.models.saved import TASK_FILE
    from llmctl.runs.files import read_json

    from transformers import AutoTokenizer

    if fmt == "onnx":
        from llmctl.export import onnx as onnx_export

    partial = partial_dir(target)
    check, finished, made = None, None, False
    try:
        partial.mkdir(parents=True)  # not exist_ok: a folder that appeared since the check is not ours
        made = True
        (partial / PARTIAL_MARKER).write_text("written by llmctl export; removed when the export completes\n")
        tokenizer = pretrained(AutoTokenizer, model_dir)
        tokenizer.save_pretrained(partial)
        faults.hook("write", step=0, name="export/")  # test hook: the disk fills as the weights are written
        if fmt == "onnx":
            from llmctl.models.load import pad_with_eos

            model.config.save_pretrained(partial)  # id2label for predict, and what the model was
            pad_with_eos(tokenizer, str(model_dir))  # the check batch pads as predict will (after saving)
            check = onnx_export.export_model(model, task.auto_model, tokenizer, partial)
            (partial / onnx_export.CHECK_FILE).write_text(json.dumps({"format": "onnx", "check": check}, indent=2) + "\n")
        else:
            model.save_pretrained(partial)
        # An ONNX folder is known by model.onnx next to llmctl.json, so it always gets one.
        if (model_dir / TASK_FILE).is_file() or fmt == "onnx":
            meta = read_json(model_dir / TASK_FILE, root=model_dir) or task.metadata()
            meta["exported_from"] = {"model_dir": str(model_dir.resolve()), "merged_adapter": adapter}
            meta.pop("peft", None)
            (partial / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if finish is not None:
            finished = finish(partial)
            _record(partial, TASK_FILE, "quantization", finished)
            _record(partial, onnx_export.CHECK_FILE, "quantization", finished)
        from llmctl.runs.model_card import write_export_card

        write_export_card(model_dir, partial, merged=adapter, fmt=fmt, quantization=finished)
        (partial / PARTIAL_MARKER).unlink()
        if target.is_dir():
            target.rmdir()  # checked empty above
        partial.replace(target)
    except LlmctlError:
        raise
    except Exception as exc:
        if disk_full(exc):  # safetensors says so as "os error 28", the ONNX exporter wraps it
            raise TrainingError(f"Could not write {target}: disk full; nothing of the export was kept.",
                                "Free disk space, or choose an --output on another disk.") from exc
        if isinstance(exc, OSError):
            raise ModelError(f"Could not write {target}: {exc.strerror or exc}.",
                             "Check the path and free disk space.") from exc
        raise
    finally:
        if made:
            shutil.rmtree(partial, ignore_errors=True)  # a failed export leaves nothing half-written
    return check, finished


def _record(folder: Path, name: str, key: str, value: dict) -> None:
    """Add `key: value` to the JSON file `name` in `folder`."""
    data = json.loads((folder / name).read_text())
    data[key] = value
    (folder / name).write_text(json.dumps(data, indent=2) + "\n")
