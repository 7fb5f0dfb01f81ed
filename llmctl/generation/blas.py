"""Decoding steps through numpy's BLAS (OpenBLAS in numpy's wheels) instead of PyTorch's (MKL in its
CPU wheels), when generation/tuning.py measured it faster on this device.

A step over a few sequences is a string of matrix products over a few rows, bound by how fast the
weights stream from memory. Where this was written (2 AMD EPYC cores, AVX2) numpy's kernel read
GPT-2-small's weights in 19 ms for one row against PyTorch's 27 to 36 ms, and in 31 ms for 8 rows
against 66 ms; on other CPUs MKL may win, so nothing is assumed. Only the Linear layers (and
GPT-2's Conv1D) of an fp32 model on the CPU change, and only for inputs of at most MAX_ROWS rows; a
product summed in another order differs in the last bit, as batching already makes it (README,
"Generation").

Two thread pools on two cores fight: OpenBLAS's and PyTorch's OpenMP workers each spin a while
after their work, and steps alternating between them ran at a sixth of their speed. So once such
a product has run, PyTorch's own ops (norms, attention over a few new positions, the step's work
on the logits) stay on one thread, which for a few rows costs little, and numpy's BLAS has the
cores; a longer input (a long prompt's prefill) gets PyTorch's threads back for its product and
keeps them. `threads_restored()` gives them back when a generation ends.
"""

from __future__ import annotations

import contextlib

# Inputs of at most this many rows take numpy's product: a decoding step over up to 64 sequences, a
# short prompt. Its GEMM over up to 128 rows streamed GPT-2-small's weights 1.4x-2.1x faster than
# PyTorch's here. A short prompt's prefill stays on numpy too: handing the cores back to PyTorch's
# threads for it and taking them again for the next step, while OpenBLAS's workers still spin, cost
# T5-small about 1.4 ms a token (a 20-token prompt, 64 tokens). (32 GPT-2-small clients in `serve`:
# 124-152 tokens/s over eight runs with 64 here, 122 in two with 16, within this host's noise.) A
# long prompt's prefill, and a larger batch, keep PyTorch and its threads.
MAX_ROWS = 64
_THREADS: list[int] = []  # PyTorch's thread count while numpy's products hold it at 1


def install(model) -> int:
    """Route short inputs of the model's fp32 CPU Linear / Conv1D layers through numpy. A Linear
    weight must already be column-major (tuning.lay_out "columns"), so numpy reads it as [in, out]
    in place: no copy of any weight. Returns how many layers were routed."""
    import torch
    from transformers.pytorch_utils import Conv1D

    routed = 0
    for module in model.modules():
        # The classes themselves: a subclass may compute more than the product (Llama 4's MoE router).
        if type(module) is torch.nn.Linear:
            weight = module.weight.detach().t()  # [in, out]
        elif type(module) is Conv1D:
            weight = module.weight.detach()  # GPT-2 keeps [in, out] already
        else:
            continue
        if weight.dtype != torch.float32 or weight.device.type != "cpu" or not weight.is_contiguous():
            continue
        bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
        module.forward = _routed(module.forward, weight.numpy(), bias)
        routed += 1
    return routed


def _routed(torch_forward, weight, bias):
    import torch

    fp32 = torch.float32

    def forward(x):
        rows = x.numel() // max(1, x.shape[-1])
        if x.dtype != fp32 or not 0 < rows <= MAX_ROWS:  # (an empty input: PyTorch shapes it)
            _torch_threads()
            return torch_forward(x)
        _one_thread()
        # Shapes are changed on the numpy side, where a reshape costs a fraction of a tensor view's
        # dispatch: some 5 of a call's 14 microseconds around the product, 50 calls a token for T5-small.
        flat = (x.detach() if x.requires_grad else x).numpy()
        flat = flat.reshape(-1 if rows == 1 else (rows, -1))  # one row: a matrix-vector product
        out = torch.from_numpy((flat @ weight).reshape(*x.shape[:-1], -1))
        if bias is not None:
            out += bias
        return out

    return forward


def _one_thread() -> None:
    import torch

    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
        torch.set_num_threads(1)


def _torch_threads() -> None:
    import torch

    if _THREADS:
        torch.set_num_threads(_THREADS.pop())


@contextlib.contextmanager
def threads_restored():
    """Around a generation: PyTorch's own thread count again at its end, when it ended on numpy's steps."""
    try:
        yield
    finally:
        _torch_threads()
