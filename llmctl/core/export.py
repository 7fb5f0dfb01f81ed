"""`llmctl export RUN --output DIR` as a function: the checks, loading the run's model (a LoRA run
merged into its base), then writing it (llmctl.export.merged, llmctl.export.onnx).

    result = export_run("runs/sst2", "exported/sst2", fmt="onnx")
"""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.errors import UsageError
from llmctl.export.merged import FORMATS, check_output, partial_dir, write_export


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def export_run(run: str, output: str, base: str | None = None, fmt: str = "safetensors",
               dtype: str | None = None, quantize: str | None = None, max_drop: list[str] | None = None) -> dict:
    """Write the merged (or plain) model of `run` to `output`, in `dtype` (bf16, fp16, fp32; None:
    as the run saved it); returns what was written. `quantize="int8"` (ONNX only) quantises the
    graph and scores it against the fp32 one on the run's validation split ("quantization" in the
    result); `max_drop` (["accuracy=0.01"]) refuses with GateFailed (exit 4, no folder) when a
    metric drops by more."""
    from llmctl.core.runs import parse_max_drop
    from llmctl.export.quantize import check_options

    drops = parse_max_drop(max_drop or [])
    check_options(fmt, quantize, drops)  # a usage error before anything loads
    from llmctl.models.adapters import ADAPTER_CONFIG, check_same_base, is_adapter_dir, load_adapter_model
    from llmctl.models.load import auto_class, load_trained
    from llmctl.models.quiet import quiet_libraries
    from llmctl.models.saved import find_model_dir
    from llmctl.runs.files import check_run
    from llmctl.tasks.restore import task_for_model

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: export writes {' or '.join(FORMATS)}.", "Use --format safetensors.")
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}.", "Use --dtype bf16 to halve the size.")
    if dtype not in (None, "fp32") and fmt == "onnx":
        raise UsageError(f"--dtype {dtype}: an ONNX export computes in fp32.", "Drop --dtype, or use --format safetensors.")
    target = Path(output).expanduser()
    check_output(target)
    check_run(run)
    partial_dir(target)  # refuse a foreign .DIR.partial before anything loads
    model_dir = find_model_dir(run)
    if quantize is not None:
        from llmctl.export.quantize import check_validation
        from llmctl.models.saved import TASK_FILE
        from llmctl.runs.files import read_json

        check_validation(read_json(model_dir / TASK_FILE, root=model_dir), run)
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
    if dtype is not None:
        import torch

        model = model.to(getattr(torch, DTYPES[dtype]))
    finish = None
    if quantize is not None:
        from functools import partial as bind

        from llmctl.core.evaluation import evaluate_model
        from llmctl.export.quantize import quantize_and_score

        finish = bind(quantize_and_score, scheme=quantize, max_drop=drops, score=evaluate_model)
    check, quantization = write_export(model, task, model_dir, target, fmt, adapter, finish=finish)
    source_base = json.loads((model_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] if adapter else None
    return {"output": str(target), "model_dir": str(model_dir), "merged_adapter": adapter,
            "base": base or source_base, "parameters": sum(p.numel() for p in model.parameters()),
            "format": fmt, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            **({"check": check} if check is not None else {}),
            **({"quantization": quantization} if quantization is not None else {})}
