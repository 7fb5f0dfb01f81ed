"""`llmctl export RUN --output DIR` as a function: a run's model as a plain transformers checkpoint,
or (--format onnx, llmctl/export/onnx.py) as model.onnx for onnxruntime.

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


def export_run(run: str, output: str, base: str | None = None, fmt: str = "safetensors") -> dict:
    """Write the merged (or plain) model of `run` to `output`; returns what was written."""
    from llmctl.models.adapters import ADAPTER_CONFIG, check_same_base, is_adapter_dir, load_adapter_model
    from llmctl.models.load import auto_class
    from llmctl.models.quiet import quiet_libraries
    from llmctl.tasks.restore import task_for_model
    from llmctl.models.load import load_trained
    from llmctl.models.gate import pretrained
    from llmctl.models.saved import TASK_FILE
    from llmctl.models.saved import find_model_dir

    from llmctl.runs.files import check_run, read_json

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: export writes {' or '.join(FORMATS)}.", "Use --format safetensors.")
    target = Path(output).expanduser()
    check_output(target)
    check_run(run)
    partial_dir(target)  # refuse a foreign .DIR.partial before anything loads
    model_dir = find_model_dir(run)
    adapter = is_adapter_dir(model_dir)
    if base is not None and not adapter:
        raise UsageError(f"--base: {run} is a full fine-tune, not a LoRA run, so there is no adapter to merge.",
                         "Drop --base.")
    if fmt == "onnx":
        from llmctl.export import onnx as onnx_export

        onnx_export.check_packages()
    quiet_libraries()
    task, _ = task_for_model(model_dir)
    if fmt == "onnx":
        onnx_export.check_task(task)
    auto = auto_class(task.auto_model)
    if adapter:
        if base is not None:
            check_same_base(model_dir, base)
        model = load_adapter_model(auto, model_dir, base=base).merge_and_unload()
    else:
        model = load_trained(auto, model_dir)
    from transformers import AutoTokenizer

    partial = partial_dir(target)
    check, made = None, False
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
        from llmctl.runs.model_card import write_export_card

        write_export_card(model_dir, partial, merged=adapter, fmt=fmt)
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
    source_base = json.loads((model_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] if adapter else None
    return {"output": str(target), "model_dir": str(model_dir), "merged_adapter": adapter,
            "base": base or source_base, "parameters": sum(p.numel() for p in model.parameters()),
            "format": fmt, **({"check": check} if check is not None else {})}
