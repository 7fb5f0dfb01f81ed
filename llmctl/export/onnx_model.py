"""An exported ONNX folder (model.onnx + llmctl.json, from `llmctl export --format onnx`) run
through onnxruntime on the CPU, called like a transformers model's forward so that predict's
collation and task post-processing are the same code as for a PyTorch model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from llmctl.errors import UsageError

ONNX_FILE = "model.onnx"


def check_packages(needs: str = "--format onnx", names: tuple[str, ...] = ("onnx", "onnxscript", "onnxruntime")) -> None:
    """Fail before any model loads when the exporter or the runtime is missing."""
    for name in names:
        try:
            __import__(name)
        except ImportError:
            raise UsageError(f"{needs} needs the '{name}' package, which is not installed.",
                             "Install the extra: pip install 'llmctl[onnx]'.") from None


def is_onnx_export(model_dir: Path) -> bool:
    from llmctl.models.saved import TASK_FILE

    return (model_dir / ONNX_FILE).is_file() and (model_dir / TASK_FILE).is_file()


def check_run_options(device: str | None, precision: str | None) -> None:
    """Before any data is read: onnxruntime is there, and no flag asks for what the graph cannot
    do (it is fp32 and runs on onnxruntime's CPU provider); say so rather than ignore a flag."""
    check_packages("Predicting with an ONNX export", names=("onnxruntime",))
    if device not in (None, "cpu"):
        raise UsageError(f"--device {device}: an ONNX export runs on the CPU through onnxruntime.",
                         "Drop --device, or predict with the run directory for a GPU.")
    if precision not in (None, "auto", "fp32"):
        raise UsageError(f"--precision {precision}: an ONNX export computes in fp32.",
                         "Drop --precision, or predict with the run directory for bf16/fp16.")


def open_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on graph rewrites are not for users
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """`model(**batch)` -> an object with the graph's outputs (logits, or start_logits and
    end_logits) as torch tensors. Batch entries the graph does not take (labels) are left out;
    token_type_ids it takes but a single-sentence batch lacks are zeros, as in the model itself."""

    def __init__(self, model_dir: Path):
    
        self.session = open_session(model_dir / ONNX_FILE)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def eval(self) -> "OnnxModel":  # evaluation switches modes around its batches; a graph has none
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        return self

    def __call__(self, **batch):
        import numpy as np
        import torch

        ids = batch["input_ids"].numpy().astype(np.int64)
        feeds = {name: batch[name].numpy().astype(np.int64) if name in batch else np.zeros_like(ids)
                 for name in self.inputs}
        results = self.session.run(self.outputs, feeds)
        return SimpleNamespace(**{name: torch.from_numpy(r) for name, r in zip(self.outputs, results)})
