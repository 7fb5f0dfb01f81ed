"""`llmctl export RUN --format onnx`: a task head as model.onnx for onnxruntime, checked against PyTorch.

The graph comes from torch.onnx's dynamo exporter (torch.export, then onnxscript). torch 2.13
still offers the TorchScript exporter (dynamo=False), but it traces one input shape: on the tiny
BERT and GPT-2 its graph was 0.01-0.08 away from PyTorch's logits once batch size or length
changed, because the attention-mask code branches in Python on shapes. optimum-onnx (0.1.0)
requires transformers < 4.58, so it cannot serve transformers 5.

The T5 family exports through its eager attention only (see export_model). The export is
checked before it is kept: a batch of another size and length than the one traced
runs through PyTorch and onnxruntime, and every output must agree within TOLERANCE.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings

from llmctl.errors import LlmctlError, ModelError, UsageError
from llmctl.export.onnx_model import ONNX_FILE, check_packages, open_session  # noqa: F401  (merged.py calls check_packages here)

CHECK_FILE = "export.json"  # the check's result, next to the model
TOLERANCE = 1e-4  # max |PyTorch - onnxruntime| over every output value
# The heads export covers -> the outputs their graph returns, in this order.
OUTPUTS = {
    "AutoModelForSequenceClassification": ("logits",),
    "AutoModelForTokenClassification": ("logits",),
    "AutoModelForQuestionAnswering": ("start_logits", "end_logits"),
    "AutoModelForMultipleChoice": ("logits",),
    "AutoModelForMaskedLM": ("logits",),
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the order of traceable()'s arguments
INSTEAD = {
    "causal-lm": "a generative model runs its decoding loop in Python; use --format safetensors and `llmctl generate`",
    "seq2seq": "a generative model runs its decoding loop in Python; use --format safetensors and `llmctl generate`",
}
# Words to build the check batches from: any tokenizer encodes them (unknown pieces included).
_WORDS = "the film was a great and moving story about people who moved to paris to become doctors".split()


def check_task(task) -> None:
    if task.auto_model not in OUTPUTS:
        why = INSTEAD.get(task.name, "use --format safetensors")
        raise UsageError(f"--format onnx covers classification, NER, QA, multiple-choice and masked-LM models; this run's task "
                         f"'{task.name}' is not one of them.", f"Instead: {why}.")


def input_names(model, tokenizer) -> list[str]:
    """The token inputs of the graph. token_type_ids only where the tokenizer makes them (BERT):
    GPT-2's forward takes them too, but adds a token-type embedding for zeros that it skips for
    None, so a graph fed zeros would drift from PyTorch without them."""
    accepted = inspect.signature(model.forward).parameters
    wanted = {"input_ids", "attention_mask"} | set(getattr(tokenizer, "model_input_names", ()))
    return [name for name in INPUTS if name in wanted and name in accepted]


def sample_batch(tokenizer, names: list[str], rows: int, width: int, choices: int = 0) -> dict:
    """A padded batch of `rows` sentence pairs of different lengths up to about `width` words
    (shaped [rows, choices, length] for a multiple-choice head)."""
    n = rows * max(choices, 1)
    firsts = [" ".join(_WORDS[(i * 3) % 7:][: 1 + (i * 5) % width]) for i in range(n)]
    seconds = [" ".join(_WORDS[(i * 2) % 5:][: 2 + i % 3]) for i in range(n)]
    encoded = tokenizer(firsts, seconds, padding=True, return_tensors="pt")
    batch = {name: encoded[name] if name in encoded else encoded["input_ids"] * 0 for name in names}
    if choices:
        batch = {name: t.view(rows, choices, -1) for name, t in batch.items()}
    return batch


def traceable(model, names: list[str], outputs: tuple[str, ...]):
    """The model's forward with the token inputs by name and a tuple of output tensors, which is
    what torch.onnx.export traces (the class is made here: torch is only imported inside functions)."""
    import torch

    class Forward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            result = self.model(**{name: given[name] for name in names}, return_dict=True)
            return tuple(result[name] for name in outputs)

    return Forward()


def export_model(model, auto_model: str, tokenizer, target) -> dict:
    """Write `model` (fp32, eval mode) to target/model.onnx and check it against PyTorch;
    returns the check's result. A failing export raises ModelError, a mismatch LlmctlError (exit 1)."""
    import torch

    outputs = OUTPUTS[auto_model]
    names = input_names(model, tokenizer)
    choices = 2 if auto_model == "AutoModelForMultipleChoice" else 0
    model = model.float().eval()
    # The eager attention functions export for BERT, GPT-2 and T5 alike; T5's SDPA path fails in
    # the exporter (a reshape of the transposed attention output under symbolic shapes).
    model.set_attn_implementation("eager")
    forward = traceable(model, names, outputs)
    traced = sample_batch(tokenizer, names, rows=2, width=4, choices=choices)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: torch.export.Dim("choices"), 2: length} if choices else {0: batch, 1: length}
    shapes = {name: axes for name in names}
    # Past 2 GB a protobuf cannot hold the weights; they go to a side file then.
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5e9
    path = target / ONNX_FILE
    try:
        # The exporter prints progress and warns about every traced branch; none of it is the user's.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(forward, tuple(traced[n] for n in names), str(path), input_names=names,
                              output_names=list(outputs), dynamic_shapes=shapes, dynamo=True, verbose=False,
                              external_data=big)
    except Exception as exc:
        from llmctl.files import disk_full

        if disk_full(exc):  # not the model's fault: the caller says "disk full" (exit 1)
            raise
        kind = getattr(model.config, "model_type", "unknown")
        raise ModelError(
            f"--format onnx: a '{kind}' model ({type(model).__name__}) does not export to ONNX with torch "
            f"{torch.__version__.split('+')[0]}: {_root_cause(exc)}",
            "Export it with --format safetensors instead.") from exc
    return check_against_torch(forward, path, tokenizer, names, outputs, choices)


def check_against_torch(forward, path, tokenizer, names: list[str], outputs: tuple[str, ...], choices: int) -> dict:
    """Run a batch of another shape (rows, length, choices) than the traced one through both; the
    largest difference."""
    import numpy as np
    import torch


    batch = sample_batch(tokenizer, names, rows=3, width=9, choices=choices + 1 if choices else 0)
    with torch.inference_mode():
        expected = [t.float().numpy() for t in forward(*(batch[n] for n in names))]
    got = open_session(path).run(list(outputs), {n: batch[n].numpy() for n in names})
    diff = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got))
    check = {"max_abs_diff": diff, "tolerance": TOLERANCE, "passed": diff <= TOLERANCE,
             "batch_shape": list(batch["input_ids"].shape), "outputs": list(outputs), "inputs": names}
    if not check["passed"]:
        raise LlmctlError(f"--format onnx: onnxruntime's {'/'.join(outputs)} differ from PyTorch's by up to {diff:.3g} "
                          f"on a test batch (allowed {TOLERANCE:g}), so nothing was written.",
                          "Export with --format safetensors; rerun with --debug and report the model type.")
    return check


@contextlib.contextmanager
def _quiet(logger: str):
    """Only errors from `logger` (the exporter logs a warning for every optional package it lacks)."""
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's first line: the exporter wraps the real reason in pages of advice."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(".!")
    return (line if len(line) <= 200 else line[:200] + "...") + "."
